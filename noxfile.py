"""Developer tasks. `python3 dev.py ...` installs poetry and nox, then runs these sessions."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_external_run = True

PYTHON_PATHS = ["functions", "tests", "scripts", "noxfile.py", "dev.py"]


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
