"""Small in-memory fakes of the ports, for unit tests of the use cases (no mocks)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from functions.core.errors import BlobNotFound, CodeReviewError, StateConflict, StorageError
from functions.core.models import Job, JobStatus, SkippedFile
from functions.core.ports import ChatReply, FetchLimits, TreeEntry
from functions.core.repo_url import RepoUrl


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class InMemoryJobStore:
    """JobStore with the same conditional-write rules as the real ones."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.writes: list[Job] = []
        self.fail_next: CodeReviewError | None = None
        self._lock = threading.Lock()

    def create(self, job: Job) -> None:
        with self._lock:
            if job.job_id in self.jobs:
                raise StateConflict(f"job {job.job_id} exists")
            self.jobs[job.job_id] = job
            self.writes.append(job)

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def replace(self, job: Job) -> None:
        with self._lock:
            if self.fail_next is not None:
                error, self.fail_next = self.fail_next, None
                raise error
            current = self.jobs.get(job.job_id)
            if current is None or current.version != job.version - 1:
                raise StateConflict(f"job {job.job_id} changed")
            self.jobs[job.job_id] = job
            self.writes.append(job)

    def list_unfinished(self, limit: int) -> list[Job]:
        unfinished = (JobStatus.QUEUED, JobStatus.FETCHING)
        return [j for j in self.jobs.values() if j.status in unfinished][:limit]


class InMemoryBlobStore:
    """BlobStore in a dict; can be told to fail."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fail_on: Callable[[str], CodeReviewError | None] = lambda key: None
        self.gets: list[str] = []
        """Keys read whole with ``get``, in order."""
        self.range_gets: list[tuple[str, int, int]] = []
        """(key, start, length) of every ``get_range``, in order."""
        self.puts: list[str] = []
        """Keys written (``put``, ``put_stream``), in order."""

    def put(self, key: str, data: bytes) -> None:
        error = self.fail_on(key)
        if error is not None:
            raise error
        self.puts.append(key)
        self.blobs[key] = data

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        # Joined here, where blobs live in a dict anyway; the real stores stream.
        data = b"".join(chunks)
        self.put(key, data)
        return len(data)

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        try:
            return self.blobs[key]
        except KeyError:
            raise BlobNotFound(f"no blob {key}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self.range_gets.append((key, start, length))
        if start < 0 or length < 0:
            raise ValueError(f"bad range {start}, {length}")
        try:
            data = self.blobs[key]
        except KeyError:
            raise BlobNotFound(f"no blob {key}") from None
        if start + length > len(data):
            raise StorageError(f"blob {key} ends before bytes {start}+{length}")
        return data[start : start + length]

    def delete_prefix(self, prefix: str) -> int:
        keys = [k for k in self.blobs if k.startswith(prefix)]
        for key in keys:
            del self.blobs[key]
        return len(keys)


class RecordingDispatcher:
    """Dispatcher that records job ids (and runs nothing)."""

    def __init__(self, error: CodeReviewError | None = None) -> None:
        self.dispatched: list[str] = []
        self.error = error

    def dispatch(self, job_id: str, batch: int | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.dispatched.append(job_id if batch is None else f"{job_id}#{batch}")


@dataclass
class FakeSnapshot:
    """A fetched tree from a dict of files."""

    files: dict[str, bytes]
    commit: str = "c" * 40
    skipped: Sequence[SkippedFile] = ()

    @property
    def files_in_repo(self) -> int:
        return len(self.files)

    @property
    def entries(self) -> Sequence[TreeEntry]:
        return [TreeEntry(path, len(data), path) for path, data in self.files.items()]

    def read(self) -> Generator[tuple[TreeEntry, bytes], None, None]:
        for entry in self.entries:
            yield entry, self.files[entry.path]


@dataclass
class FakeFetcher:
    """RepoFetcher that returns a snapshot, or raises, and records calls."""

    files: dict[str, bytes] = field(default_factory=dict)
    error: CodeReviewError | None = None
    calls: list[tuple[str, float]] = field(default_factory=list)
    before_return: Callable[[], None] | None = None

    def fetch(
        self, url: RepoUrl, workdir: Path, limits: FetchLimits, deadline: float
    ) -> FakeSnapshot:
        self.calls.append((url.url, deadline))
        if self.before_return is not None:
            self.before_return()
        if self.error is not None:
            raise self.error
        return FakeSnapshot(self.files)


@dataclass
class ScriptedModel:
    """ChatModel that answers from a script of replies or errors, recording each call."""

    replies: list[ChatReply | CodeReviewError]
    provider: str = "scripted"
    model: str = "scripted-model"
    calls: list[list[dict[str, str]]] = field(default_factory=list)

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, object] | None,
        timeout: float,
    ) -> ChatReply:
        self.calls.append(list(messages))
        if not self.replies:
            raise AssertionError("the script ran out of replies")
        reply = self.replies.pop(0)
        if isinstance(reply, CodeReviewError):
            raise reply
        return reply


class StaticFindings:
    """StaticAnalyzer with fixed findings."""

    def __init__(self, findings: list[str] | None = None, quick: list[str] | None = None) -> None:
        self.findings = findings or []
        self.quick = self.findings if quick is None else quick
        self.calls = 0

    def review(self, source: str, limit: int = 20) -> list[str]:
        self.calls += 1
        return list(self.findings)[:limit]

    def quick_review(self, source: str, limit: int = 20) -> list[str]:
        return list(self.quick)[:limit]


class DictCache:
    """ReviewCache in a dict."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def get(self, key: str) -> list[str] | None:
        return self.items.get(key)

    def put(self, key: str, suggestions: list[str]) -> None:
        self.items[key] = list(suggestions)
