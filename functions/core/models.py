"""Domain model: jobs and their state machine, repository manifests, function references.

Pure data and rules; no IO. Every state change returns a new ``Job`` with ``version`` + 1, and
stores write it only if the stored version is still the old one (optimistic concurrency), so two
workers can never both move a job forward.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from functions.core.errors import InvalidFunctionName

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
FUNCTION_NAME_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
MAX_FUNCTION_NAME_LENGTH = 512


class JobStatus(StrEnum):
    """Where a job is in its life.

    Fetch jobs: QUEUED -> FETCHING -> READY | FAILED. Review jobs (a pull request, a whole
    repository) also pass through REVIEWING before READY, which then means "report ready".
    """

    QUEUED = "QUEUED"
    FETCHING = "FETCHING"
    REVIEWING = "REVIEWING"
    READY = "READY"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        """Say whether the job can still change."""
        return self in (JobStatus.READY, JobStatus.FAILED)


_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.FETCHING, JobStatus.REVIEWING, JobStatus.FAILED}),
    # X -> X: a heartbeat, or a new attempt taking over an expired lease.
    JobStatus.FETCHING: frozenset(
        {JobStatus.FETCHING, JobStatus.REVIEWING, JobStatus.READY, JobStatus.FAILED}
    ),
    # REVIEWING -> FETCHING: a new attempt taking over an abandoned review starts over.
    JobStatus.REVIEWING: frozenset(
        {JobStatus.REVIEWING, JobStatus.FETCHING, JobStatus.READY, JobStatus.FAILED}
    ),
    JobStatus.READY: frozenset(),
    JobStatus.FAILED: frozenset(),
}
_RUNNING = (JobStatus.FETCHING, JobStatus.REVIEWING)


class JobKind(StrEnum):
    """What a job does."""

    REPO = "repo"
    """Fetch a repository so its functions can be reviewed one by one."""
    PULL_REQUEST = "pull_request"
    """Fetch a pull request and review the functions it changed."""
    REPO_REVIEW = "repo_review"
    """Review every function (or a selection) of an already fetched repository."""


class ReviewOptions(BaseModel):
    """What a review job covers."""

    model_config = ConfigDict(frozen=True)

    pr_number: int | None = None
    base_ref: str | None = None
    source_job_id: str | None = None
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    max_functions: int | None = None


class SkippedFile(BaseModel):
    """A file the fetch did not keep, and why (a person reads the reason)."""

    model_config = ConfigDict(frozen=True)

    path: str
    reason: str


class JobStats(BaseModel):
    """What the fetch found and kept."""

    model_config = ConfigDict(frozen=True)

    commit: str | None = None
    files_in_repo: int = 0
    python_files: int = 0
    bytes_stored: int = 0
    functions: int | None = None
    """Functions in the repository. None: the fetch stores files without parsing them (the
    function index is built on first need, after READY), so it cannot know; jobs fetched
    before that change carry the count."""
    unparsable_files: int | None = None
    """Python files that do not parse. None for the same reason as ``functions``."""
    skipped: list[SkippedFile] = Field(default_factory=list)
    clone_seconds: float | None = None
    total_seconds: float | None = None
    reviewed: int | None = None
    """Review jobs: items (functions, module code) reviewed."""
    findings: int | None = None
    """Review jobs: findings in the report."""
    not_reviewed: int | None = None
    """Review jobs: items listed as skipped in the report, each with its reason."""


class JobProgress(BaseModel):
    """How far a running job has come: a phase and, where it counts items, done/total."""

    model_config = ConfigDict(frozen=True)

    phase: str
    done: int = 0
    total: int | None = None


class BatchCursor(BaseModel):
    """A review job's chain of batches: each batch runs as its own invocation, in order."""

    model_config = ConfigDict(frozen=True)

    total: int
    next: int = 0
    """The batch to run next (== total when all are done)."""
    running: int | None = None
    """The batch a worker has claimed (its lease covers it)."""
    items_done: int = 0


