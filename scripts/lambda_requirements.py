"""Write functions/requirements.txt, the Lambda functions' dependencies, from poetry.lock.

    python scripts/lambda_requirements.py           # (re)write functions/requirements.txt
    python scripts/lambda_requirements.py --check   # exit 1 if it no longer matches the lock

poetry.lock stays the one source of truth: this file is derived from it, never edited. It holds
the lock's main group (no dev tools), pinned, with the lock's hashes, keeping only packages whose
markers hold on the Lambda runtime (CPython 3.12 on Linux x86_64), so ``sam build`` (zip
functions) and functions/fetch_repo/Dockerfile (the image) install exactly what the tests ran
against. A test runs ``--check``, so a lock change without a new export fails the suite.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "poetry.lock"
OUTPUT = ROOT / "functions" / "requirements.txt"

LAMBDA_PYTHON = "3.12"
"""The Lambda runtime's Python (template.yaml ``Runtime``, the Dockerfile's base image tag)."""

# PEP 508 environment of the Lambda runtime (python3.12, Amazon Linux 2023, x86_64).
LAMBDA_ENVIRONMENT = {
    "implementation_name": "cpython",
    "implementation_version": f"{LAMBDA_PYTHON}.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": f"{LAMBDA_PYTHON}.0",
    "python_version": LAMBDA_PYTHON,
    "sys_platform": "linux",
    "extra": "",
}

HEADER = f"""\
# Generated from poetry.lock by scripts/lambda_requirements.py: do not edit.
# The lock's main group for the Lambda runtime (CPython {LAMBDA_PYTHON}, Linux x86_64), with hashes.
# sam build installs it for the zip functions; functions/fetch_repo/Dockerfile for the image.
"""


def _main_marker(package: dict[str, Any]) -> str | None:
    """The package's marker for the main group (lock format 2.1 may give one per group)."""
    markers = package.get("markers")
    if isinstance(markers, dict):
        value = markers.get("main")
        return str(value) if value else None
    return str(markers) if markers else None


def render(lock_text: str) -> str:
    """Return requirements.txt for the Lambda runtime from the text of poetry.lock."""
    lock = tomllib.loads(lock_text)
    lines = [HEADER]
    for package in sorted(lock.get("package", []), key=lambda p: str(p["name"]).lower()):
        if "main" not in package.get("groups", ["main"]):
            continue
        marker = _main_marker(package)
        if marker and not Marker(marker).evaluate(LAMBDA_ENVIRONMENT):
            continue
        source = package.get("source", {})
        if source.get("type") in ("git", "directory", "file", "url"):
            # A hash-pinned requirements file cannot name these; the lock has none today.
            raise SystemExit(f"{package['name']} comes from a {source['type']} source")
        hashes = sorted({str(f["hash"]) for f in package.get("files", [])})
        if not hashes:
            raise SystemExit(f"{package['name']} has no hashes in poetry.lock")
        lines.append(f"{package['name']}=={package['version']} \\")
        lines.extend(f"    --hash={digest} \\" for digest in hashes[:-1])
        lines.append(f"    --hash={hashes[-1]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write or check functions/requirements.txt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    expected = render(LOCK.read_text(encoding="utf-8"))
    current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
    if args.check:
        if current != expected:
            print(
                f"{OUTPUT.relative_to(ROOT)} does not match poetry.lock; "
                "run: python scripts/lambda_requirements.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != expected:
        OUTPUT.write_text(expected, encoding="utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
