"""Fetch one commit of a public repository with git, never running anything the repository holds.

The clone is shallow, bare of a working tree and made with an empty template: files are listed
with ``git ls-tree`` and read with one ``git cat-file --batch``, so no checkout happens, no
filter (LFS smudge, ``.gitattributes`` drivers) or hook runs, and symlinks are never written or
followed. Every git process gets the same environment, built from scratch in
``hardened_git_env``: no system or global config, no credential helpers or prompts, http(s)
only, no redirects, and the hardening settings passed as command-scope config
(``GIT_CONFIG_COUNT``), which outranks anything in the cloned repository's own config.

Processes are started with ``subprocess`` rather than GitPython's ``Git.execute``: that always
starts from a copy of ``os.environ`` (so the caller's ``GIT_*`` variables would leak in) and
cannot start a process in its own session, which is what lets a timeout kill git together with
its helpers (``git-remote-http``, ``index-pack``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self, cast

from functions.core.errors import FetchTimeout, GitFailed, RepoNotFound, RepoTooLarge
from functions.core.models import SkippedFile
from functions.core.ports import FetchLimits, TreeEntry
from functions.core.repo_url import RepoUrl

logger = logging.getLogger(__name__)

MIN_GIT_VERSION = (2, 32)
"""``GIT_CONFIG_COUNT`` needs 2.31 and ``GIT_CONFIG_GLOBAL`` 2.32; older git ignores them."""
MAX_SKIPPED_LISTED = 200
"""Skipped files listed one by one; the rest are summed up in one last entry."""

_POLL_SECONDS = 0.05
_STDERR_TAIL_BYTES = 16 * 1024
_READ_CHUNK = 64 * 1024
_REGULAR_MODES = frozenset({b"100644", b"100755"})
_SYMLINK_MODE = b"120000"
_GITLINK_MODE = b"160000"
_OID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_CREDENTIALS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_NOT_FOUND_RE = re.compile(
    r"repository '[^']*' not found|repository not found|does not appear to be a git repository"
    r"|could not read username|could not read password|authentication failed"
    r"|terminal prompts disabled|returned error: 40[14]\b"
)


def hardened_git_env(
    git_executable: str,
    *,
    low_speed_limit: int = 1000,
    low_speed_time: int = 30,
    ca_bundle: str | None = None,
) -> dict[str, str]:
    """Return the complete environment for every git process the fetcher starts.

    Nothing is inherited from ``os.environ``: no ``GIT_*`` variable, proxy or credential of the
    caller reaches git. ``HOME=/dev/null`` also keeps libcurl away from any ``~/.netrc``.
    """
    config: list[tuple[str, str]] = [
        ("core.hooksPath", os.devnull),
        ("core.symlinks", "false"),
        ("core.fsmonitor", "false"),
        ("http.followRedirects", "false"),
        ("protocol.file.allow", "never"),
        ("protocol.ext.allow", "never"),
        ("submodule.recurse", "false"),
        ("filter.lfs.smudge", ""),
        ("filter.lfs.process", ""),
        ("filter.lfs.required", "false"),
        ("credential.helper", ""),
        ("http.lowSpeedLimit", str(low_speed_limit)),
        ("http.lowSpeedTime", str(low_speed_time)),
        # Bundle URIs would let the server send git to fetch from other hosts.
        ("transfer.bundleURI", "false"),
        # Automatic maintenance can detach into a new session, out of reach of the deadline.
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("fetch.writeCommitGraph", "false"),
    ]
    if ca_bundle is not None:
        config.append(("http.sslCAInfo", ca_bundle))
    true_path = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    search_path = ["/usr/local/bin", "/usr/bin", "/bin"]
    if os.path.isabs(git_executable):
        search_path.insert(0, os.path.dirname(git_executable))
    env = {
        "PATH": os.pathsep.join(dict.fromkeys(search_path)),
        "HOME": os.devnull,
        "XDG_CONFIG_HOME": os.devnull,
        # English messages: clone errors are recognised by their text.
        "LANG": "C",
        "LC_ALL": "C",
        "LANGUAGE": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        # An empty answer to every credential prompt: a private repository fails at once.
        "GIT_ASKPASS": true_path,
        "GCM_INTERACTIVE": "never",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_ALLOW_PROTOCOL": "http:https",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


class GitRepoFetcher:
    """Fetches the default branch's head of an http(s) repository (implements ``RepoFetcher``)."""

    def __init__(
        self,
        git_executable: str | None = None,
        *,
        low_speed_limit: int = 1000,
        low_speed_time: int = 30,
        ca_bundle: str | None = None,
    ) -> None:
        """Use ``git_executable`` (default: ``git`` on PATH).

        A transfer slower than ``low_speed_limit`` bytes/s for ``low_speed_time`` seconds is
        abandoned by git itself; ``ca_bundle`` replaces the system's CA certificates for https.
        """
        self._git = git_executable or shutil.which("git")
        self._env = hardened_git_env(
            self._git or "git",
            low_speed_limit=low_speed_limit,
            low_speed_time=low_speed_time,
            ca_bundle=ca_bundle,
        )
        self._version_checked = False

    def fetch(
        self, url: RepoUrl, workdir: Path, limits: FetchLimits, deadline: float
    ) -> GitRepoSnapshot:
        """Clone the default branch's head into ``workdir`` (absent or empty) and list its files.

        Raise RepoNotFound, RepoTooLarge, FetchTimeout or GitFailed. No git process outlives
        this call; ``read()`` on the snapshot starts one more and stops it when done.
        """
        started = time.monotonic()
        name = url.display_name
        if started >= deadline:
            raise FetchTimeout(f"Fetching {name} did not start: its time limit had passed.")
        workdir = workdir.absolute()
        if workdir.exists() and any(workdir.iterdir()):
            raise ValueError(f"workdir {workdir} must be absent or empty")
        workdir.parent.mkdir(parents=True, exist_ok=True)
        runner = _Runner(self._git_executable(), self._env, name, limits, started, deadline)
        if not self._version_checked:
            runner.check_version()
            self._version_checked = True
        runner.clone(url, workdir)
        clone_seconds = time.monotonic() - started
        git_dir = workdir / ".git"
        commit = runner.head_commit(git_dir)
        listing = runner.list_tree(git_dir, commit)
        logger.info(
            "fetched %s at %s in %.1f s: %d entries, %d Python files kept, %d skipped",
            name,
            commit,
            clone_seconds,
            listing.files_in_repo,
            len(listing.entries),
            len(listing.skipped),
        )
        return GitRepoSnapshot(
            runner=runner,
            git_dir=git_dir,
            commit=commit,
            files_in_repo=listing.files_in_repo,
            entries=listing.entries,
            skipped=listing.skipped,
        )

    def _git_executable(self) -> str:
        if self._git is None:
            raise GitFailed("git is not installed on this server, so no repository can be fetched.")
        return self._git


