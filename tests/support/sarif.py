"""Validate SARIF logs with Microsoft's SARIF multitool (schema 2.1.0 plus its own rules).

The multitool ships on the npm registry as a self-contained Linux binary; it is fetched once
with ``npm pack`` into ~/.cache/codereview, keyed by version, behind a file lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VERSION = "5.7.0"
PACKAGE = "@microsoft/sarif-multitool-linux"


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "codereview" / f"sarif-multitool-{VERSION}"


def ensure_multitool() -> Path:
    """Return the multitool binary, downloading it with npm the first time."""
    target = _cache_dir()
    binary = target / "package" / "Sarif.Multitool"
    if binary.exists():
        return binary
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"sarif-multitool-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to fetch the SARIF multitool (registry package)")
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"],
                cwd=scratch,
                check=True,
                capture_output=True,
                timeout=300,
            )
            [archive] = Path(scratch).glob("*.tgz")
            staging = Path(tempfile.mkdtemp(dir=target.parent))
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            (staging / "package" / "Sarif.Multitool").chmod(0o755)
            staging.rename(target)
    return binary


def validate(log: dict[str, Any], workdir: Path) -> list[str]:
    """Return the multitool's errors for ``log`` (empty when it is valid SARIF 2.1.0)."""
    source = workdir / "report.sarif"
    result = workdir / "validation.sarif"
    source.write_text(json.dumps(log))
    result.unlink(missing_ok=True)  # the multitool does not overwrite its output
    proc = subprocess.run(
        [str(ensure_multitool()), "validate", str(source), "-o", str(result)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOTNET_CLI_TELEMETRY_OPTOUT": "1"},
    )
    if not result.exists():
        raise RuntimeError(f"the SARIF multitool did not run: {proc.stdout}\n{proc.stderr}")
    output = json.loads(result.read_text())
    return [
        f"{r.get('ruleId')}: {r['message'].get('text', r['message'])}"
        for run in output.get("runs", [])
        for r in run.get("results", [])
        if r.get("level") == "error"
    ]
