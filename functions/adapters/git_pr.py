"""Fetch a pull request the way GitHub exposes it to git, and diff it, with the same hardening.

``refs/pull/N/merge`` (GitHub's test merge with the base) is used when the host has it and no
base branch was asked for: its first parent is the base, so the diff is exactly what merging
would change. Otherwise ``refs/pull/N/head`` is diffed against its merge base with the base
branch, found by deepening the shallow history a bounded number of times. Every git process
runs through ``git._Runner``: the same scrubbed environment, deadline and process-group kill.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import IO, cast

from functions.adapters.git import (
    GitRepoFetcher,
    GitRepoSnapshot,
    _bytes_under,
    _end,
    _human_bytes,
    _last_line,
    _Runner,
    _tail,
    _Watchdog,
)
from functions.core.errors import GitFailed, PullRequestNotFound, RepoTooLarge
from functions.core.models import SkippedFile
from functions.core.ports import FetchLimits, FileChange, TreeEntry
from functions.core.repo_url import RepoUrl

_REF_RE = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])$")
_HUNK_RE = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_STATUS = {
    "A": "added",
    "M": "modified",
    "R": "renamed",
    "C": "copied",
    "D": "deleted",
    "T": "type_changed",
}
_DEEPEN_STEPS = (8, 64, 512)
"""How far the shallow history is deepened, in turn, to find where a pull request branched."""


def valid_ref(name: str) -> bool:
    """Say whether ``name`` is a plain branch name we may hand to git."""
    return bool(_REF_RE.fullmatch(name)) and not name.startswith("-")


class PullRequestSnapshotImpl:
    """A fetched pull request (implements ``PullRequestSnapshot``)."""

    def __init__(
        self,
        *,
        base: str,
        head: str,
        changes: Sequence[FileChange],
        files: GitRepoSnapshot,
    ) -> None:
        self._base = base
        self._head = head
        self._changes = tuple(changes)
        self._files = files

    @property
    def base(self) -> str:
        """The commit compared with."""
        return self._base

    @property
    def head(self) -> str:
        """The commit reviewed."""
        return self._head

    @property
    def changes(self) -> Sequence[FileChange]:
        """Every file the pull request touched."""
        return self._changes

    @property
    def skipped(self) -> Sequence[SkippedFile]:
        """Changed Python files that cannot be read, with reasons."""
        return self._files.skipped

    def read(self) -> Generator[tuple[TreeEntry, bytes], None, None]:
        """Yield the new version of each readable changed Python file."""
        return self._files.read()


class GitPullRequestFetcher(GitRepoFetcher):
    """``GitRepoFetcher`` that can also fetch pull requests (implements PullRequestFetcher)."""

    def fetch_pull_request(
        self,
        url: RepoUrl,
        number: int,
        base_ref: str | None,
        workdir: Path,
        limits: FetchLimits,
        deadline: float,
    ) -> PullRequestSnapshotImpl:
        """Fetch pull request ``number`` of ``url`` and diff it against its base."""
        if base_ref is not None and not valid_ref(base_ref):
            raise GitFailed(f"{base_ref[:80]!r} is not a valid branch name.")
        snapshot = self.fetch(url, workdir, limits, deadline)
        runner = snapshot._runner
        git_dir = snapshot.git_dir
        fetch = _Fetch(runner, git_dir, url, number, limits)
        base_tip = snapshot.commit
        if base_ref is not None:
            base_tip = fetch.ref(
                f"refs/heads/{base_ref}",
                "refs/codereview/base",
                depth=1,
                what=(f"branch {base_ref!r}"),
            )
        merge = None if base_ref is not None else fetch.optional_merge_ref()
        if merge is not None:
            head, base = merge, fetch.rev(f"{merge}^1")
        else:
            head = fetch.ref(
                f"refs/pull/{number}/head",
                "refs/codereview/head",
                depth=2,
                what=f"pull request #{number}",
            )
            base = fetch.merge_base(base_tip, head, base_ref)
        changes = _diff(runner, git_dir, base, head)
        wanted = {c.path for c in changes if c.status != "deleted" and c.path.endswith(".py")}
        listing = runner.list_tree(git_dir, head)
        files = GitRepoSnapshot(
            runner=runner,
            git_dir=git_dir,
            commit=head,
            files_in_repo=listing.files_in_repo,
            entries=[e for e in listing.entries if e.path in wanted],
            skipped=[s for s in listing.skipped if s.path in wanted],
        )
        return PullRequestSnapshotImpl(base=base, head=head, changes=changes, files=files)


class _Fetch:
    """Ref fetches and history look-ups for one pull request, within the fetch's bounds."""

    def __init__(
        self, runner: _Runner, git_dir: Path, url: RepoUrl, number: int, limits: FetchLimits
    ) -> None:
        self.runner = runner
        self.git_dir = git_dir
        self.url = url
        self.number = number
        self.limits = limits

    def _fetch(self, refspecs: Sequence[str], *extra: str) -> tuple[int, str]:
        args = [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-recurse-submodules",
            *extra,
            "--",
            self.url.url,
            *refspecs,
        ]
        status, _, errors = _run(self.runner, args, "fetching the pull request", self.git_dir)
        downloaded = _bytes_under(self.git_dir)
        if downloaded > self.limits.max_repo_bytes:
            raise RepoTooLarge(
                f"Repository {self.runner.name} is too large: the download exceeded "
                f"{_human_bytes(downloaded)}; the limit is "
                f"{_human_bytes(self.limits.max_repo_bytes)}."
            )
        return status, errors

    def ref(self, remote: str, local: str, *, depth: int, what: str) -> str:
        """Fetch ``remote`` into ``local``; PullRequestNotFound if the host has no such ref."""
        status, errors = self._fetch([f"+{remote}:{local}"], f"--depth={depth}")
        if status != 0:
            if "couldn't find remote ref" in errors.lower():
                raise PullRequestNotFound(
                    f"{what[0].upper()}{what[1:]} was not found in {self.runner.name}. "
                    "Check the number (or branch name) and that the repository is the right one."
                )
            raise GitFailed(f"Could not fetch {what} of {self.runner.name}: {_last_line(errors)}.")
        return self.rev(local)

    def optional_merge_ref(self) -> str | None:
        """The test merge commit if the host publishes one for this pull request."""
        local = "refs/codereview/merge"
        status, _ = self._fetch([f"+refs/pull/{self.number}/merge:{local}"], "--depth=2")
        if status != 0:
            return None
        merge = self.rev(local)
        parents = self.rev(f"{merge}^@", many=True).split()
        return merge if len(parents) == 2 else None

    def rev(self, spec: str, *, many: bool = False) -> str:
        """Resolve a revision inside the clone."""
        args = ["rev-parse", spec] if many else ["rev-parse", "--verify", "--quiet", spec]
        status, out, _ = _run(self.runner, args, "reading the history", self.git_dir)
        if status != 0:
            raise GitFailed(f"git could not resolve {spec} in {self.runner.name}.")
        return out.decode().strip()

    def merge_base(self, base_tip: str, head: str, base_ref: str | None) -> str:
        """Where the pull request branched from the base, deepening the history as needed."""
        branch_spec = f"+refs/heads/{base_ref}:refs/codereview/base" if base_ref else "HEAD"
        for deepen in (0, *_DEEPEN_STEPS):
            if deepen:
                refspecs = [f"+refs/pull/{self.number}/head:refs/codereview/head", branch_spec]
                status, errors = self._fetch(refspecs, f"--deepen={deepen}")
                if status != 0:
                    raise GitFailed(
                        f"Could not read the history of pull request #{self.number}: "
                        f"{_last_line(errors)}."
                    )
            status, out, _ = _run(
                self.runner, ["merge-base", base_tip, head], "finding the merge base", self.git_dir
            )
            if status == 0:
                return out.decode().strip()
        raise GitFailed(
            f"Pull request #{self.number} branched more than {sum(_DEEPEN_STEPS)} commits before "
            "the base branch's head; pass base_ref, or review a more recent pull request."
        )


