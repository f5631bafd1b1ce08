"""Pytest fixtures that serve the tiny model with a real ``llama-server`` on 127.0.0.1.

Import the fixtures into a test module (or a conftest) to use them::

    from tests.support.llama.fixtures import llama_binary, llama_server, tiny_model_path

``llama_server`` is shared by the whole session; a test that stops it (to see how the gateway
copes with a dead model server) should use ``disposable_llama_server`` instead.

On a machine without a cached binary the first use builds llama.cpp (about 4 minutes on 2
cores); see ``_build_timeout_paused`` for how that interacts with pytest-timeout.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.llama.build import LlamaBuildError, binary_path, ensure_llama_server, is_usable
from tests.support.llama.server import LlamaServer, LlamaServerError
from tests.support.llama.tiny_model import write_tiny_model


@contextlib.contextmanager
def _build_timeout_paused() -> Iterator[None]:
    """Pause pytest-timeout's SIGALRM timer (its signal method) around a one-off build.

    The project's 120 s per-test timeout is meant for tests, not for compiling llama.cpp once
    per machine: without the pause, the first test to request the fixture on a fresh machine
    would time out in the middle of the build. The remaining time is re-armed afterwards, so
    the test itself stays bounded. pytest-timeout's thread method cannot be paused like this;
    give the test a larger ``timeout`` marker if you use that method.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    remaining, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, remaining, interval)


@pytest.fixture(scope="session")
def llama_binary() -> Path:
    """Return the path of a working ``llama-server``, building it on first use.

    Fails (never skips) if the build fails: the suite relies on real local inference.
    """
    if is_usable(binary_path()):
        return binary_path()
    started = time.monotonic()
    try:
        with _build_timeout_paused():
            binary = ensure_llama_server()
    except LlamaBuildError as exc:
        failure = f"building llama-server failed:\n{exc}"
    else:
        elapsed = time.monotonic() - started
        print(f"\nllama-server ready after {elapsed:.0f} s (built or waited for): {binary}")
        return binary
    # Outside the except block, so the report shows the build's output once, not chained.
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the path of the tiny random GGUF model, written once per session."""
    return write_tiny_model(tmp_path_factory.mktemp("llama") / "tiny.gguf")


def _started(binary: Path, model: Path) -> LlamaServer:
    server = LlamaServer(binary, model)
    try:
        return server.start()
    except LlamaServerError as exc:
        failure = f"starting llama-server failed:\n{exc}"
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def llama_server(llama_binary: Path, tiny_model_path: Path) -> Iterator[LlamaServer]:
    """Yield a running ``LlamaServer`` with the tiny model, shared by the whole session.

    Fails (never skips) if the binary cannot be built or the server does not start.
    """
    server = _started(llama_binary, tiny_model_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def disposable_llama_server(llama_binary: Path, tiny_model_path: Path) -> Iterator[LlamaServer]:
    """Yield a server of the test's own (about 0.1 s to start) that the test may stop."""
    server = _started(llama_binary, tiny_model_path)
    try:
        yield server
    finally:
        server.stop()
