"""Fixtures shared by the whole suite: real servers on 127.0.0.1, stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_llm import FakeLLM
from tests.support.git_server import GitHttpServer
from tests.support.sample import sample_files

pytest_plugins = ("tests.support.fixtures_git",)


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitHttpServer]:
    """A real git smart-HTTP server (git http-backend) on 127.0.0.1."""
    with GitHttpServer() as server:
        yield server


@pytest.fixture(scope="session")
def sample_repo_url(git_server: GitHttpServer) -> str:
    """The demo's sample repository, served by ``git_server``."""
    return git_server.create_repo("demo/sample", sample_files())


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    """An OpenAI-compatible server on 127.0.0.1 that records requests."""
    with FakeLLM() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM) -> FakeLLM:
    """The fake model server with an empty script and request log."""
    fake_llm_server.reset()
    fake_llm_server.delay = 0.0
    return fake_llm_server