def _run(runner: _Runner, args: Sequence[str], step: str, git_dir: Path) -> tuple[int, bytes, str]:
    """Run git to the end (or the deadline); return status, stdout bytes and stderr text."""
    runner.check_time(step)
    with (
        tempfile.TemporaryFile() as errors,
        runner.spawn(args, git_dir=git_dir, stdout=subprocess.PIPE, stderr=errors) as proc,
    ):
        watchdog = _Watchdog(proc, runner.deadline)
        try:
            out = cast(IO[bytes], proc.stdout).read()
        finally:
            watchdog.stop()
            _end(proc)
        if watchdog.fired:
            raise runner.timeout(step)
        return proc.returncode, out, _tail(errors)


def _diff(runner: _Runner, git_dir: Path, base: str, head: str) -> list[FileChange]:
    """Every file changed between ``base`` and ``head``, with the new lines of Python files."""
    common = ["--no-color", "--no-ext-diff", "--no-textconv", "-M", base, head]
    status, names, errors = _run(
        runner, ["diff", "-z", "--name-status", *common], "comparing", git_dir
    )
    if status != 0:
        raise GitFailed(f"git could not compare the pull request: {_last_line(errors)}.")
    status, numbers, errors = _run(
        runner, ["diff", "-z", "--numstat", *common], "comparing", git_dir
    )
    if status != 0:
        raise GitFailed(f"git could not compare the pull request: {_last_line(errors)}.")
    binary = _binary_paths(numbers)
    changes = []
    for code, old, new in _name_status(names):
        kind = _STATUS.get(code[:1], "modified")
        path = old if kind == "deleted" else new
        is_binary = path in binary
        lines: tuple[tuple[int, int], ...] = ()
        if path.endswith(".py") and kind != "deleted" and not is_binary:
            lines = _changed_lines(runner, git_dir, base, head, old, path)
        changes.append(
            FileChange(
                path=path,
                status=kind,
                old_path=old if kind in ("renamed", "copied") else None,
                binary=is_binary,
                changed_lines=lines,
            )
        )
    return changes


