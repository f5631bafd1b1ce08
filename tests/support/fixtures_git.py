"""Pytest fixtures for tests that need a real git remote (see ``tests.support.git_server``).

Each server here is private to one test, so a test may set its fault knobs (``delay_seconds``,
``redirect_to``) freely; the session-wide ``git_server`` in ``tests/conftest.py`` is shared.
Use with ``pytest_plugins = ("tests.support.fixtures_git",)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.git_server import GitHttpServer


@pytest.fixture
def fresh_git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    """A git smart-HTTP server on 127.0.0.1 for this test alone; stopped at its end."""
    with GitHttpServer(tmp_path_factory.mktemp("git-remote")) as server:
        yield server


@pytest.fixture
def git_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], GitHttpServer]]:
    """Start extra servers (say, a redirect target) on demand; all are stopped at the end."""
    servers: list[GitHttpServer] = []

    def start() -> GitHttpServer:
        server = GitHttpServer(tmp_path_factory.mktemp("git-remote")).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