class Job(BaseModel):
    """A repository fetch, pull-request review or repository review job."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    repo_url: str
    kind: JobKind = JobKind.REPO
    review: ReviewOptions | None = None
    status: JobStatus = JobStatus.QUEUED
    version: int = 1
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    progress: JobProgress | None = None
    stats: JobStats | None = None
    batches: BatchCursor | None = None
    """Review jobs: where the chain of review batches is."""

    @classmethod
    def new(
        cls,
        job_id: str,
        repo_url: str,
        now: datetime,
        *,
        kind: JobKind = JobKind.REPO,
        review: ReviewOptions | None = None,
    ) -> Job:
        """Create a queued job."""
        return cls(
            job_id=job_id,
            repo_url=repo_url,
            kind=kind,
            review=review,
            created_at=now,
            updated_at=now,
        )

    def _to(self, status: JobStatus, now: datetime, **changes: Any) -> Job:
        if status not in _ALLOWED[self.status]:
            raise ValueError(f"job {self.job_id}: {self.status} -> {status} is not allowed")
        return self.model_copy(
            update={"status": status, "version": self.version + 1, "updated_at": now, **changes}
        )

    def lease_expired(self, now: datetime) -> bool:
        """Say whether a running job's worker has stopped renewing its lease."""
        return (
            self.status in _RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at <= now
        )

    def can_start(self, now: datetime) -> bool:
        """Say whether a fetch attempt may take this job now (a fresh or an abandoned one)."""
        return self.status is JobStatus.QUEUED or self.lease_expired(now)

    def start_fetch(self, now: datetime, lease: timedelta) -> Job:
        """Take the job for one fetch attempt, holding a lease that must be renewed."""
        return self._to(
            JobStatus.FETCHING,
            now,
            started_at=now,
            lease_expires_at=now + lease,
            attempts=self.attempts + 1,
            progress=JobProgress(phase="cloning"),
        )

    def start_review(
        self, now: datetime, lease: timedelta, total: int, batches: int = 0, done: int = 0
    ) -> Job:
        """Move on to reviewing ``total`` items in ``batches`` (from FETCHING, or QUEUED)."""
        changes: dict[str, Any] = {
            "lease_expires_at": now + lease,
            "progress": JobProgress(phase="reviewing", done=done, total=total),
            "batches": BatchCursor(total=batches, items_done=done) if batches else None,
        }
        if self.status is JobStatus.QUEUED:
            changes.update(started_at=now, attempts=self.attempts + 1)
        return self._to(JobStatus.REVIEWING, now, **changes)

    def batch_is_held(self, batch: int, now: datetime) -> bool:
        """Say whether a live worker is running ``batch`` (a redelivered event must not)."""
        cursor = self.batches
        return (
            cursor is not None
            and cursor.running == batch
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def claim_batch(self, batch: int, now: datetime, lease: timedelta) -> Job:
        """Take batch ``batch`` for this worker (the next one in the chain)."""
        cursor = self.batches
        if self.status is not JobStatus.REVIEWING or cursor is None or cursor.next != batch:
            raise ValueError(f"job {self.job_id}: batch {batch} is not the next to run")
        return self._to(
            JobStatus.REVIEWING,
            now,
            lease_expires_at=now + lease,
            batches=cursor.model_copy(update={"running": batch}),
        )

    def finish_batch(self, batch: int, now: datetime, lease: timedelta, items: int) -> Job:
        """Record batch ``batch`` done (``items`` reviewed or skipped); the next one is due."""
        cursor = self.batches
        if cursor is None or cursor.running != batch:
            raise ValueError(f"job {self.job_id}: batch {batch} is not running")
        done = cursor.items_done + items
        total = self.progress.total if self.progress else None
        return self._to(
            JobStatus.REVIEWING,
            now,
            lease_expires_at=now + lease,
            batches=cursor.model_copy(
                update={"next": batch + 1, "running": None, "items_done": done}
            ),
            progress=JobProgress(phase="reviewing", done=done, total=total),
        )

    def heartbeat(self, now: datetime, lease: timedelta, progress: JobProgress) -> Job:
        """Renew the lease and report progress (the status stays what it is).

        A heartbeat never shortens a lease: a longer one was set on purpose (a hand-off).
        """
        expires = now + lease
        if self.lease_expires_at is not None and self.lease_expires_at > expires:
            expires = self.lease_expires_at
        return self._to(self.status, now, lease_expires_at=expires, progress=progress)

    def mark_ready(self, now: datetime, stats: JobStats) -> Job:
        """Record a finished fetch. Call only after every blob is stored."""
        return self._to(
            JobStatus.READY,
            now,
            finished_at=now,
            lease_expires_at=None,
            stats=stats,
            progress=self._final_progress(stats),
        )

    def _final_progress(self, stats: JobStats) -> JobProgress:
        if self.kind is JobKind.REPO:
            return JobProgress(phase="done", done=stats.python_files, total=stats.python_files)
        total = (stats.reviewed or 0) + (stats.not_reviewed or 0)
        return JobProgress(phase="done", done=total, total=total)

    def mark_failed(self, now: datetime, code: str, message: str) -> Job:
        """Record why the job failed."""
        return self._to(
            JobStatus.FAILED,
            now,
            finished_at=now,
            lease_expires_at=None,
            error_code=code,
            error_message=message,
            progress=None,
        )


class FunctionInfo(BaseModel):
    """One function or method in a module, found by parsing the module (``locate``)."""

    model_config = ConfigDict(frozen=True)

    qualname: str
    start_line: int
    end_line: int
    is_async: bool = False


class ModuleInfo(BaseModel):
    """One Python file of a fetched repository: its size and, once parsed, its functions.

    In a manifest with ``functions_indexed`` False only ``path``, ``size`` and ``offset``
    mean anything.
    """

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    offset: int | None = None
    """Where the file's ``size`` bytes start in the job's ``sources.pack``. None: the file is a
    blob of its own under ``files/`` (jobs fetched before packs existed)."""
    functions: list[FunctionInfo] = Field(default_factory=list)
    error: str | None = None


class RepoManifest(BaseModel):
    """What a fetch stored: the module map (and maybe function index) names are resolved with.

    Written last, after every source file, so its presence means the snapshot is complete.
    The fetch writes it from paths alone (``functions_indexed`` False) so that fetching costs
    no parsing; files are parsed when a lookup needs them (``functions.core.analyze``), and
    the whole-repository index is an indexed manifest stored next to it on first need.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    commit: str | None
    modules: dict[str, list[str]]
    """Dotted module name -> repository paths that provide it (more than one is ambiguous)."""
    files: dict[str, ModuleInfo]
    """Repository path -> what is in that file."""
    functions_indexed: bool = True
    """True: every file's ``functions`` and ``error`` are filled in. False: paths and sizes
    only. The default is True because manifests written before lazy indexing carry the
    index and lack this field."""
    parse_max_bytes: int | None = None
    """Files larger than this are not parsed (recorded as errors): the fetch's own limit, so
    that every reader parses them alike. None: ``locate``'s default."""


class FunctionSource(BaseModel):
    """A located function: where it is and its exact source text."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    qualname: str
    start_line: int
    end_line: int
    source: str


def validate_function_name(name: str) -> str:
    """Return ``name`` if it is a dotted path of identifiers, else raise InvalidFunctionName."""
    stripped = name.strip()
    if len(stripped) > MAX_FUNCTION_NAME_LENGTH or not FUNCTION_NAME_RE.fullmatch(stripped):
        raise InvalidFunctionName(
            f"{name[:80]!r} is not a function name. Use a dotted path such as "
            "'package.module.function' or 'package.module.Class.method'."
        )
    return stripped