def _name_status(raw: bytes) -> list[tuple[str, str, str]]:
    """Parse ``diff -z --name-status``: (status, old path, new path) per file."""
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    records = []
    i = 0
    while i < len(fields) and fields[i]:
        code = fields[i]
        if code[:1] in "RC":
            records.append((code, fields[i + 1], fields[i + 2]))
            i += 3
        else:
            records.append((code, fields[i + 1], fields[i + 1]))
            i += 2
    return records


def _binary_paths(raw: bytes) -> set[str]:
    """Paths ``diff -z --numstat`` reports as binary ("-\t-")."""
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    binary = set()
    i = 0
    while i < len(fields) and fields[i]:
        added, deleted, path = fields[i].split("\t", 2)
        if path == "":  # a rename: the old and new paths follow
            path = fields[i + 2]
            i += 3
        else:
            i += 1
        if added == "-" and deleted == "-":
            binary.add(path)
    return binary


def _changed_lines(
    runner: _Runner, git_dir: Path, base: str, head: str, old: str, new: str
) -> tuple[tuple[int, int], ...]:
    """New-version line ranges that one file's diff adds or changes (a deletion marks its line)."""
    paths = [f":(literal){old}"] if old == new else [f":(literal){old}", f":(literal){new}"]
    args = [
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "-M",
        "-U0",
        base,
        head,
        "--",
        *paths,
    ]
    status, out, errors = _run(runner, args, "comparing", git_dir)
    if status != 0:
        raise GitFailed(f"git could not compare {new}: {_last_line(errors)}.")
    ranges = []
    for line in out.splitlines():
        match = _HUNK_RE.match(line)
        if match is None:
            continue
        start = int(match[1])
        count = 1 if match[2] is None else int(match[2])
        if count == 0:  # lines deleted after `start`: anchor the change there
            ranges.append((max(start, 1), max(start, 1)))
        else:
            ranges.append((start, start + count - 1))
    return tuple(ranges)
