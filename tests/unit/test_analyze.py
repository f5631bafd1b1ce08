"""Reviewing one function of a fetched repository, with fakes: one file read, file lines."""

from __future__ import annotations

from datetime import timedelta

import anyio

from functions.core.analyze import AnalysisContext, ManifestCache, review_function, to_file_lines
from functions.core.jobs import FetchContext, file_key, manifest_key, run_fetch
from functions.core.models import FunctionSource, Job
from functions.core.ports import FetchLimits
from tests.support.fakes import FakeClock, FakeFetcher, InMemoryBlobStore, InMemoryJobStore

FILES = {f"pkg/mod{i}.py": f"def f{i}(x):\n    return x\n".encode() for i in range(50)}
FILES["pkg/target.py"] = b"import os\n\n\nclass C:\n    def m(self, a):\n        return a\n"


class EchoReviewer:
    """Reviewer that reports line 2 of whatever it is given."""

    def __init__(self) -> None:
        self.seen: list[FunctionSource] = []

    async def review(self, function: FunctionSource) -> list[str]:
        self.seen.append(function)
        return ["[bug] Line 2: returns its argument unchanged.", "General remark."]


def fetched() -> tuple[InMemoryJobStore, InMemoryBlobStore, FakeClock]:
    jobs, blobs, clock = InMemoryJobStore(), InMemoryBlobStore(), FakeClock()
    jobs.create(Job.new("j", "https://github.com/o/r", clock()))
    ctx = FetchContext(
        jobs=jobs,
        blobs=blobs,
        fetcher=FakeFetcher(dict(FILES)),
        clock=clock,
        limits=FetchLimits(),
        lease=timedelta(seconds=30),
        allowed_hosts=["github.com"],
    )
    run_fetch("j", ctx)
    return jobs, blobs, clock


def test_a_review_reads_only_the_manifest_and_the_one_file_and_reports_file_lines() -> None:
    jobs, blobs, clock = fetched()
    blobs.gets.clear()
    reviewer = EchoReviewer()
    ctx = AnalysisContext(jobs, blobs, ManifestCache(blobs), reviewer, clock, wait_seconds=0)

    suggestions = anyio.run(lambda: review_function("j", "pkg.target.C.m", ctx))

    assert blobs.gets == [manifest_key("j"), file_key("j", "pkg/target.py")]
    assert reviewer.seen[0].source == "    def m(self, a):\n        return a\n"
    assert suggestions == ["[bug] Line 6: returns its argument unchanged.", "General remark."]


def test_the_manifest_is_read_once_per_job() -> None:
    jobs, blobs, clock = fetched()
    ctx = AnalysisContext(jobs, blobs, ManifestCache(blobs), EchoReviewer(), clock, 0)
    blobs.gets.clear()

    async def review_three() -> None:
        for name in ("pkg.mod1.f1", "pkg.mod2.f2", "pkg.target.C.m"):
            await review_function("j", name, ctx)

    anyio.run(review_three)

    assert blobs.gets.count(manifest_key("j")) == 1


def test_line_numbers_outside_the_function_are_left_alone() -> None:
    function = FunctionSource(
        name="m.f", path="m.py", qualname="f", start_line=10, end_line=12, source="..."
    )

    shifted = to_file_lines(["Line 1: a", "[docs] Line 3: b", "Line 9: c", "No line"], function)

    assert shifted == ["Line 10: a", "[docs] Line 12: b", "Line 9: c", "No line"]