class GitRepoSnapshot:
    """A fetched commit; its Python files are read from git's object store, one at a time."""

    def __init__(
        self,
        *,
        runner: _Runner,
        git_dir: Path,
        commit: str,
        files_in_repo: int,
        entries: Sequence[TreeEntry],
        skipped: Sequence[SkippedFile],
    ) -> None:
        self._runner = runner
        self._git_dir = git_dir
        self._commit = commit
        self._files_in_repo = files_in_repo
        self._entries = tuple(entries)
        self._skipped = tuple(skipped)
        self._live: set[subprocess.Popen[bytes]] = set()

    @property
    def commit(self) -> str:
        """The commit id that was fetched."""
        return self._commit

    @property
    def files_in_repo(self) -> int:
        """How many entries the tree has in all (files, symlinks, submodules)."""
        return self._files_in_repo

    @property
    def entries(self) -> Sequence[TreeEntry]:
        """The Python files kept, in git's path order."""
        return self._entries

    @property
    def skipped(self) -> Sequence[SkippedFile]:
        """Python files not kept, each with a reason; capped, with a summary entry at the end."""
        return self._skipped

    @property
    def git_dir(self) -> Path:
        """The clone's ``.git`` folder."""
        return self._git_dir

    def read(self) -> Generator[tuple[TreeEntry, bytes], None, None]:
        """Yield each kept entry with its content, through one ``git cat-file --batch``.

        Contents are checked against the listed size and object type. Stops with FetchTimeout
        at the fetch's deadline. Closing the iterator early stops the git process.
        """
        if not self._entries:
            return
        runner = self._runner
        runner.check_time("reading files")
        with (
            tempfile.TemporaryFile() as errors,
            runner.spawn(
                ["cat-file", "--batch"],
                git_dir=self._git_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            ) as proc,
        ):
            self._live.add(proc)
            watchdog = _Watchdog(proc, runner.deadline)
            try:
                stdin, stdout = cast(IO[bytes], proc.stdin), cast(io.BufferedReader, proc.stdout)
                for entry in self._entries:
                    yield entry, self._read_one(stdin, stdout, entry, watchdog, errors)
            finally:
                watchdog.stop()
                with contextlib.suppress(OSError):
                    cast(IO[bytes], proc.stdin).close()
                _end(proc)
                self._live.discard(proc)

    def close(self) -> None:
        """Stop any ``cat-file`` process an unfinished ``read()`` left running."""
        for proc in list(self._live):
            _end(proc)
        self._live.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read_one(
        self,
        stdin: IO[bytes],
        stdout: io.BufferedReader,
        entry: TreeEntry,
        watchdog: _Watchdog,
        errors: IO[bytes],
    ) -> bytes:
        try:
            stdin.write(entry.blob_id.encode("ascii") + b"\n")
            stdin.flush()
            header = stdout.readline(512)
        except (BrokenPipeError, ValueError):
            header = b""
        fields = header.split()
        if watchdog.fired:
            raise self._runner.timeout("reading files")
        if len(fields) != 3 or fields[1] != b"blob" or fields[0] != entry.blob_id.encode():
            said = _last_line(_tail(errors)) or header.decode("utf-8", "replace").strip()
            raise GitFailed(f"git could not read {entry.path} from the fetched commit: {said}")
        size = int(fields[2])
        if size != entry.size:
            raise GitFailed(
                f"git reported {size} bytes for {entry.path}, but the tree lists {entry.size}."
            )
        data = stdout.read(size)
        terminator = stdout.read(1)
        if len(data) != size or terminator != b"\n":
            if watchdog.fired:
                raise self._runner.timeout("reading files")
            raise GitFailed(f"git stopped while reading {entry.path} from the fetched commit.")
        return data


