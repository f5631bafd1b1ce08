"""Run llama.cpp's ``llama-server`` on 127.0.0.1 as a real OpenAI-compatible endpoint."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

HOST = "127.0.0.1"
DEFAULT_MODEL_ALIAS = "codereview-tiny"
_STARTUP_ATTEMPTS = 3  # a free port can be taken between probing and binding; retry then


class LlamaServerError(RuntimeError):
    """Raised when ``llama-server`` exits or does not become ready in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the test process is killed outright (SIGKILL, pytest-timeout's thread method calling
    # os._exit), no teardown runs; PR_SET_PDEATHSIG makes the kernel send the server SIGTERM
    # instead of leaving an orphan that keeps its port and CPU.
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class LlamaServer:
    """A ``llama-server`` child process serving one GGUF model on ``127.0.0.1``.

    Use as a context manager, or call ``start()`` / ``stop()``; ``stop()`` may be called at any
    time (e.g. by a test that simulates the model server going away) and more than once.
    """

    def __init__(
        self,
        binary: Path,
        model: Path,
        *,
        port: int | None = None,
        ctx_size: int = 2048,
        parallel: int = 2,
        threads: int = 2,
        alias: str = DEFAULT_MODEL_ALIAS,
        startup_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """Configure (but do not start) a server for ``model`` using the ``binary``."""
        self.binary = binary
        self.model = model
        self.requested_port = port
        self.ctx_size = ctx_size
        self.parallel = parallel
        self.threads = threads
        self.alias = alias
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.port = 0
        self.model_id = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (llama.cpp's own endpoints such as ``/health``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the OpenAI client's ``base_url``."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """Return whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self, port: int) -> list[str]:
        """Return the command line that starts the server on ``port``."""
        return [
            str(self.binary),
            "--model",
            str(self.model),
            "--host",
            HOST,
            "--port",
            str(port),
            "--ctx-size",
            str(self.ctx_size),
            # Two slots, so the gateway's concurrent requests are served concurrently.
            "--parallel",
            str(self.parallel),
            "--threads",
            str(self.threads),
            # Render the GGUF's own chat template with Jinja. The default in this build, but
            # explicit: tool calls need it ("tools param requires --jinja flag"); json_schema
            # and json_object work either way.
            "--jinja",
            # A stable model id for /v1/models instead of the temporary file's path.
            "--alias",
            self.alias,
            # No warm-up decode: ready in ~0.03 s instead of ~0.08 s (per-test servers add up).
            "--no-warmup",
            # Serve only the API: no web UI, nothing fetched from the network.
            "--no-webui",
            "--offline",
            # Errors only: the per-request logs would drown pytest -s output.
            "--log-verbosity",
            "1",
            *self.extra_args,
        ]

    def start(self) -> Self:
        """Start the server and wait until ``/health`` reports the model loaded.

        Raises:
            LlamaServerError: if the process exits or is not ready within ``startup_timeout``.
        """
        if self.is_running():
            return self
        # A restart after stop() keeps the previous port, so clients' base_url stays valid.
        pinned = self.requested_port or self.port or None
        last_error: LlamaServerError | None = None
        for _ in range(_STARTUP_ATTEMPTS):
            port = pinned or free_port()
            try:
                self._spawn(port)
                self._wait_ready()
            except LlamaServerError as exc:
                self.stop()
                last_error = exc
                # Only a lost race for a freshly probed port is worth another try.
                if pinned is None and "bind" in str(exc).lower():
                    continue
                raise
            return self
        assert last_error is not None
        raise last_error

    def _spawn(self, port: int) -> None:
        self.port = port
        # A file rather than a pipe: nobody reads the server's output while tests run, and a
        # full pipe would block the server.
        self._log = tempfile.TemporaryFile(prefix="llama-server-", suffix=".log")  # noqa: SIM115
        # LLAMA_ARG_* variables override command-line defaults; keep the run reproducible.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
        self._process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if self._pdeathsig_applies() else None,
        )

    @staticmethod
    def _pdeathsig_applies() -> bool:
        # The kernel sends the signal when the *thread* that forked exits, so it is only safe
        # from the main thread; a server started from a worker thread would die with it.
        return sys.platform == "linux" and threading.current_thread() is threading.main_thread()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture 127.0.0.1.
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                process = self._process
                assert process is not None
                if process.poll() is not None:
                    raise LlamaServerError(
                        f"llama-server exited with code {process.returncode} during startup\n"
                        f"--- output tail ---\n{self.output_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    # 503 while the model loads, 200 once it can serve requests.
                    if client.get(f"{self.root_url}/health").status_code == 200:
                        models = client.get(f"{self.base_url}/models")
                        models.raise_for_status()
                        self.model_id = str(models.json()["data"][0]["id"])
                        return
                if time.monotonic() > deadline:
                    raise LlamaServerError(
                        f"llama-server not ready after {self.startup_timeout:.0f} s\n"
                        f"--- output tail ---\n{self.output_tail()}"
                    )
                time.sleep(0.05)

    def output_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines the server printed (stdout and stderr)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        process, self._process = self._process, None
        # The Popen holds no pipes (output goes to the log file), so waiting is all it needs.
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        """Start the server (see ``start``)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server (see ``stop``)."""
        self.stop()
