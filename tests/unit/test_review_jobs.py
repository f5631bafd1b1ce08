"""Review jobs with fakes: what gets reviewed, where findings point, splitting, bounds, and the
chain of batches (each its own invocation, redeliveries harmless)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from functions.core.errors import FunctionTooLarge, ProviderUnavailable
from functions.core.jobs import FetchContext, file_key, manifest_key, pack_key, run_fetch
from functions.core.models import FunctionSource, JobStatus, RepoManifest
from functions.core.ports import FetchLimits, FileChange
from functions.core.report import Report
from functions.core.review_jobs import (
    ReviewContext,
    ReviewItem,
    load_report,
    plan_file,
    plan_pull_request,
    review_items,
    run_job,
    start_repository_review,
    to_findings,
)
from tests.support.fakes import (
    FakeClock,
    FakeFetcher,
    InMemoryBlobStore,
    InMemoryJobStore,
    RecordingDispatcher,
)

MODULE = b"""import os

def a(x):
    return x


def b(x):
    y = x + 1
    return y

CONSTANT = 3
"""


def test_only_functions_touching_changed_lines_are_planned_plus_module_code() -> None:
    items, skipped = plan_file("pkg/m.py", MODULE, {8, 11}, max_bytes=10_000)

    assert skipped == []
    assert [(i.name, i.start_line, i.end_line, i.anchors) for i in items] == [
        ("pkg.m.b", 7, 9, (8,)),
        ("pkg.m:<module>", 9, 11, (11,)),
    ]
    assert items[0].source == "def b(x):\n    y = x + 1\n    return y\n"


def test_changes_to_blank_lines_only_plan_nothing() -> None:
    assert plan_file("m.py", MODULE, {5, 6}, max_bytes=10_000) == ([], [])


def test_a_file_that_does_not_parse_is_listed_with_the_reason() -> None:
    items, skipped = plan_file("old.py", b"print 'x'\n", {1}, max_bytes=10_000)

    assert items == []
    assert "Python 2" in skipped[0].reason


def test_every_kind_of_change_is_reviewed_or_listed() -> None:
    changes = [
        FileChange(path="gone.py", status="deleted"),
        FileChange(path="img.png", status="modified", binary=True),
        FileChange(path="README.md", status="modified"),
        FileChange(path="new.py", status="renamed", old_path="old.py"),
        FileChange(path="big.py", status="modified", changed_lines=((1, 1),)),
        FileChange(path="m.py", status="modified", changed_lines=((3, 4),)),
    ]

    items, skipped = plan_pull_request(
        changes, {"m.py": MODULE}, {"big.py": "larger than 1 KB"}, max_bytes=10_000
    )

    assert [i.name for i in items] == ["m.a"]
    assert {s.path: s.reason for s in skipped} == {
        "gone.py": "deleted by the pull request",
        "img.png": "binary file",
        "README.md": "not a Python file",
        "new.py": "renamed from old.py, with no changed lines",
        "big.py": "larger than 1 KB",
    }


def item(anchors: tuple[int, ...] = (), lines: int = 3, start: int = 10) -> ReviewItem:
    source = "".join(f"    line {n}\n" for n in range(lines))
    return ReviewItem(
        path="m.py",
        name="m.f",
        start_line=start,
        end_line=start + lines - 1,
        source=source,
        anchors=anchors,
    )


def test_findings_are_moved_to_the_nearest_changed_line() -> None:
    reviewed = item(anchors=(11,))

    findings = to_findings(reviewed, 10, ["[bug] Line 3: off by one.", "No line here."])

    assert [(f.start_line, f.category, f.severity.value) for f in findings] == [
        (11, "bug", "error"),
        (11, "readability", "note"),
    ]


def test_findings_keep_their_own_line_in_a_whole_repository_review() -> None:
    findings = to_findings(item(), 10, ["[security] Line 2: x; fix: use y"])

    assert (findings[0].start_line, findings[0].suggestion) == (11, "use y")


class CountingReviewer:
    """Reviewer that counts reviews in flight, and refuses sources over ``max_lines``."""

    def __init__(self, max_lines: int = 10_000, delay: float = 0.01) -> None:
        self.max_lines = max_lines
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.seen: list[FunctionSource] = []

    async def review(self, function: FunctionSource) -> list[str]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(self.delay)
            if function.source.count("\n") > self.max_lines:
                raise FunctionTooLarge("too large")
            self.seen.append(function)
            return ["[bug] Line 1: look here."]
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def test_reviews_run_concurrently_but_never_more_than_the_bound() -> None:
    reviewer = CountingReviewer()
    items = [item(start=i * 10 + 1) for i in range(20)]

    outcome = anyio.run(lambda: review_items(items, reviewer, concurrency=3, timeout_seconds=10))

    assert len(outcome.reviewed) == 20
    assert reviewer.peak == 3


def test_a_function_too_large_for_the_model_is_reviewed_in_parts() -> None:
    reviewer = CountingReviewer(max_lines=20)

    outcome = anyio.run(
        lambda: review_items(
            [item(lines=60, start=100)], reviewer, concurrency=2, timeout_seconds=10
        )
    )

    assert outcome.reviewed == ["m.f"]
    parts = sorted((f.start_line, f.end_line) for f in reviewer.seen)
    assert parts[0][0] == 100
    assert parts[-1][1] == 159
    assert all(b - a < 20 for a, b in parts)
    assert sorted(f.start_line for f in outcome.findings) == [a for a, _ in parts]


def test_items_left_when_time_runs_out_are_listed_not_dropped() -> None:
    reviewer = CountingReviewer(delay=0.5)

    outcome = anyio.run(
        lambda: review_items([item(), item(start=50)], reviewer, concurrency=1, timeout_seconds=0.2)
    )

    assert outcome.reviewed == []
    assert [n.reason for n in outcome.not_reviewed] == ["the review ran out of time (0 s)"] * 2


FILES = {f"pkg/m{i}.py": f"def f{i}(x):\n    return x\n".encode() for i in range(5)}


def review_context(reviewer: CountingReviewer) -> tuple[ReviewContext, RecordingDispatcher]:
    dispatcher = RecordingDispatcher()
    fetch = FetchContext(
        jobs=InMemoryJobStore(),
        blobs=InMemoryBlobStore(),
        fetcher=FakeFetcher(dict(FILES)),
        clock=FakeClock(),
        limits=FetchLimits(),
        lease=timedelta(seconds=30),
        allowed_hosts=["github.com"],
    )
    ctx = ReviewContext(
        fetch=fetch,
        pull_requests=None,  # type: ignore[arg-type]  # repository reviews only
        reviewer_factory=lambda: reviewer,
        dispatcher=dispatcher,
        batch_size=2,
    )
    return ctx, dispatcher


def started_review(ctx: ReviewContext, dispatcher: RecordingDispatcher) -> str:
    from functions.core.models import Job

    fetch = ctx.fetch
    fetch.jobs.create(Job.new("src", "https://github.com/o/r", fetch.clock()))
    run_fetch("src", fetch)
    job = start_repository_review(
        "src",
        [],
        [],
        None,
        jobs=fetch.jobs,
        dispatcher=dispatcher,
        clock=fetch.clock,
        make_id=lambda: "rev",
    )
    return job.job_id


def test_a_review_runs_as_a_chain_of_batches_and_redeliveries_do_nothing() -> None:
    reviewer = CountingReviewer()
    ctx, dispatcher = review_context(reviewer)
    job_id = started_review(ctx, dispatcher)

    run_job(job_id, ctx)  # plans: 5 items in batches of 2, then starts batch 0
    run_job(job_id, ctx)  # the planning event delivered twice
    planned = ctx.fetch.jobs.get(job_id)
    run_job(job_id, ctx, 0)
    run_job(job_id, ctx, 0)  # batch 0 delivered twice
    run_job(job_id, ctx, 1)
    run_job(job_id, ctx, 2)
    run_job(job_id, ctx, 2)  # the last batch delivered after the job finished

    assert planned is not None
    assert planned.status is JobStatus.REVIEWING
    assert planned.progress is not None
    assert (planned.progress.done, planned.progress.total) == (0, 5)
    assert dispatcher.dispatched == ["rev", "rev#0", "rev#1", "rev#2"]
    assert len(reviewer.seen) == 5
    done = ctx.fetch.jobs.get(job_id)
    assert done is not None
    assert done.status is JobStatus.READY
    assert done.progress is not None
    assert (done.progress.done, done.progress.total) == (5, 5)
    report: Report = load_report(job_id, ctx.fetch.jobs, ctx.fetch.blobs, ctx.fetch.clock)
    assert report.reviewed == [f"pkg.m{i}.f{i}" for i in range(5)]
    assert len(report.findings) == 5


def unpack(blobs: InMemoryBlobStore, job_id: str) -> None:
    """Rewrite a fetched job in the layout from before packs: a blob per file, no offsets."""
    manifest = RepoManifest.model_validate_json(blobs.blobs[manifest_key(job_id)])
    pack = blobs.blobs.pop(pack_key(job_id))
    files = {}
    for path, info in manifest.files.items():
        assert info.offset is not None
        blobs.blobs[file_key(job_id, path)] = pack[info.offset : info.offset + info.size]
        files[path] = info.model_copy(update={"offset": None})
    blobs.blobs[manifest_key(job_id)] = (
        manifest.model_copy(update={"files": files}).model_dump_json().encode()
    )


@pytest.mark.parametrize("layout", ["pack", "file-per-blob"])
def test_a_repository_review_reads_the_source_jobs_files_in_either_layout(layout: str) -> None:
    reviewer = CountingReviewer()
    ctx, dispatcher = review_context(reviewer)
    job_id = started_review(ctx, dispatcher)
    blobs = ctx.fetch.blobs
    assert isinstance(blobs, InMemoryBlobStore)
    if layout == "file-per-blob":
        unpack(blobs, "src")
    blobs.gets.clear()

    for batch in (None, 0, 1, 2):
        run_job(job_id, ctx, batch)

    report = load_report(job_id, ctx.fetch.jobs, blobs, ctx.fetch.clock)
    assert report.reviewed == [f"pkg.m{i}.f{i}" for i in range(5)]
    # The exact bytes of each file reached the reviewer.
    assert sorted(f.source for f in reviewer.seen) == sorted(d.decode() for d in FILES.values())
    file_reads = [key for key in blobs.gets if "/files/" in key]
    if layout == "pack":
        assert file_reads == []
        assert {key for key, _, _ in blobs.range_gets} == {pack_key("src")}
    else:
        assert blobs.range_gets == []
        assert set(file_reads) >= {file_key("src", path) for path in FILES}


def test_a_batch_whose_worker_holds_the_lease_is_not_run_twice() -> None:
    reviewer = CountingReviewer()
    ctx, dispatcher = review_context(reviewer)
    job_id = started_review(ctx, dispatcher)
    run_job(job_id, ctx)
    job = ctx.fetch.jobs.get(job_id)
    assert job is not None
    ctx.fetch.jobs.replace(job.claim_batch(0, ctx.fetch.clock(), timedelta(seconds=30)))

    run_job(job_id, ctx, 0)  # a duplicate while the first worker is alive

    assert reviewer.seen == []


def test_a_review_where_every_call_fails_fails_the_job_with_the_reason() -> None:
    class Down(CountingReviewer):
        async def review(self, function: FunctionSource) -> list[str]:
            raise ProviderUnavailable("gateway down", provider="gateway")

    ctx, dispatcher = review_context(Down())
    ctx.batch_size = 10
    job_id = started_review(ctx, dispatcher)
    run_job(job_id, ctx)

    run_job(job_id, ctx, 0)

    job = ctx.fetch.jobs.get(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error_code == "llm_unavailable"
    assert "gateway down" in (job.error_message or "")


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.FAILED])
def test_a_repository_review_needs_a_ready_fetch(status: JobStatus) -> None:
    from functions.core.errors import Conflict
    from functions.core.models import Job

    jobs, clock = InMemoryJobStore(), FakeClock()
    job = Job.new("src", "https://github.com/o/r", clock())
    if status is JobStatus.FAILED:
        job = job.mark_failed(clock(), "repo_not_found", "gone")
    jobs.jobs["src"] = job

    with pytest.raises(Conflict):
        start_repository_review(
            "src", [], [], None, jobs=jobs, dispatcher=RecordingDispatcher(), clock=clock
        )


def test_a_review_waiting_for_its_next_batch_does_not_look_abandoned() -> None:
    from functions.core.jobs import get_job

    ctx, dispatcher = review_context(CountingReviewer())
    job_id = started_review(ctx, dispatcher)
    run_job(job_id, ctx)  # planned; batch 0 is queued (an async event may wait minutes)
    run_job(job_id, ctx, 0)  # batch 0 done; batch 1 is queued
    clock = ctx.fetch.clock
    assert isinstance(clock, FakeClock)

    clock.advance(5 * 60)  # far beyond the 30 s lease of a running attempt
    waiting = get_job(job_id, ctx.fetch.jobs, clock)
    clock.advance(11 * 60)  # beyond the 15 minutes an event may wait
    lost = get_job(job_id, ctx.fetch.jobs, clock)

    assert waiting.status is JobStatus.REVIEWING
    assert lost.status is JobStatus.FAILED
    assert lost.error_code == "worker_lost"