class _Listing:
    """Turns ``ls-tree -r -l -z`` records into kept entries and reasons for the rest."""

    def __init__(self, name: str, limits: FetchLimits) -> None:
        self._name = name
        self._limits = limits
        self.files_in_repo = 0
        self.entries: list[TreeEntry] = []
        self.skipped: list[SkippedFile] = []
        self._kept_bytes = 0
        self._full: str | None = None
        self._unlisted: Counter[str] = Counter()

    def add(self, record: bytes) -> None:
        meta, tab, raw_path = record.partition(b"\t")
        fields = meta.split()
        if not tab or len(fields) != 4:
            raise GitFailed("git listed the repository's files in an unexpected format.")
        mode, kind, oid, size_field = fields
        self.files_in_repo += 1
        limit = self._limits.max_tree_entries
        if self.files_in_repo > limit:
            raise RepoTooLarge(
                f"Repository {self._name} is too large: it has more than {limit:,} files; "
                f"the limit is {limit:,}."
            )
        if not raw_path.endswith(b".py"):
            return
        path, problem = _check_path(raw_path)
        if problem is not None:
            self._skip(path, problem)
        elif mode == _SYMLINK_MODE:
            self._skip(path, "symbolic link (not followed)")
        elif mode == _GITLINK_MODE or kind == b"commit":
            self._skip(path, "submodule (not fetched)")
        elif mode not in _REGULAR_MODES or kind != b"blob":
            self._skip(path, f"not a regular file (mode {mode.decode('ascii', 'replace')})")
        else:
            self._add_file(path, oid, size_field)

    def finish(self) -> None:
        if self._unlisted:
            counts = ", ".join(f"{reason}: {n:,}" for reason, n in self._unlisted.most_common())
            total = sum(self._unlisted.values())
            self.skipped.append(
                SkippedFile(path="...", reason=f"{total:,} more Python files not kept ({counts})")
            )

    def _add_file(self, path: str, oid: bytes, size_field: bytes) -> None:
        object_id = oid.decode("ascii", "replace")
        if not size_field.isdigit() or not _OID_RE.fullmatch(object_id):
            raise GitFailed(f"git listed {path} with an invalid object id or size.")
        size = int(size_field)
        limits = self._limits
        if size > limits.max_file_bytes:
            self._skip(path, f"larger than {_kilobytes(limits.max_file_bytes)}")
            return
        # Once a limit is reached no later file is kept, even a smaller one: what is kept
        # does not depend on how the remaining files happen to be sized.
        if self._full is None and len(self.entries) >= limits.max_files:
            self._full = "file limit reached"
        if self._full is None and self._kept_bytes + size > limits.max_total_bytes:
            self._full = "size limit reached"
        if self._full is not None:
            self._skip(path, self._full)
            return
        self.entries.append(TreeEntry(path=path, size=size, blob_id=object_id))
        self._kept_bytes += size

    def _skip(self, path: str, reason: str) -> None:
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append(SkippedFile(path=path, reason=reason))
        else:
            self._unlisted[reason] += 1


