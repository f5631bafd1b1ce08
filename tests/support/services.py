"""Run the real apps under uvicorn, in child processes, on 127.0.0.1, configured by env vars."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

# Variables of ours that must never leak from the developer's shell into a test service.
_OURS = (
    "LLM_",
    "OPENAI_",
    "DEEPSEEK_",
    "LOCAL_LLM_",
    "ALLOWED_REPO_HOSTS",
    "DATA_DIR",
    "APP_MODE",
    "FETCH_",
    "FUNCTION_WAIT",
    "MAX_",
    "JOBS_TABLE",
    "REPOS_BUCKET",
    "AWS_",
)


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment without our settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_OURS)}
    env.update(extra)
    return env


class Service:
    """The app under uvicorn in a child process, on a socket we bound (no port race)."""

    def __init__(
        self,
        app: str,
        env: Mapping[str, str],
        log_path: Path,
        *,
        port: int = 0,
        isolated: bool = True,
    ) -> None:
        self.app = app
        self.env = dict(env)
        self.log_path = log_path
        self.port = port
        """The port asked for; if it is taken, a free one is used instead."""
        self.isolated = isolated
        """Drop our settings from the inherited environment (tests); the demo inherits them."""
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Service:
        """Start and wait until GET /healthz answers."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self._sock.bind(("127.0.0.1", self.port))
            except OSError:
                self._sock.bind(("127.0.0.1", 0))
            self._sock.listen(128)
            self.port = self._sock.getsockname()[1]
        fd = self._sock.fileno()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.serve_fd", self.app, str(fd)],
                cwd=REPO_ROOT,
                env=clean_env(self.env) if self.isolated else {**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.app} did not become healthy:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the process at once (a crash), keeping the socket for a restart."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        """Stop the process and close the socket."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        self._proc = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
