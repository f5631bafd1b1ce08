"""Developer tasks. `python3 dev.py ...` installs poetry and nox, then runs these sessions."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "sam"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_external_run = True

PYTHON_PATHS = ["functions", "tests", "scripts", "noxfile.py", "dev.py"]
SAM_CLI = "aws-sam-cli==1.170.0"
ZIP_FUNCTIONS = ["GatewayFunction", "AnalysisFunction"]
"""template.yaml's zip functions; FetchRepoFunction is a container image (see the sam session)."""


def install_locked(session: nox.Session) -> None:
    """Install exactly the locked dependencies (and the project) into the session's venv."""
    session.run_install(
        "poetry",
        "sync",
        "--with",
        "dev",
        "--no-interaction",
        external=True,
        env={"VIRTUAL_ENV": session.virtualenv.location, "POETRY_VIRTUALENVS_CREATE": "false"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    install_locked(session)
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict with the pydantic plugin."""
    install_locked(session)
    session.run("mypy", "--strict", *PYTHON_PATHS)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (unit, integration, end to end)."""
    install_locked(session)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def demo(session: nox.Session) -> None:
    """Start both services on embedded defaults and review functions of a repository.

    `nox -s demo` serves a sample repository on 127.0.0.1 (works offline);
    `nox -s demo -- https://github.com/owner/repo [function_name ...]` reviews a real one.
    """
    install_locked(session)
    session.run("python", "scripts/demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark (not a test): medians and ratios in one run, written to docs/benchmark.md.

    It builds its own repositories and servers on 127.0.0.1 and never fails on timing;
    `nox -s bench -- --help` lists the knobs (repetitions, output file).
    """
    install_locked(session)
    session.run("python", "scripts/bench.py", *session.posargs)


def _lambda_python() -> str | None:
    """A python3.12 (the Lambda runtime's version) that runs, to import the built functions."""
    candidates = [shutil.which("python3.12") or ""]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(root, "versions", "3.12*", "bin", "python3.12")))
    for candidate in filter(None, candidates):
        # pyenv's shim exists on PATH even when no 3.12 is selected; it then exits non-zero.
        probe = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


@nox.session
def sam(session: nox.Session) -> None:
    """SAM: lint template.yaml and build the zip functions (pinned aws-sam-cli, its own venv).

    `sam build` of the worker (FetchRepoFunction, a container image with git) needs Docker,
    which CI does not have: its Dockerfile is checked by tests/integration/test_template.py and
    built by `sam build` on machines with Docker. The zip functions' Makefile cross-installs
    the locked wheels for python3.12, so no python3.12 is needed to build; if one is found,
    the built functions are imported with it as a smoke test.
    """
    session.install(SAM_CLI)
    session.env["SAM_CLI_TELEMETRY"] = "0"
    session.run("sam", "--version")
    session.run("sam", "validate", "--lint")
    build_root = Path(session.create_tmp()).resolve() / "sam-build"
    shutil.rmtree(build_root, ignore_errors=True)
    for function in ZIP_FUNCTIONS:
        # One function per build: `sam build` would otherwise stop at the image function.
        session.run("sam", "build", function, "--build-dir", str(build_root / function))
    python = _lambda_python()
    if python is None:
        session.log("no python3.12 found: the built functions were not imported")
        return
    for function, handler in zip(
        ZIP_FUNCTIONS, ["functions.gateway.handler", "functions.analysis.handler"], strict=True
    ):
        artifact = build_root / function / function
        check = (
            f"import sys; sys.path.insert(0, {str(artifact)!r}); import {handler}; "
            "from ruff import find_ruff_bin; "
            f"assert find_ruff_bin().startswith({str(artifact)!r}), find_ruff_bin()"
        )
        session.run(python, "-I", "-c", check, external=True)
