"""Build (once) and cache llama.cpp's OpenAI-compatible ``llama-server`` binary.

No registry ships a prebuilt server, but the ``llama-cpp-python`` sdist on PyPI vendors the
llama.cpp sources (``vendor/llama.cpp``), so the only network access needed is PyPI. The build
takes about four minutes on two cores, so the result is cached outside the repository, keyed by
the sdist version, in ``${XDG_CACHE_HOME:-~/.cache}/codereview/llama-server-<version>/``.

Run ``python tests/support/llama/build.py [VERSION]`` to build and print the binary's path.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

DEFAULT_VERSION = "0.3.36"

# Only what the server needs: a static binary (nothing to find at run time), no web UI (it
# would be downloaded), no HTTPS/curl (the tests talk to 127.0.0.1 and load a local file), no
# tests/examples (they would double the build time). GGML_NATIVE stays at its default (ON):
# the cache lives in the user's cache directory on the machine that built it, and the binary is
# smoke-tested (``--version``) before every use, so a cache copied to an older CPU is rebuilt
# instead of crashing with SIGILL in the middle of a test.
CMAKE_FLAGS: tuple[str, ...] = (
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DCMAKE_BUILD_TYPE=Release",
)

# Ninja prints "[done/total] ..." per step; used to turn its output into coarse progress lines.
_NINJA_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\]")

Log = Callable[[str], None]


class LlamaBuildError(RuntimeError):
    """Raised when downloading, configuring or compiling ``llama-server`` fails."""


def _print_log(message: str) -> None:
    # Flushed at once: the build is slow and pytest -s / CI logs should show it progressing.
    print(f"[llama-server build] {message}", file=sys.stderr, flush=True)


def cache_dir(version: str = DEFAULT_VERSION) -> Path:
    """Return the directory that holds the cached binary for ``version``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "codereview" / f"llama-server-{version}"


def binary_path(version: str = DEFAULT_VERSION) -> Path:
    """Return where the cached ``llama-server`` for ``version`` lives (it may not exist yet)."""
    return cache_dir(version) / "llama-server"


