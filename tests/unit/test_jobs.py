"""The fetch job use cases with in-memory fakes: state machine, duplicates, crashes, faults."""

from __future__ import annotations

import json
from datetime import timedelta

import anyio
import pytest

from functions.core.errors import (
    FetchTimeout,
    JobFailed,
    JobNotFound,
    JobNotReady,
    RepoNotFound,
    RepoUrlRejected,
    StorageError,
)
from functions.core.jobs import (
    FetchContext,
    get_job,
    manifest_key,
    pack_key,
    run_fetch,
    start_fetch,
    wait_until_ready,
)
from functions.core.models import Job, JobProgress, JobStatus, RepoManifest
from functions.core.ports import FetchLimits
from tests.support.fakes import (
    FakeClock,
    FakeFetcher,
    InMemoryBlobStore,
    InMemoryJobStore,
    RecordingDispatcher,
)

URL = "https://github.com/owner/repo"
FILES = {
    "pkg/__init__.py": b"",
    "pkg/mod.py": b"def add(a, b):\n    return a + b\n",
    "bad.py": b"print 'py2'\n",
}


def make_ctx(fetcher: FakeFetcher | None = None, **overrides: object) -> FetchContext:
    values: dict[str, object] = {
        "jobs": InMemoryJobStore(),
        "blobs": InMemoryBlobStore(),
        "fetcher": fetcher or FakeFetcher(dict(FILES)),
        "clock": FakeClock(),
        "limits": FetchLimits(timeout_seconds=60),
        "lease": timedelta(seconds=30),
        "allowed_hosts": ["github.com"],
    }
    values.update(overrides)
    return FetchContext(**values)  # type: ignore[arg-type]


def queued(ctx: FetchContext, job_id: str = "job1") -> Job:
    job = Job.new(job_id, URL, ctx.clock())
    ctx.jobs.create(job)
    return job


def test_start_records_a_queued_job_and_dispatches_it() -> None:
    jobs, dispatcher, clock = InMemoryJobStore(), RecordingDispatcher(), FakeClock()

    job = start_fetch(
        URL + ".git", allowed_hosts=["github.com"], jobs=jobs, dispatcher=dispatcher, clock=clock
    )

    assert job.status is JobStatus.QUEUED
    assert job.repo_url == URL
    assert dispatcher.dispatched == [job.job_id]
    assert jobs.get(job.job_id) == job


def test_a_refused_url_stores_nothing_and_dispatches_nothing() -> None:
    jobs, dispatcher = InMemoryJobStore(), RecordingDispatcher()

    with pytest.raises(RepoUrlRejected):
        start_fetch(
            "file:///etc",
            allowed_hosts=["github.com"],
            jobs=jobs,
            dispatcher=dispatcher,
            clock=FakeClock(),
        )

    assert jobs.jobs == {}
    assert dispatcher.dispatched == []


def test_a_failed_dispatch_fails_the_job_instead_of_leaving_it_queued() -> None:
    jobs = InMemoryJobStore()
    dispatcher = RecordingDispatcher(error=StorageError("lambda down"))

    with pytest.raises(StorageError):
        start_fetch(
            URL, allowed_hosts=["github.com"], jobs=jobs, dispatcher=dispatcher, clock=FakeClock()
        )

    [job] = jobs.jobs.values()
    assert job.status is JobStatus.FAILED
    assert job.error_code == "dispatch_failed"


