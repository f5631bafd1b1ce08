"""Use case: review one function of a fetched repository.

Cost per request does not grow with the repository: the manifest (module map and function
index, written once by the fetch) is cached per job, and only the one file that holds the
function is read.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import anyio

from functions.core.errors import BlobNotFound, StorageError, WrongJobKind
from functions.core.jobs import file_key, manifest_key, wait_until_ready
from functions.core.locate import extract_source, resolve
from functions.core.models import (
    FunctionSource,
    JobKind,
    RepoManifest,
    validate_function_name,
)
from functions.core.ports import BlobStore, Clock, JobStore, Reviewer


class ManifestCache:
    """Manifests by job id, loaded once: a READY job's manifest never changes."""

    def __init__(self, blobs: BlobStore, max_entries: int = 64) -> None:
        self._blobs = blobs
        self._max = max_entries
        self._items: OrderedDict[str, RepoManifest] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self, job_id: str) -> RepoManifest:
        with self._lock:
            cached = self._items.get(job_id)
            if cached is not None:
                self._items.move_to_end(job_id)
                return cached
        try:
            data = self._blobs.get(manifest_key(job_id))
        except BlobNotFound as exc:
            raise StorageError(
                f"Job {job_id} is READY but its stored files are missing (deleted or expired). "
                "Start a new job with POST /analyze/start."
            ) from exc
        manifest = RepoManifest.model_validate_json(data)
        with self._lock:
            self._items[job_id] = manifest
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return manifest

    async def get(self, job_id: str) -> RepoManifest:
        """Return the job's manifest, from memory when it was loaded before."""
        return await anyio.to_thread.run_sync(self._load, job_id)


@dataclass
class AnalysisContext:
    """What ``review_function`` needs."""

    jobs: JobStore
    blobs: BlobStore
    manifests: ManifestCache
    reviewer: Reviewer
    clock: Clock
    wait_seconds: float


async def locate_function(job_id: str, function_name: str, ctx: AnalysisContext) -> FunctionSource:
    """Find the function's exact source, waiting (bounded) for a job that is still fetching."""
    name = validate_function_name(function_name)
    job = await wait_until_ready(job_id, ctx.jobs, ctx.clock, wait_seconds=ctx.wait_seconds)
    if job.kind is not JobKind.REPO:
        raise WrongJobKind(
            f"Job {job_id} is a {job.kind.value.replace('_', ' ')} job; functions are looked up "
            f"in a repository fetched with POST /analyze/start. Its findings are at "
            f"GET /analyze/jobs/{job_id}/report."
        )
    manifest = await ctx.manifests.get(job_id)
    path, info = resolve(manifest, name)
    data = await anyio.to_thread.run_sync(ctx.blobs.get, file_key(job_id, path))
    return FunctionSource(
        name=name,
        path=path,
        qualname=info.qualname,
        start_line=info.start_line,
        end_line=info.end_line,
        source=extract_source(data, info),
    )


_LINE_RE = re.compile(r"^(\[[a-z]+\] )?Line (\d+):")


def to_file_lines(suggestions: list[str], function: FunctionSource) -> list[str]:
    """Turn "Line N:" (counted from the function's first line) into the file's line number."""
    length = function.end_line - function.start_line + 1

    def shift(match: re.Match[str]) -> str:
        line = int(match.group(2))
        if not 1 <= line <= length:
            return match.group(0)
        return f"{match.group(1) or ''}Line {line + function.start_line - 1}:"

    return [_LINE_RE.sub(shift, suggestion) for suggestion in suggestions]


async def review_function(job_id: str, function_name: str, ctx: AnalysisContext) -> list[str]:
    """Return review suggestions for one function of a fetched repository.

    Line numbers in the suggestions are the file's, so they point at the repository's code.
    """
    function = await locate_function(job_id, function_name, ctx)
    return to_file_lines(await ctx.reviewer.review(function), function)