class _Runner:
    """Starts git for one fetch: one environment, one deadline, one process group per command."""

    def __init__(
        self,
        git: str,
        env: dict[str, str],
        name: str,
        limits: FetchLimits,
        started: float,
        deadline: float,
    ) -> None:
        self.git = git
        self.env = env
        self.name = name
        self.limits = limits
        self.started = started
        self.deadline = deadline

    def spawn(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        git_dir: Path | None = None,
        stdin: int = subprocess.DEVNULL,
        stdout: int = subprocess.DEVNULL,
        stderr: IO[bytes],
    ) -> subprocess.Popen[bytes]:
        """Start ``git ARGS`` in a new session, so it and its children can be killed together."""
        prefix = [f"--git-dir={git_dir}"] if git_dir is not None else []
        return subprocess.Popen(
            [self.git, *prefix, *args],
            cwd=cwd or git_dir or "/",
            env=self.env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
        )

    def check_time(self, step: str) -> None:
        """Raise FetchTimeout if the deadline has passed."""
        if time.monotonic() >= self.deadline:
            raise self.timeout(step)

    def timeout(self, step: str) -> FetchTimeout:
        """The error for running out of time during ``step``."""
        ran = time.monotonic() - self.started
        return FetchTimeout(
            f"Fetching {self.name} was stopped while {step} after {ran:.1f} s: it reached the "
            f"time limit for a fetch ({self.limits.timeout_seconds:g} s)."
        )

    def run(self, args: Sequence[str], step: str, git_dir: Path | None = None) -> tuple[int, str]:
        """Run a short git command to the end (or the deadline); return its status and stdout."""
        self.check_time(step)
        with (
            tempfile.TemporaryFile() as errors,
            self.spawn(args, git_dir=git_dir, stdout=subprocess.PIPE, stderr=errors) as proc,
        ):
            watchdog = _Watchdog(proc, self.deadline)
            try:
                out = cast(IO[bytes], proc.stdout).read()
            finally:
                watchdog.stop()
                _end(proc)
            if watchdog.fired:
                raise self.timeout(step)
            return proc.returncode, out.decode("utf-8", "replace").strip()

    def check_version(self) -> None:
        """Refuse a git too old to honour the hardening environment."""
        status, out = self.run(["version"], "checking the git version")
        match = re.search(r"(\d+)\.(\d+)", out)
        if status != 0 or match is None:
            raise GitFailed(f"git does not work on this server ({out or 'no version'}).")
        if (int(match[1]), int(match[2])) < MIN_GIT_VERSION:
            wanted = ".".join(map(str, MIN_GIT_VERSION))
            raise GitFailed(f"git {wanted} or newer is needed to fetch safely; found {out}.")

    def clone(self, url: RepoUrl, workdir: Path) -> None:
        """Shallow-clone ``url`` into ``workdir`` within the deadline and ``max_repo_bytes``."""
        self.check_time("starting the download")
        limit = self.limits.max_repo_bytes
        with (
            tempfile.TemporaryDirectory(prefix="git-template-") as template,
            tempfile.TemporaryFile() as errors,
        ):
            args = [
                "clone",
                "--quiet",
                "--depth=1",
                "--single-branch",
                "--no-tags",
                "--no-checkout",
                "--no-recurse-submodules",
                f"--template={template}",
                "--",
                url.url,
                str(workdir),
            ]
            with (
                self.spawn(args, cwd=workdir.parent, stderr=errors) as proc,
                _ExitWaiter(proc) as exited,
            ):
                try:
                    while True:
                        done = _has_exited(proc)
                        downloaded = _bytes_under(workdir / ".git")
                        if downloaded > limit:
                            raise RepoTooLarge(
                                f"Repository {self.name} is too large: the download exceeded "
                                f"{_human_bytes(downloaded)}; the limit is {_human_bytes(limit)}."
                            )
                        if done:
                            break
                        if time.monotonic() >= self.deadline:
                            raise self.timeout("downloading")
                        exited.wait(max(0.0, min(_POLL_SECONDS, self.deadline - time.monotonic())))
                finally:
                    _end(proc)
            if proc.returncode != 0:
                raise _clone_error(url, _tail(errors))

    def head_commit(self, git_dir: Path) -> str:
        """Return the commit id HEAD resolves to; GitFailed if the repository is empty."""
        status, out = self.run(
            ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], "reading HEAD", git_dir
        )
        if status != 0:
            raise GitFailed(
                f"Repository {self.name} is empty: its default branch has no commits yet."
            )
        if not _OID_RE.fullmatch(out):
            raise GitFailed(f"git gave an unexpected commit id for {self.name}: {out[:80]!r}")
        return out

    def list_tree(self, git_dir: Path, commit: str) -> _Listing:
        """Stream the tree of ``commit``, sorting its Python files into kept and skipped."""
        step = "listing files"
        self.check_time(step)
        listing = _Listing(self.name, self.limits)
        args = ["ls-tree", "-r", "-l", "-z", "--full-tree", commit]
        with (
            tempfile.TemporaryFile() as errors,
            self.spawn(args, git_dir=git_dir, stdout=subprocess.PIPE, stderr=errors) as proc,
        ):
            watchdog = _Watchdog(proc, self.deadline)
            try:
                stdout = cast(io.BufferedReader, proc.stdout)
                pending = b""
                while chunk := stdout.read1(_READ_CHUNK):
                    *records, pending = (pending + chunk).split(b"\0")
                    for record in records:
                        listing.add(record)
            finally:
                watchdog.stop()
                _end(proc)
            if watchdog.fired:
                raise self.timeout(step)
            if proc.returncode != 0 or pending:
                said = _last_line(_tail(errors)) or "its output was cut short"
                raise GitFailed(f"git could not list the files of {self.name}: {said}")
        listing.finish()
        return listing