def test_fetch_writes_one_pack_then_the_manifest_then_marks_ready() -> None:
    ctx = make_ctx()
    queued(ctx)
    order: list[str] = []
    blobs = ctx.blobs
    assert isinstance(blobs, InMemoryBlobStore)

    def record(key: str) -> None:
        order.append(key)
        job = ctx.jobs.get("job1")
        assert job is not None
        assert job.status is JobStatus.FETCHING

    def fail_on(key: str) -> None:
        record(key)

    blobs.fail_on = fail_on

    job = run_fetch("job1", ctx)

    assert job is not None
    assert job.status is JobStatus.READY
    # Exactly two writes: the pack of every file, then the manifest; no blob per file.
    assert order == [pack_key("job1"), manifest_key("job1")]
    assert blobs.puts == order
    assert sorted(blobs.blobs) == sorted(order)
    manifest = json.loads(blobs.blobs[manifest_key("job1")])
    assert manifest["modules"]["pkg.mod"] == ["pkg/mod.py"]
    # Each file is its recorded range of the pack, and the ranges tile the pack.
    pack = blobs.blobs[pack_key("job1")]
    files = manifest["files"]
    for path, data in FILES.items():
        offset, size = files[path]["offset"], files[path]["size"]
        assert pack[offset : offset + size] == data
    assert sum(f["size"] for f in files.values()) == len(pack)
    assert job.stats is not None
    assert (job.stats.python_files, job.stats.bytes_stored) == (3, sum(map(len, FILES.values())))
    assert job.attempts == 1
    assert job.finished_at is not None


def test_fetch_stores_paths_and_sizes_without_parsing() -> None:
    ctx = make_ctx()
    queued(ctx)

    job = run_fetch("job1", ctx)

    assert job is not None
    assert job.stats is not None
    blobs = ctx.blobs
    assert isinstance(blobs, InMemoryBlobStore)
    manifest = RepoManifest.model_validate_json(blobs.blobs[manifest_key("job1")])
    assert not manifest.functions_indexed
    assert manifest.parse_max_bytes == ctx.limits.max_file_bytes
    # bad.py does not parse and mod.py has a function, yet neither shows: nothing was parsed.
    assert {path: (m.size, m.functions, m.error) for path, m in manifest.files.items()} == {
        path: (len(data), [], None) for path, data in FILES.items()
    }
    # Counting functions would need parsing, so the stats do not claim to know.
    assert (job.stats.functions, job.stats.unparsable_files) == (None, None)
    assert [key for key in blobs.blobs if key.endswith("index.json")] == []


def test_a_duplicate_event_for_a_finished_job_does_nothing() -> None:
    fetcher = FakeFetcher(dict(FILES))
    ctx = make_ctx(fetcher)
    queued(ctx)
    first = run_fetch("job1", ctx)

    second = run_fetch("job1", ctx)

    assert second == first
    assert len(fetcher.calls) == 1


def test_a_duplicate_event_while_another_worker_holds_the_lease_does_nothing() -> None:
    fetcher = FakeFetcher(dict(FILES))
    ctx = make_ctx(fetcher)
    queued(ctx)
    duplicate: list[Job | None] = []
    fetcher.before_return = lambda: duplicate.append(run_fetch("job1", ctx))

    result = run_fetch("job1", ctx)

    assert result is not None
    assert result.status is JobStatus.READY
    assert duplicate[0] is not None
    assert duplicate[0].status is JobStatus.FETCHING
    assert len(fetcher.calls) == 1


def test_an_event_for_an_unknown_job_is_ignored() -> None:
    assert run_fetch("nope", make_ctx()) is None


def test_git_errors_fail_the_job_with_their_code_and_message() -> None:
    ctx = make_ctx(FakeFetcher(error=RepoNotFound("Repository owner/repo was not found.")))
    queued(ctx)

    job = run_fetch("job1", ctx)

    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error_code == "repo_not_found"
    assert job.error_message == "Repository owner/repo was not found."


def test_a_storage_failure_fails_the_job_and_it_is_not_ready() -> None:
    ctx = make_ctx()
    queued(ctx)
    blobs = ctx.blobs
    assert isinstance(blobs, InMemoryBlobStore)
    blobs.fail_on = lambda key: StorageError("S3 is down") if key.endswith(".pack") else None

    job = run_fetch("job1", ctx)

    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error_code == "storage_unavailable"
    assert manifest_key("job1") not in blobs.blobs


