"""The demo's sample repository (demo/sample_repo), as files for the test git server."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "demo" / "sample_repo"


def sample_files() -> dict[str, bytes]:
    """Every file of the sample repository, by relative path."""
    return {
        path.relative_to(SAMPLE_DIR).as_posix(): path.read_bytes()
        for path in sorted(SAMPLE_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def sample_source(path: str, first_line: int, last_line: int) -> str:
    """Lines ``first_line``..``last_line`` (1-based, inclusive) of a sample file, as stored."""
    lines = (SAMPLE_DIR / path).read_text().splitlines(keepends=True)
    return "".join(lines[first_line - 1 : last_line])