class _ExitWaiter:
    """Sleeps until a poll interval passes or the process exits, whichever comes first.

    A pidfd (Linux 5.3+) becomes readable when the process exits, without reaping it, so the
    clone loop sees the end at once instead of up to a poll interval (50 ms, 25 ms on
    average) later, which is a third of a small repository's fetch. Where there are no
    pidfds it sleeps, as before.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._fd: int | None = None
        self._poll: select.poll | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None and hasattr(select, "poll"):
            with contextlib.suppress(OSError):
                self._fd = pidfd_open(proc.pid)
                # poll, not select: a busy server's descriptors may pass select's 1024 limit.
                self._poll = select.poll()
                self._poll.register(self._fd, select.POLLIN)

    def wait(self, seconds: float) -> None:
        """Return after ``seconds``, or sooner when the process has exited."""
        if self._poll is None:
            time.sleep(seconds)
            return
        self._poll.poll(seconds * 1000.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._poll = None


class _Watchdog:
    """Kills a process group at the deadline: a blocking read cannot watch the clock itself."""

    def __init__(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        self.fired = False
        self._proc = proc
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        _kill_group(self._proc)

    def stop(self) -> None:
        """Cancel the timer and wait for it, so it can never signal a reaped process id."""
        self._timer.cancel()
        self._timer.join()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # Only while the leader is unreaped: its id then still names this group and no other.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the process's group (helpers included), then reap the leader."""
    _kill_group(proc)
    proc.wait()


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Say whether the process ended, without reaping it (so its group can still be killed)."""
    if proc.returncode is not None:
        return True
    if not hasattr(os, "waitid"):  # not on every Unix; reaping early only skips stragglers
        return proc.poll() is not None
    try:
        state = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return state is not None


def _bytes_under(root: Path) -> int:
    """Sum the sizes of the files below ``root``; files that vanish meanwhile count as 0."""
    total = 0
    folders = [str(root)]
    while folders:
        try:
            scan = os.scandir(folders.pop())
        except OSError:
            continue
        with scan:
            for item in scan:
                with contextlib.suppress(OSError):
                    if item.is_dir(follow_symlinks=False):
                        folders.append(item.path)
                    else:
                        total += item.stat(follow_symlinks=False).st_size
    return total


def _check_path(raw: bytes) -> tuple[str, str | None]:
    """Return the path as text and, if it cannot be kept, why (with a printable path)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), "file name is not valid UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return text.encode("unicode_escape").decode("ascii"), "file name has control characters"
    parts = text.split("/")
    if (
        text.startswith("/")
        or posixpath.normpath(text) != text
        or any(part in ("", ".", "..") or part.lower() == ".git" for part in parts)
    ):
        return text, "path is not a plain relative path"
    return text, None


