#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+ and git.

    python3 dev.py demo [REPO_URL [FUNCTION ...]]   start both services and run a demo review
    python3 dev.py test                             lint, type checks, tests, template.yaml
    python3 dev.py nox [ARGS ...]                   run any nox session (e.g. -s bench)

It installs pinned poetry and nox into .tools/ (once), and nox installs the locked dependencies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
PINS = ["poetry==2.5.1", "nox==2026.10.20"]


def _bin(name: str) -> Path:
    return TOOLS / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_tools() -> None:
    """Create .tools/ with pinned poetry and nox unless it is already there."""
    marker = TOOLS / ".pins"
    if marker.exists() and marker.read_text() == "\n".join(PINS):
        return
    print(f"Installing {', '.join(PINS)} into {TOOLS} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    subprocess.run(
        [
            str(_bin("python")),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *PINS,
        ],
        check=True,
    )
    marker.write_text("\n".join(PINS))


def start_llama_build() -> subprocess.Popen[bytes] | None:
    """Start building the tests' llama-server in the background (a no-op once it is cached).

    The first build takes 4-8 minutes; the test fixture waits for it on the build's file lock.
    A failure here never fails the command: the fixture then builds again and reports why.
    """
    if os.name != "posix":
        return None
    script = ROOT / "tests" / "support" / "llama" / "build.py"
    try:
        # Progress lines go to stderr, the binary's path to stdout (not needed here).
        return subprocess.Popen(
            [str(_bin("python")), str(script)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        print(f"Could not start the llama-server build in the background: {exc}", flush=True)
        return None


def main(argv: list[str]) -> int:
    """Run the command named in ``argv``."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py must explain on old Pythons
        print("Python 3.11 or newer is needed.", file=sys.stderr)
        return 2
    if shutil.which("git") is None:
        print("git is needed (the fetcher and the tests use it).", file=sys.stderr)
        return 2
    command, *rest = argv or ["help"]
    if command in ("demo", "test", "nox"):
        ensure_tools()
    env = {**os.environ, "PATH": f"{_bin('python').parent}{os.pathsep}{os.environ['PATH']}"}
    nox = [str(_bin("nox")), "--envdir", str(ROOT / ".nox")]
    if command == "demo":
        args = [*nox, "-s", "demo", "--", *rest]
    elif command == "test":
        args = [*nox, "-s", "lint", "typecheck", "tests", "sam", *(["--", *rest] if rest else [])]
    elif command == "nox":
        args = [*nox, *rest]
    else:
        print(__doc__)
        return 0 if command in ("help", "-h", "--help") else 2
    # The whole suite needs llama-server; building it overlaps with lint and type checks.
    build = start_llama_build() if command == "test" and not rest else None
    try:
        return subprocess.run(args, cwd=ROOT, env=env, check=False).returncode
    finally:
        if build is not None and build.poll() is None:
            print("Stopping the unfinished llama-server build (the run ended first).", flush=True)
            # SIGINT, so that build.py removes its temporary build directory on the way out.
            os.killpg(build.pid, signal.SIGINT)
            build.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