def test_a_worker_with_too_little_time_left_fails_cleanly() -> None:
    fetcher = FakeFetcher(dict(FILES))
    ctx = make_ctx(fetcher, remaining_seconds=lambda: 5.0, safety_seconds=10.0)
    queued(ctx)

    job = run_fetch("job1", ctx)

    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error_code == "fetch_timeout"
    assert fetcher.calls == []


def test_the_deadline_given_to_git_keeps_a_safety_margin_from_the_remaining_time() -> None:
    fetcher = FakeFetcher(dict(FILES))
    ctx = make_ctx(
        fetcher, remaining_seconds=lambda: 40.0, safety_seconds=10.0, monotonic=lambda: 1000.0
    )
    queued(ctx)

    run_fetch("job1", ctx)

    assert fetcher.calls[0][1] == pytest.approx(1030.0)


def test_an_abandoned_fetch_is_failed_when_read_and_can_be_retried_by_a_new_event() -> None:
    ctx = make_ctx()
    job = queued(ctx)
    clock = ctx.clock
    assert isinstance(clock, FakeClock)
    ctx.jobs.replace(job.start_fetch(clock(), timedelta(seconds=30)))  # then the worker dies

    clock.advance(10)
    assert get_job("job1", ctx.jobs, clock).status is JobStatus.FETCHING
    clock.advance(25)
    retried = run_fetch("job1", ctx)  # a redelivered event takes over the expired lease

    assert retried is not None
    assert retried.status is JobStatus.READY
    assert retried.attempts == 2


def test_reading_an_abandoned_fetch_fails_it_with_a_reason() -> None:
    ctx = make_ctx()
    job = queued(ctx)
    clock = ctx.clock
    assert isinstance(clock, FakeClock)
    ctx.jobs.replace(job.start_fetch(clock(), timedelta(seconds=30)))
    clock.advance(31)

    read = get_job("job1", ctx.jobs, clock)

    assert read.status is JobStatus.FAILED
    assert read.error_code == "worker_lost"
    assert "Start a new job" in (read.error_message or "")


def test_a_job_never_picked_up_is_failed_after_the_queue_timeout() -> None:
    ctx = make_ctx()
    queued(ctx)
    clock = ctx.clock
    assert isinstance(clock, FakeClock)
    clock.advance(16 * 60)

    assert get_job("job1", ctx.jobs, clock).error_code == "never_started"


def test_get_job_of_an_unknown_id_is_job_not_found() -> None:
    with pytest.raises(JobNotFound):
        get_job("nope", InMemoryJobStore(), FakeClock())


def test_waiting_returns_as_soon_as_the_job_is_ready() -> None:
    ctx = make_ctx()
    queued(ctx)

    async def scenario() -> JobStatus:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, run_fetch, "job1", ctx)
            job = await wait_until_ready("job1", ctx.jobs, ctx.clock, wait_seconds=5)
        return job.status

    assert anyio.run(scenario) is JobStatus.READY


def test_waiting_gives_up_with_job_not_ready_after_the_bound() -> None:
    ctx = make_ctx()
    queued(ctx)

    with pytest.raises(JobNotReady, match="Poll GET /analyze/jobs/job1"):
        anyio.run(lambda: wait_until_ready("job1", ctx.jobs, ctx.clock, wait_seconds=0.2))


def test_waiting_on_a_failed_job_says_why() -> None:
    ctx = make_ctx(FakeFetcher(error=FetchTimeout("took too long")))
    queued(ctx)
    run_fetch("job1", ctx)

    with pytest.raises(JobFailed, match="took too long"):
        anyio.run(lambda: wait_until_ready("job1", ctx.jobs, ctx.clock, wait_seconds=1))


def test_a_heartbeat_never_shortens_a_hand_off_lease() -> None:
    clock = FakeClock()
    job = Job.new("j", URL, clock()).start_fetch(clock(), timedelta(minutes=15))

    beat = job.heartbeat(clock(), timedelta(seconds=30), job.progress or JobProgress(phase="x"))

    assert beat.lease_expires_at == clock() + timedelta(minutes=15)
