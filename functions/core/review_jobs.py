"""Use cases: review a pull request, or every function of a fetched repository, as a job.

A pull-request job fetches the pull request (hardened, shallow), diffs it, and reviews exactly
the functions and methods whose lines it added or changed (and changed module-level code), with
bounded concurrency. A repository job reviews the functions of an already fetched repository.
Both report progress (reviewed / total) on the job, and write one report (JSON; Markdown and
SARIF are rendered from it). Nothing is dropped silently: what is not reviewed is listed with
its reason. Functions too large for the model are reviewed in parts.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio
from pydantic import BaseModel, ConfigDict

from functions.core.analyze import load_function_index
from functions.core.errors import (
    FunctionTooLarge,
    JobFailed,
    LLMError,
    ProviderUnavailable,
    ReportNotAvailable,
)
from functions.core.jobs import (
    HANDOFF_LEASE,
    Attempt,
    FetchContext,
    get_job,
    manifest_key,
    new_job_id,
    queue_job,
    read_source,
    run_attempt,
    run_fetch,
)
from functions.core.locate import extract_source, index_module, module_names_for
from functions.core.models import (
    FunctionInfo,
    FunctionSource,
    Job,
    JobKind,
    JobStats,
    JobStatus,
    RepoManifest,
    ReviewOptions,
)
from functions.core.ports import (
    BlobStore,
    Clock,
    Dispatcher,
    FileChange,
    JobStore,
    PullRequestFetcher,
    Reviewer,
)
from functions.core.repo_url import parse_repo_url
from functions.core.report import (
    CATEGORY_SEVERITY,
    Finding,
    NotReviewed,
    Report,
    Severity,
    parse_suggestion,
)

log = logging.getLogger(__name__)

MODULE_CODE = "<module>"
MAX_SPLIT_DEPTH = 4
MIN_PART_LINES = 8
MODULE_CONTEXT_LINES = 2
MAX_REPO_REVIEW_FUNCTIONS = 5000


def report_key(job_id: str) -> str:
    """Blob key of a review job's report."""
    return f"reports/{job_id}/report.json"


class ReviewItem(BaseModel):
    """One thing to review: a function, a method, or a block of module-level code."""

    model_config = ConfigDict(frozen=True)

    path: str
    name: str
    start_line: int
    end_line: int
    source: str
    anchors: tuple[int, ...] = ()
    """Lines a finding may point at (the changed lines); empty: any line of the item."""

    def part(self, first: int, last: int) -> ReviewItem:
        """Lines ``first``..``last`` (file numbering) of this item, as an item of their own."""
        lines = self.source.splitlines(keepends=True)
        text = "".join(lines[first - self.start_line : last - self.start_line + 1])
        return self.model_copy(update={"start_line": first, "end_line": last, "source": text})