def _clone_error(url: RepoUrl, stderr: str) -> RepoNotFound | GitFailed:
    """Turn git's stderr into an error a person can act on."""
    where = url.host if url.port is None else f"{url.host}:{url.port}"
    text = stderr.lower()
    said = _last_line(stderr)
    if _NOT_FOUND_RE.search(text):
        return RepoNotFound(
            f"Repository {url.display_name} was not found at {where}, or it is private. "
            "Check the URL; only public repositories can be fetched."
        )
    if re.search(r"returned error: 30[12378]\b|redirect", text):
        why = f"{where} answered with a redirect, which is not followed; give the final URL"
    elif "could not resolve host" in text:
        why = f"the host {url.host} could not be found (DNS lookup failed)"
    elif re.search(r"failed to connect|couldn't connect|connection refused", text):
        why = f"could not connect to {where}"
    elif re.search(r"operation too slow|timed out", text):
        why = f"the transfer from {where} was too slow and was abandoned"
    elif re.search(r"ssl|certificate|tls", text):
        why = f"the secure connection to {where} failed"
    elif re.search(r"returned error: 5\d\d\b", text):
        why = f"{where} had a server error; try again later"
    else:
        why = "git failed"
    detail = f" (git said: {said})" if said else ""
    return GitFailed(f"Could not fetch {url.display_name}: {why}{detail}.")


def _last_line(stderr: str) -> str:
    """The last error line git printed, without its prefix, credentials or excess length."""
    lines = [line.strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith("hint:")]
    errors = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    line = (errors or lines or [""])[-1]
    for prefix in ("fatal:", "error:"):
        if line.lower().startswith(prefix):
            line = line[len(prefix) :].strip()
    line = _CREDENTIALS_RE.sub(r"\1", line).rstrip(".")
    return line if len(line) <= 300 else line[:297] + "..."


def _tail(stream: IO[bytes]) -> str:
    """The end of a captured stderr file, as text."""
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - _STDERR_TAIL_BYTES))
    return stream.read().decode("utf-8", "replace")


def _kilobytes(count: int) -> str:
    return f"{count // 1024:,} KB" if count % 1024 == 0 else f"{count:,} bytes"


def _human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    if count < 1024**3:
        return f"{count / 1024**2:.1f} MB"
    return f"{count / 1024**3:.2f} GB"
