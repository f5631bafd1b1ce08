#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+ and git.

    python3 dev.py demo [REPO_URL [FUNCTION ...]]   start both services and run a demo review
    python3 dev.py test                             run lint, type checks and the whole test suite
    python3 dev.py nox [ARGS ...]                   run any nox session (e.g. -s bench)

It installs pinned poetry and nox into .tools/ (once), and nox installs the locked dependencies.
"""

from __future__ import annotations

import os
import shutil
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
        args = [*nox, "-s", "lint", "typecheck", "tests", *(["--", *rest] if rest else [])]
    elif command == "nox":
        args = [*nox, *rest]
    else:
        print(__doc__)
        return 0 if command in ("help", "-h", "--help") else 2
    return subprocess.run(args, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