class ReviewPlan(BaseModel):
    """What a review job will cover, stored once; each batch reads its slice."""

    report: Report
    items: list[ReviewItem]
    not_reviewed: list[NotReviewed]
    batch_size: int

    @property
    def batches(self) -> int:
        """How many batches the items make."""
        return -(-len(self.items) // self.batch_size)

    def batch(self, index: int) -> list[ReviewItem]:
        """The items of batch ``index``."""
        return self.items[index * self.batch_size : (index + 1) * self.batch_size]


class BatchResult(BaseModel):
    """What one batch produced."""

    reviewed: list[str]
    findings: list[Finding]
    not_reviewed: list[NotReviewed]
    failures: int


class ClosableReviewer(Reviewer, Protocol):
    """A reviewer whose connections must be closed when the job is done."""

    async def aclose(self) -> None:
        """Close connections."""
        ...


@dataclass
class ReviewContext:
    """What review jobs need beyond a fetch."""

    fetch: FetchContext
    pull_requests: PullRequestFetcher
    reviewer_factory: Callable[[], ClosableReviewer]
    """A new reviewer per batch: each batch runs on its own event loop, in a worker."""
    dispatcher: Dispatcher
    """Starts the next batch of the chain (an async Lambda invoke, or the in-process worker)."""
    concurrency: int = 4
    batch_size: int = 50
    timeout_seconds: float = 840.0
    """Time limit of one batch (under Lambda's 15 minutes); the rest is listed as not reviewed."""


def _dotted(path: str, qualname: str | None) -> str:
    names = module_names_for(path)
    module = names[0] if names else path
    return module if qualname is None else f"{module}.{qualname}"


def _blocks(lines: Iterable[int], gap: int = 3) -> list[tuple[int, int]]:
    """Group line numbers into blocks, joining those at most ``gap`` lines apart."""
    blocks: list[tuple[int, int]] = []
    for line in sorted(set(lines)):
        if blocks and line - blocks[-1][1] <= gap:
            blocks[-1] = (blocks[-1][0], line)
        else:
            blocks.append((line, line))
    return blocks


def plan_file(
    path: str, data: bytes, changed: set[int] | None, max_bytes: int
) -> tuple[list[ReviewItem], list[NotReviewed]]:
    """Items to review in one file: functions touching ``changed`` lines (None: every function).

    Changed lines outside any function become module-level blocks (blank lines ignored).
    """
    info = index_module(path, data, max_bytes=max_bytes)
    if info.error:
        return [], [NotReviewed(path=path, reason=f"not reviewed: {info.error}")]
    items: list[ReviewItem] = []
    covered: set[int] = set()
    for function in info.functions:
        span = set(range(function.start_line, function.end_line + 1))
        hit = span if changed is None else span & changed
        covered |= span
        if not hit:
            continue
        items.append(
            ReviewItem(
                path=path,
                name=_dotted(path, function.qualname),
                start_line=function.start_line,
                end_line=function.end_line,
                source=extract_source(data, function),
                anchors=() if changed is None else tuple(sorted(hit)),
            )
        )
    if changed is None:
        return items, []
    text_lines = data.decode("utf-8", "replace").splitlines()
    leftover = [
        n for n in changed - covered if 0 < n <= len(text_lines) and text_lines[n - 1].strip()
    ]
    for first, last in _blocks(leftover):
        start = max(1, first - MODULE_CONTEXT_LINES)
        end = min(len(text_lines), last + MODULE_CONTEXT_LINES)
        block = FunctionInfo(qualname=MODULE_CODE, start_line=start, end_line=end)
        items.append(
            ReviewItem(
                path=path,
                name=f"{_dotted(path, None)}:{MODULE_CODE}",
                start_line=start,
                end_line=end,
                source=extract_source(data, block),
                anchors=tuple(n for n in sorted(leftover) if first <= n <= last),
            )
        )
    return items, []


def plan_pull_request(
    changes: Sequence[FileChange],
    contents: Mapping[str, bytes],
    unreadable: Mapping[str, str],
    max_bytes: int,
) -> tuple[list[ReviewItem], list[NotReviewed]]:
    """Items to review for a pull request's changes, and every changed file not reviewed."""
    items: list[ReviewItem] = []
    skipped: list[NotReviewed] = []
    for change in changes:
        path = change.path
        if change.status == "deleted":
            skipped.append(NotReviewed(path=path, reason="deleted by the pull request"))
        elif change.binary:
            skipped.append(NotReviewed(path=path, reason="binary file"))
        elif not path.endswith(".py"):
            skipped.append(NotReviewed(path=path, reason="not a Python file"))
        elif not change.changed_lines:
            what = f"renamed from {change.old_path}" if change.old_path else change.status
            skipped.append(NotReviewed(path=path, reason=f"{what}, with no changed lines"))
        elif path in unreadable:
            skipped.append(NotReviewed(path=path, reason=unreadable[path]))
        elif path not in contents:
            skipped.append(NotReviewed(path=path, reason="could not be read from the commit"))
        else:
            changed = {n for a, b in change.changed_lines for n in range(a, b + 1)}
            file_items, file_skipped = plan_file(path, contents[path], changed, max_bytes)
            items += file_items
            skipped += file_skipped
    return items, skipped


def _anchor(item: ReviewItem, line: int | None) -> int:
    if not item.anchors:
        return (
            line
            if line is not None and item.start_line <= line <= item.end_line
            else (item.start_line)
        )
    if line is None:
        return item.anchors[0]
    return min(item.anchors, key=lambda anchor: (abs(anchor - line), anchor))


def to_findings(item: ReviewItem, part_start: int, suggestions: Iterable[str]) -> list[Finding]:
    """Turn a reviewer's suggestions for (part of) an item into anchored findings."""
    findings = []
    for suggestion in suggestions:
        category, relative, message, fix = parse_suggestion(suggestion)
        line = None if relative is None else part_start + relative - 1
        anchored = _anchor(item, line)
        findings.append(
            Finding(
                path=item.path,
                function=item.name,
                start_line=anchored,
                end_line=anchored,
                category=category,
                severity=CATEGORY_SEVERITY.get(category, Severity.NOTE),
                message=message,
                suggestion=fix,
            )
        )
    return findings


async def _review_in_parts(
    item: ReviewItem, reviewer: Reviewer, depth: int = 0
) -> list[tuple[int, list[str]]]:
    function = FunctionSource(
        name=item.name,
        path=item.path,
        qualname=item.name,
        start_line=item.start_line,
        end_line=item.end_line,
        source=item.source,
    )
    try:
        return [(item.start_line, await reviewer.review(function))]
    except FunctionTooLarge:
        length = item.end_line - item.start_line + 1
        if depth >= MAX_SPLIT_DEPTH or length < 2 * MIN_PART_LINES:
            raise
    middle = item.start_line + length // 2
    first = await _review_in_parts(item.part(item.start_line, middle - 1), reviewer, depth + 1)
    second = await _review_in_parts(item.part(middle, item.end_line), reviewer, depth + 1)
    return first + second


@dataclass
class ReviewOutcome:
    """What reviewing a list of items produced."""

    reviewed: list[str]
    findings: list[Finding]
    not_reviewed: list[NotReviewed]
    failures: int = 0


async def review_items(
    items: Sequence[ReviewItem],
    reviewer: Reviewer,
    *,
    concurrency: int,
    timeout_seconds: float,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> ReviewOutcome:
    """Review ``items`` with at most ``concurrency`` reviews in flight, within the time limit."""
    outcome = ReviewOutcome(reviewed=[], findings=[], not_reviewed=[])
    limiter = anyio.Semaphore(max(concurrency, 1))
    finished: set[int] = set()

    async def one(index: int, item: ReviewItem) -> None:
        async with limiter:
            try:
                parts = await _review_in_parts(item, reviewer)
            except FunctionTooLarge:
                outcome.not_reviewed.append(
                    NotReviewed(
                        path=item.path,
                        function=item.name,
                        reason="too large for the model's context, even in parts",
                    )
                )
            except LLMError as exc:
                outcome.failures += 1
                outcome.not_reviewed.append(
                    NotReviewed(
                        path=item.path,
                        function=item.name,
                        reason=f"review failed ({exc.code}): {exc.message}",
                    )
                )
            else:
                outcome.reviewed.append(item.name)
                for start, suggestions in parts:
                    outcome.findings.extend(to_findings(item, start, suggestions))
            finished.add(index)
            on_progress(len(finished), len(items))

    with anyio.move_on_after(timeout_seconds):
        async with anyio.create_task_group() as group:
            for index, item in enumerate(items):
                group.start_soon(one, index, item)
    for index, item in enumerate(items):
        if index not in finished:
            outcome.not_reviewed.append(
                NotReviewed(
                    path=item.path,
                    function=item.name,
                    reason=f"the review ran out of time ({timeout_seconds:.0f} s)",
                )
            )
    outcome.findings.sort(key=lambda f: (f.path, f.start_line, f.severity.rank))
    return outcome


def plan_key(job_id: str) -> str:
    """Blob key of a review job's plan."""
    return f"reports/{job_id}/plan.json"


def batch_key(job_id: str, batch: int) -> str:
    """Blob key of one batch's result."""
    return f"reports/{job_id}/batches/{batch:05d}.json"


def _store_plan(attempt: Attempt, ctx: ReviewContext, plan: ReviewPlan) -> JobStats | None:
    """Store the plan and start the chain of batches (or finish at once if there is nothing)."""
    fetch = ctx.fetch
    job_id = attempt.job.job_id
    fetch.blobs.put(plan_key(job_id), plan.model_dump_json().encode())
    total = len(plan.items) + len(plan.not_reviewed)
    skipped = len(plan.not_reviewed)
    handoff = max(fetch.lease, HANDOFF_LEASE)  # batch 0 may wait in a queue
    attempt.save(lambda job: job.start_review(fetch.clock(), handoff, total, plan.batches, skipped))
    if not plan.items:
        return _assemble(ctx, job_id, plan, [])
    ctx.dispatcher.dispatch(job_id, 0)
    return None


def _run_batch(ctx: ReviewContext, batch: int, attempt: Attempt) -> JobStats | None:
    """Review one batch; start the next, or assemble the report after the last."""
    fetch = ctx.fetch
    job_id = attempt.job.job_id
    plan = ReviewPlan.model_validate_json(fetch.blobs.get(plan_key(job_id)))
    items = plan.batch(batch)
    cursor = attempt.job.batches
    before = cursor.items_done if cursor else 0
    budget = ctx.timeout_seconds
    if fetch.remaining_seconds is not None:
        budget = min(budget, fetch.remaining_seconds() - fetch.safety_seconds)
    total = len(plan.items) + len(plan.not_reviewed)

    async def review() -> ReviewOutcome:
        reviewer = ctx.reviewer_factory()
        try:
            return await review_items(
                items,
                reviewer,
                concurrency=ctx.concurrency,
                timeout_seconds=max(budget, 0.0),
                on_progress=lambda done, _: attempt.progress("reviewing", before + done, total),
            )
        finally:
            await reviewer.aclose()

    outcome = anyio.run(review)
    result = BatchResult(
        reviewed=outcome.reviewed,
        findings=outcome.findings,
        not_reviewed=outcome.not_reviewed,
        failures=outcome.failures,
    )
    fetch.blobs.put(batch_key(job_id, batch), result.model_dump_json().encode())
    if batch + 1 < plan.batches:
        handoff = max(fetch.lease, HANDOFF_LEASE)  # the next batch may wait in a queue
        attempt.save(lambda job: job.finish_batch(batch, fetch.clock(), handoff, len(items)))
        ctx.dispatcher.dispatch(job_id, batch + 1)
        return None
    results = [
        BatchResult.model_validate_json(fetch.blobs.get(batch_key(job_id, k)))
        for k in range(plan.batches - 1)
    ]
    return _assemble(ctx, job_id, plan, [*results, result])


def _assemble(
    ctx: ReviewContext, job_id: str, plan: ReviewPlan, results: list[BatchResult]
) -> JobStats:
    """Write the report from every batch's result; return the job's final stats."""
    reviewed = sorted(name for r in results for name in r.reviewed)
    failures = sum(r.failures for r in results)
    not_reviewed = plan.not_reviewed + [n for r in results for n in r.not_reviewed]
    if plan.items and failures == len(plan.items):
        raise ProviderUnavailable(
            "No item could be reviewed: the LLM gateway failed every time. First reason: "
            + next(n.reason for r in results for n in r.not_reviewed)
        )
    findings = sorted(
        (f for r in results for f in r.findings),
        key=lambda f: (f.path, f.start_line, f.severity.rank),
    )
    report = plan.report.model_copy(
        update={
            "reviewed": reviewed,
            "findings": findings,
            "not_reviewed": not_reviewed,
            "generated_at": datetime.now(UTC),
        }
    )
    ctx.fetch.blobs.put(report_key(job_id), report.model_dump_json().encode())
    return JobStats(
        commit=report.head_commit,
        reviewed=len(reviewed),
        findings=len(findings),
        not_reviewed=len(not_reviewed),
    )


def _review_pull_request(ctx: ReviewContext, attempt: Attempt, workdir: Path) -> JobStats | None:
    fetch = ctx.fetch
    job = attempt.job
    options = job.review or ReviewOptions()
    started = fetch.monotonic()
    deadline = started + fetch.limits.timeout_seconds
    if fetch.remaining_seconds is not None:
        deadline = min(deadline, started + fetch.remaining_seconds() - fetch.safety_seconds)
    url = parse_repo_url(job.repo_url, fetch.allowed_hosts)
    snapshot = ctx.pull_requests.fetch_pull_request(
        url, options.pr_number or 0, options.base_ref, workdir / "repo", fetch.limits, deadline
    )
    contents = {entry.path: data for entry, data in snapshot.read()}
    unreadable = {s.path: s.reason for s in snapshot.skipped}
    items, skipped = plan_pull_request(
        snapshot.changes, contents, unreadable, fetch.limits.max_file_bytes
    )
    report = Report(
        job_id=job.job_id,
        kind=JobKind.PULL_REQUEST.value,
        repo_url=job.repo_url,
        pr_number=options.pr_number,
        base_commit=snapshot.base,
        head_commit=snapshot.head,
        generated_at=datetime.now(UTC),
    )
    plan = ReviewPlan(report=report, items=items, not_reviewed=skipped, batch_size=ctx.batch_size)
    return _store_plan(attempt, ctx, plan)


def select_functions(
    manifest: RepoManifest, include: Sequence[str], exclude: Sequence[str]
) -> list[str]:
    """Paths of the manifest's files that pass the include/exclude globs, in order."""
    paths = []
    for path in sorted(manifest.files):
        if include and not any(fnmatch.fnmatchcase(path, g) for g in include):
            continue
        if any(fnmatch.fnmatchcase(path, g) for g in exclude):
            continue
        paths.append(path)
    return paths


def _review_repository(ctx: ReviewContext, attempt: Attempt, workdir: Path) -> JobStats | None:
    fetch = ctx.fetch
    job = attempt.job
    options = job.review or ReviewOptions()
    source_id = options.source_job_id or ""
    paths = RepoManifest.model_validate_json(fetch.blobs.get(manifest_key(source_id)))
    # The fetch stores paths only; which files have functions (or do not parse) is in the
    # whole-repository index, built here if no lookup built it before (and kept for them).
    manifest = load_function_index(fetch.blobs, source_id, paths)
    limit = min(options.max_functions or MAX_REPO_REVIEW_FUNCTIONS, MAX_REPO_REVIEW_FUNCTIONS)
    items: list[ReviewItem] = []
    skipped: list[NotReviewed] = []
    for path in select_functions(manifest, options.include, options.exclude):
        info = manifest.files[path]
        if info.error:
            skipped.append(NotReviewed(path=path, reason=f"not reviewed: {info.error}"))
            continue
        if not info.functions:
            continue
        file_items, file_skipped = plan_file(
            path,
            read_source(fetch.blobs, source_id, paths, path),
            None,
            fetch.limits.max_file_bytes,
        )
        skipped += file_skipped
        for item in file_items:
            if len(items) < limit:
                items.append(item)
            else:
                skipped.append(
                    NotReviewed(
                        path=item.path,
                        function=item.name,
                        reason=f"over the limit of {limit} functions for one review",
                    )
                )
    report = Report(
        job_id=job.job_id,
        kind=JobKind.REPO_REVIEW.value,
        repo_url=job.repo_url,
        head_commit=manifest.commit,
        generated_at=datetime.now(UTC),
    )
    plan = ReviewPlan(report=report, items=items, not_reviewed=skipped, batch_size=ctx.batch_size)
    return _store_plan(attempt, ctx, plan)


def run_job(job_id: str, ctx: ReviewContext, batch: int | None = None) -> Job | None:
    """Run whatever the event asks (the worker's and the fetch Lambda's one entry point).

    Without ``batch``: fetch (and plan a review). With ``batch``: run that batch of a review.
    Every path is idempotent: a redelivered or duplicate event does nothing.
    """
    fetch = ctx.fetch
    if batch is not None:
        return run_attempt(
            job_id,
            fetch,
            lambda attempt, _: _run_batch(ctx, batch, attempt),
            f"review batch {batch}",
            may_start=lambda job: (
                job.status is JobStatus.REVIEWING
                and job.batches is not None
                and job.batches.next == batch
                and not job.batch_is_held(batch, fetch.clock())
            ),
            claim=lambda job: job.claim_batch(batch, fetch.clock(), fetch.lease),
        )
    job = fetch.jobs.get(job_id)
    if job is None or job.kind is JobKind.REPO:
        return run_fetch(job_id, fetch)
    if job.kind is JobKind.PULL_REQUEST:
        return run_attempt(
            job_id, fetch, lambda a, w: _review_pull_request(ctx, a, w), "pull-request review"
        )
    return run_attempt(
        job_id, fetch, lambda a, w: _review_repository(ctx, a, w), "repository review"
    )


def start_pull_request_review(
    repo_url: str,
    pr_number: int,
    base_ref: str | None,
    *,
    allowed_hosts: list[str],
    jobs: JobStore,
    dispatcher: Dispatcher,
    clock: Clock,
    make_id: Callable[[], str] = new_job_id,
) -> Job:
    """Validate and queue a pull-request review; return at once."""
    url = parse_repo_url(repo_url, allowed_hosts)
    options = ReviewOptions(pr_number=pr_number, base_ref=base_ref)
    job = Job.new(make_id(), url.url, clock(), kind=JobKind.PULL_REQUEST, review=options)
    return queue_job(job, jobs, dispatcher, clock)


def start_repository_review(
    source_job_id: str,
    include: Sequence[str],
    exclude: Sequence[str],
    max_functions: int | None,
    *,
    jobs: JobStore,
    dispatcher: Dispatcher,
    clock: Clock,
    make_id: Callable[[], str] = new_job_id,
) -> Job:
    """Queue a review of every selected function of a READY fetch job; return at once."""
    source = get_job(source_job_id, jobs, clock)
    if source.kind is not JobKind.REPO:
        raise JobFailed(
            f"Job {source_job_id} is not a repository fetch; pass the job id that "
            "POST /analyze/start returned."
        )
    if source.status is JobStatus.FAILED:
        raise JobFailed(f"Job {source_job_id} failed ({source.error_code}): {source.error_message}")
    if source.status is not JobStatus.READY:
        raise ReportNotAvailable(
            f"Job {source_job_id} is still {source.status.lower()}; start the repository review "
            "when its status is READY."
        )
    options = ReviewOptions(
        source_job_id=source_job_id,
        include=list(include),
        exclude=list(exclude),
        max_functions=max_functions,
    )
    job = Job.new(make_id(), source.repo_url, clock(), kind=JobKind.REPO_REVIEW, review=options)
    return queue_job(job, jobs, dispatcher, clock)


def load_report(job_id: str, jobs: JobStore, blobs: BlobStore, clock: Clock) -> Report:
    """Return a finished review job's report."""
    job = get_job(job_id, jobs, clock)
    if job.kind is JobKind.REPO:
        raise ReportNotAvailable(
            f"Job {job_id} fetches a repository; it has no report. Review functions with "
            "POST /analyze/function, or the whole repository with POST /analyze/repo."
        )
    if job.status is JobStatus.FAILED:
        raise JobFailed(f"Job {job_id} failed ({job.error_code}): {job.error_message}")
    if job.status is not JobStatus.READY:
        progress = job.progress
        where = f" ({progress.done}/{progress.total})" if progress and progress.total else ""
        raise ReportNotAvailable(
            f"Job {job_id} is still {job.status.lower()}{where}; poll GET /analyze/jobs/{job_id}."
        )
    return Report.model_validate_json(blobs.get(report_key(job_id)))