def is_usable(binary: Path) -> bool:
    """Return whether ``binary`` exists, is executable and runs (``--version`` exits 0)."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        return False
    try:
        result = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def find_ninja() -> str | None:
    """Return the Ninja executable to use, preferring the project's virtualenv (PyPI ``ninja``).

    The venv's copy comes first so that a machine set up from the project's own install does not
    depend on a system package; the system ``ninja`` (e.g. apt ``ninja-build``) is the fallback.
    """
    candidate = Path(sys.executable).parent / "ninja"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    try:
        import ninja  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        packaged = Path(str(ninja.BIN_DIR)) / "ninja"
        if packaged.is_file():
            return str(packaged)
    return shutil.which("ninja")


@contextmanager
def _exclusive_lock(path: Path, log: Log) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building; waiting for the lock {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    command: Sequence[str],
    *,
    cwd: Path,
    log: Log,
    step: str,
    progress: bool = False,
) -> None:
    """Run ``command``, keep the tail of its output for errors, and log coarse progress."""
    tail: deque[str] = deque(maxlen=60)
    last_decile = -1
    with subprocess.Popen(
        list(command),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            match = _NINJA_PROGRESS.match(line) if progress else None
            if match:
                done, total = int(match.group(1)), int(match.group(2))
                decile = done * 10 // max(total, 1)
                if decile > last_decile:
                    last_decile = decile
                    log(f"{step}: {done}/{total} steps")
        returncode = process.wait()
    if returncode != 0:
        output = "\n".join(tail)
        raise LlamaBuildError(
            f"{step} failed (exit {returncode}): {' '.join(command)}\n--- last output ---\n{output}"
        )


def _download_sdist(version: str, dest: Path, log: Log) -> Path:
    log(f"downloading llama-cpp-python=={version} sdist from PyPI")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            f"llama-cpp-python=={version}",
            "-d",
            str(dest),
        ],
        cwd=dest,
        log=log,
        step="pip download",
    )
    archives = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise LlamaBuildError(f"pip download left no llama_cpp_python sdist in {dest}")
    return archives[0]


def _extract_llama_cpp(archive: Path, dest: Path, log: Log) -> Path:
    """Extract only ``vendor/llama.cpp`` from the sdist and return its directory."""
    log(f"extracting vendor/llama.cpp from {archive.name}")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in f"{m.name}/"]
        # filter="data" refuses absolute paths, links out of the tree and device files.
        tar.extractall(dest, members=members, filter="data")
    sources = sorted(dest.glob("*/vendor/llama.cpp"))
    if not sources or not (sources[0] / "CMakeLists.txt").is_file():
        raise LlamaBuildError(f"{archive.name} does not contain vendor/llama.cpp")
    return sources[0]


def _compile(source: Path, build: Path, jobs: int, log: Log) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise LlamaBuildError("cmake not found on PATH (llama.cpp needs cmake >= 3.14)")
    ninja = find_ninja()
    if ninja is None:
        # Still works, just without Ninja's faster dependency scanning.
        log("ninja not found (pip install ninja); falling back to Unix Makefiles")
        generator = ["-G", "Unix Makefiles"]
    else:
        log(f"using ninja at {ninja}")
        generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    log("configuring with cmake")
    _run(
        [cmake, "-S", str(source), "-B", str(build), *generator, *CMAKE_FLAGS],
        cwd=build.parent,
        log=log,
        step="cmake configure",
    )
    log(f"compiling target llama-server with -j{jobs} (4-8 minutes on 2 cores)")
    _run(
        [cmake, "--build", str(build), "--target", "llama-server", f"-j{jobs}"],
        cwd=build.parent,
        log=log,
        step="cmake build",
        progress=True,
    )
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise LlamaBuildError(f"build finished but {binary} does not exist")
    return binary


def _install_atomically(binary: Path, target: Path) -> None:
    """Copy ``binary`` to ``target`` so that ``target`` is either absent or complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".llama-server.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, binary.open("rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o755)
        # Same directory, so the rename is atomic: readers never see a half-written binary.
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_llama_server(
    version: str = DEFAULT_VERSION,
    *,
    jobs: int = 2,
    log: Log = _print_log,
) -> Path:
    """Return the path to a working ``llama-server`` built from llama-cpp-python ``version``.

    The cached binary is returned at once if it runs. Otherwise the sdist is downloaded from
    PyPI and the server compiled in a temporary directory (about 4 minutes on 2 cores), then
    moved into the cache. An exclusive file lock makes concurrent callers (e.g. pytest-xdist
    workers or two test runs) wait for one build instead of building twice.

    Raises:
        LlamaBuildError: if any step fails; the message includes the failing output's tail.
    """
    target = binary_path(version)
    if is_usable(target):
        return target
    lock = target.parent.parent / f"llama-server-{version}.lock"
    with _exclusive_lock(lock, log):
        # Another process may have finished the build while this one waited for the lock.
        if is_usable(target):
            log(f"using binary built by another process: {target}")
            return target
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="llama-server-build-") as tmp:
            work = Path(tmp)
            (work / "sdist").mkdir()
            archive = _download_sdist(version, work / "sdist", log)
            source = _extract_llama_cpp(archive, work / "src", log)
            built = _compile(source, work / "build", jobs, log)
            if not is_usable(built):
                raise LlamaBuildError(f"freshly built {built} does not run (--version failed)")
            _install_atomically(built, target)
        elapsed = time.monotonic() - started
        size_mb = target.stat().st_size / 1e6
        log(f"built {target} ({size_mb:.1f} MB) in {elapsed:.0f} s")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: build (or find) the binary and print its path."""
    args = list(sys.argv[1:] if argv is None else argv)
    version = args[0] if args else DEFAULT_VERSION
    try:
        path = ensure_llama_server(version)
    except LlamaBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
