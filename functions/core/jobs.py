"""Use cases on fetch jobs: start one, run one, read one (healing abandoned ones), wait for one.

The same ``run_fetch`` runs in the embedded in-process worker and in the fetch_repo Lambda.
Order matters and is deliberate: the pack of sources is uploaded, the manifest last, and only
then is the job marked READY; every state change is a conditional write, so a duplicate delivery
of the same job is harmless, and a worker that dies leaves a lease that expires instead of a job
stuck in FETCHING forever.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import anyio

from functions.core.errors import (
    BlobNotFound,
    CodeReviewError,
    FetchError,
    FetchTimeout,
    JobFailed,
    JobNotFound,
    JobNotReady,
    LLMError,
    StateConflict,
    StorageError,
)
from functions.core.locate import build_path_manifest
from functions.core.models import Job, JobProgress, JobStats, JobStatus, RepoManifest
from functions.core.ports import (
    BlobStore,
    Clock,
    Dispatcher,
    FetchLimits,
    JobStore,
    RepoFetcher,
)
from functions.core.repo_url import parse_repo_url

log = logging.getLogger(__name__)

QUEUE_TIMEOUT = timedelta(minutes=15)
"""A job no worker has taken after this long is failed (its dispatch was lost)."""
HANDOFF_LEASE = QUEUE_TIMEOUT
"""The lease a job holds while handed to its next invocation (a review batch): an async Lambda
event may wait in the queue that long (the template's maximum event age), and the job must not
look abandoned meanwhile."""
HEARTBEAT_SECONDS = 2.0


def manifest_key(job_id: str) -> str:
    """Blob key of a job's manifest."""
    return f"repos/{job_id}/manifest.json"


def file_key(job_id: str, path: str) -> str:
    """Blob key of one source file of a job fetched before packs (read only, never written)."""
    return f"repos/{job_id}/files/{path}"


def pack_key(job_id: str) -> str:
    """Blob key of a job's pack: every stored file's bytes, concatenated in manifest order.

    One blob instead of one per file: a fetch is one write (one S3 PUT, or a multipart upload)
    rather than thousands, and a single file is one ranged read at the manifest's offset.
    """
    return f"repos/{job_id}/sources.pack"


def read_source(blobs: BlobStore, job_id: str, manifest: RepoManifest, path: str) -> bytes:
    """Return one stored file of a fetched job: the only way readers get a file's bytes.

    A manifest that records the file's ``offset`` reads its range of the pack; an older one
    (no offsets) reads the file's own blob. A READY job whose blobs are gone (expired or
    deleted) raises StorageError, with what to do about it.
    """
    info = manifest.files.get(path)
    try:
        if info is not None and info.offset is not None:
            return blobs.get_range(pack_key(job_id), info.offset, info.size)
        return blobs.get(file_key(job_id, path))
    except BlobNotFound as exc:
        raise StorageError(
            f"Job {job_id} is READY but its stored file {path} is missing (deleted or expired). "
            "Start a new job with POST /analyze/start."
        ) from exc


def new_job_id() -> str:
    """Return a fresh, unguessable job id."""
    return uuid.uuid4().hex


def start_fetch(
    repo_url: str,
    *,
    allowed_hosts: list[str],
    jobs: JobStore,
    dispatcher: Dispatcher,
    clock: Clock,
    make_id: Callable[[], str] = new_job_id,
) -> Job:
    """Validate the URL, record a QUEUED job and hand it to a worker; return at once.

    A refused URL raises RepoUrlRejected before anything is stored or any git process runs.
    """
    url = parse_repo_url(repo_url, allowed_hosts)
    return queue_job(Job.new(make_id(), url.url, clock()), jobs, dispatcher, clock)


def queue_job(job: Job, jobs: JobStore, dispatcher: Dispatcher, clock: Clock) -> Job:
    """Record a new QUEUED job and hand it to a worker; return it.

    If the hand-off fails, the job is recorded FAILED (not left QUEUED for nobody) and the
    dispatcher's error is raised as it was.
    """
    jobs.create(job)
    try:
        dispatcher.dispatch(job.job_id)
    except CodeReviewError as exc:
        _save_quietly(jobs, job.mark_failed(clock(), "dispatch_failed", exc.message))
        raise
    return job


@dataclass
class FetchContext:
    """What ``run_fetch`` needs: the ports, the limits and the scratch space."""

    jobs: JobStore
    blobs: BlobStore
    fetcher: RepoFetcher
    clock: Clock
    limits: FetchLimits
    lease: timedelta
    allowed_hosts: list[str]
    scratch_dir: Path | None = None
    remaining_seconds: Callable[[], float] | None = None
    """Time left to the worker itself (a Lambda's remaining time); None when unbounded."""
    safety_seconds: float = 10.0
    """Kept back from ``remaining_seconds`` to record the outcome before the worker is killed."""
    monotonic: Callable[[], float] = field(default=time.monotonic)


class _LeaseLost(Exception):
    """Another attempt took the job over; this attempt must stop without writing."""


class Attempt:
    """One worker's hold on a running job: renews the lease, records progress.

    A keep-alive thread renews the lease while git runs (a clone can outlast the lease), and
    the storing loop reports progress; a lock keeps their conditional writes in order.
    """

    def __init__(self, ctx: FetchContext, job: Job) -> None:
        self.ctx = ctx
        self.job = job
        self._lock = threading.Lock()
        self._last_beat = ctx.monotonic()
        self._progress = job.progress or JobProgress(phase="cloning")
        self._lost = False
        self._stop = threading.Event()

    def save(self, new_job: Callable[[Job], Job]) -> None:
        """Apply ``new_job`` to the current job and write it conditionally."""
        with self._lock:
            if self._lost:
                raise _LeaseLost("lease lost")
            new = new_job(self.job)
            try:
                self.ctx.jobs.replace(new)
            except StateConflict as exc:
                self._lost = True
                raise _LeaseLost(str(exc)) from exc
            self.job = new
            self._progress = new.progress or self._progress
            self._last_beat = self.ctx.monotonic()

    def _beat(self) -> None:
        progress = self._progress
        self.save(lambda job: job.heartbeat(self.ctx.clock(), self.ctx.lease, progress))

    def progress(self, phase: str, done: int = 0, total: int | None = None) -> None:
        """Record progress; written at most every HEARTBEAT_SECONDS."""
        self._progress = JobProgress(phase=phase, done=done, total=total)
        if self.ctx.monotonic() - self._last_beat >= HEARTBEAT_SECONDS:
            self._beat()

    @contextmanager
    def keepalive(self) -> Iterator[None]:
        """Renew the lease in the background until the block ends."""
        interval = max(self.ctx.lease.total_seconds() / 3, 0.05)

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self._beat()
                except (_LeaseLost, StorageError):
                    return

        thread = threading.Thread(target=run, name=f"lease-{self.job.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


def _deadline(ctx: FetchContext) -> float:
    budget = ctx.limits.timeout_seconds
    if ctx.remaining_seconds is not None:
        budget = min(budget, ctx.remaining_seconds() - ctx.safety_seconds)
    return ctx.monotonic() + max(budget, 0.0)


Work = Callable[[Attempt, Path], JobStats | None]
"""One job's work: given the held attempt and a scratch folder, return the stats for READY,
or None when the work was handed on (the job's next step was dispatched)."""


def run_attempt(
    job_id: str,
    ctx: FetchContext,
    work: Work,
    what: str = "fetch",
    *,
    may_start: Callable[[Job], bool] | None = None,
    claim: Callable[[Job], Job] | None = None,
) -> Job | None:
    """Take the job, do ``work`` while holding its lease, and record READY or FAILED.

    Safe to call more than once for the same job (at-least-once delivery): a job that is
    READY, FAILED, or held by a live attempt is returned unchanged. ``may_start`` and ``claim``
    replace the default rule and first write (a fresh or abandoned job, taken for a fetch).
    """
    job = ctx.jobs.get(job_id)
    if job is None:
        log.warning("%s event for unknown job %s ignored", what, job_id)
        return None
    allowed = may_start(job) if may_start else job.can_start(ctx.clock())
    if not allowed:
        log.info("job %s is %s; duplicate %s event ignored", job_id, job.status, what)
        return job
    attempt = Attempt(ctx, job)
    try:
        attempt.save(claim or (lambda current: current.start_fetch(ctx.clock(), ctx.lease)))
    except _LeaseLost:
        log.info("job %s was taken by another worker", job_id)
        return ctx.jobs.get(job_id)
    workdir = Path(tempfile.mkdtemp(prefix="fetch-", dir=ctx.scratch_dir))
    try:
        with attempt.keepalive():
            stats = work(attempt, workdir)
        if stats is not None:
            attempt.save(lambda current: current.mark_ready(ctx.clock(), stats))
    except _LeaseLost:
        log.warning("job %s: lease lost to another worker; this attempt stops", job_id)
        return ctx.jobs.get(job_id)
    except (FetchError, StorageError, LLMError) as exc:
        _fail(attempt, exc.code, exc.message)
    except Exception:
        log.exception("job %s: unexpected error in %s", job_id, what)
        _fail(
            attempt,
            "internal_error",
            f"The {what} failed unexpectedly; start a new job. "
            "If it keeps failing, report it with this job id.",
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return attempt.job


def run_fetch(job_id: str, ctx: FetchContext) -> Job | None:
    """Fetch the job's repository into the blob store and record the outcome."""
    return run_attempt(job_id, ctx, _fetch_and_store)


def _fail(attempt: Attempt, code: str, message: str) -> None:
    try:
        attempt.save(lambda current: current.mark_failed(attempt.ctx.clock(), code, message))
    except _LeaseLost:
        log.warning("job %s: could not record failure %s (lease lost)", attempt.job.job_id, code)
    except StorageError:
        # The job store itself is down: the lease will expire and readers will see the job
        # as abandoned, which is the truth.
        log.exception("job %s: could not record failure %s", attempt.job.job_id, code)


def _fetch_and_store(attempt: Attempt, workdir: Path) -> JobStats:
    """Clone, store every Python file in one pack, then a manifest of paths; parse nothing.

    Functions are indexed when a lookup first needs them (``functions.core.analyze``): the
    fetch is as fast as copying the files, and in the embedded mode it does not compete for
    the interpreter with requests being served. So ``functions`` and ``unparsable_files``
    are not known here, and the stats say None rather than guess.
    """
    ctx = attempt.ctx
    job = attempt.job
    started = ctx.monotonic()
    deadline = _deadline(ctx)
    if deadline <= ctx.monotonic():
        raise FetchTimeout("The worker had no time left to fetch the repository; start a new job.")
    url = parse_repo_url(job.repo_url, ctx.allowed_hosts)
    snapshot = ctx.fetcher.fetch(url, workdir / "repo", ctx.limits, deadline)
    clone_seconds = ctx.monotonic() - started
    entries = snapshot.entries
    attempt.progress("storing", 0, len(entries))
    sizes: dict[str, int] = {}
    offsets: dict[str, int] = {}
    stored_bytes = 0

    def contents() -> Iterator[bytes]:
        nonlocal stored_bytes
        # closing(): if storing fails midway, the reader (a git process) stops at once.
        with closing(snapshot.read()) as files:
            for entry, data in files:
                if ctx.monotonic() > deadline:
                    raise FetchTimeout(
                        f"Storing the repository's files took longer than the "
                        f"{ctx.limits.timeout_seconds:.0f} s limit."
                    )
                if entry.path in sizes:  # never in a git tree; keep offsets unambiguous
                    continue
                offsets[entry.path] = stored_bytes
                sizes[entry.path] = len(data)
                stored_bytes += len(data)
                attempt.progress("storing", len(sizes), len(entries))
                yield data

    # One streamed blob for all files (one file creation, one upload), not one per file;
    # memory holds one file at a time (plus the S3 adapter's bounded spool).
    ctx.blobs.put_stream(pack_key(job.job_id), contents())
    manifest = build_path_manifest(
        job.job_id, snapshot.commit, sizes, offsets=offsets, max_bytes=ctx.limits.max_file_bytes
    )
    # Last: a manifest's presence means the pack it points into is complete.
    ctx.blobs.put(manifest_key(job.job_id), manifest.model_dump_json().encode())
    return JobStats(
        commit=snapshot.commit,
        files_in_repo=snapshot.files_in_repo,
        python_files=len(sizes),
        bytes_stored=stored_bytes,
        skipped=list(snapshot.skipped),
        clone_seconds=round(clone_seconds, 3),
        total_seconds=round(ctx.monotonic() - started, 3),
    )


def _save_quietly(jobs: JobStore, job: Job) -> Job | None:
    try:
        jobs.replace(job)
    except (StateConflict, StorageError):
        log.warning("job %s: could not record %s", job.job_id, job.status)
        return None
    return job


def get_job(job_id: str, jobs: JobStore, clock: Clock) -> Job:
    """Return the job; a job whose worker died is failed first, so no job hangs forever."""
    job = jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"No job with id {job_id[:80]!r}. Start one with POST /analyze/start.")
    now = clock()
    if job.lease_expired(now):
        failed = job.mark_failed(
            now,
            "worker_lost",
            "The fetch worker stopped before finishing (it crashed or was killed). "
            "Start a new job with POST /analyze/start.",
        )
        return _save_quietly(jobs, failed) or jobs.get(job_id) or job
    if job.status is JobStatus.QUEUED and now - job.created_at > QUEUE_TIMEOUT:
        failed = job.mark_failed(
            now,
            "never_started",
            "No worker picked this job up. Start a new job with POST /analyze/start.",
        )
        return _save_quietly(jobs, failed) or jobs.get(job_id) or job
    return job


async def wait_until_ready(
    job_id: str,
    jobs: JobStore,
    clock: Clock,
    *,
    wait_seconds: float,
    poll_seconds: float = 0.05,
    max_poll_seconds: float = 0.5,
) -> Job:
    """Return the READY job, waiting up to ``wait_seconds`` while it is queued or fetching.

    Raise JobNotFound, JobFailed (with the job's reason) or JobNotReady after the wait.
    """
    deadline = time.monotonic() + wait_seconds
    delay = poll_seconds
    while True:
        job = await anyio.to_thread.run_sync(get_job, job_id, jobs, clock)
        if job.status is JobStatus.READY:
            return job
        if job.status is JobStatus.FAILED:
            raise JobFailed(
                f"Job {job_id} failed ({job.error_code}): {job.error_message}",
                details={"job_id": job_id, "reason": job.error_code},
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            phase = job.progress.phase if job.progress else job.status.lower()
            raise JobNotReady(
                f"Job {job_id} is still {job.status.lower()} ({phase}) after waiting "
                f"{wait_seconds:.0f} s. Poll GET /analyze/jobs/{job_id} and try again when "
                "its status is READY.",
                details={"job_id": job_id, "status": job.status.value},
            )
        await anyio.sleep(min(delay, remaining))
        delay = min(delay * 2, max_poll_seconds)
