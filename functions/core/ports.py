"""Ports: what the use cases need from the outside world, as ``typing.Protocol``.

Adapters in ``functions.adapters`` implement them (S3 or a local folder, DynamoDB or SQLite,
Lambda or an in-process worker, git); tests use small in-memory fakes. Adapters translate SDK
errors into ``functions.core.errors`` (``raise StorageError(...) from exc``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from functions.core.models import FunctionSource, Job, SkippedFile
from functions.core.repo_url import RepoUrl

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""


class BlobStore(Protocol):
    """Immutable blobs by key (S3 bucket, local folder)."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated ``chunks`` under ``key``; return the bytes written.

        The chunks are consumed one at a time, never joined in memory, so a whole repository
        can be written as one blob. If the iterable raises, nothing is stored under ``key``.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the blob; raise BlobNotFound if there is none."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of the blob from offset ``start``.

        Raise BlobNotFound if there is no blob, StorageError if the range does not lie
        within the blob (or the store fails), ValueError for a negative start or length.
        """
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many."""
        ...


class JobStore(Protocol):
    """Job records with conditional writes (DynamoDB table, SQLite file)."""

    def create(self, job: Job) -> None:
        """Insert a new job; raise StateConflict if the id exists."""
        ...

    def get(self, job_id: str) -> Job | None:
        """Return the job, or None if there is no such job."""
        ...

    def replace(self, job: Job) -> None:
        """Write ``job`` only if the stored version is ``job.version - 1``; else StateConflict."""
        ...

    def list_unfinished(self, limit: int) -> list[Job]:
        """Return up to ``limit`` jobs that are QUEUED or FETCHING (for crash recovery)."""
        ...


class Dispatcher(Protocol):
    """Starts a job's background work (async Lambda invoke, in-process worker)."""

    def dispatch(self, job_id: str, batch: int | None = None) -> None:
        """Hand the job (or one review batch of it) to a worker and return at once."""
        ...


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one repository fetch."""

    timeout_seconds: float = 120.0
    max_repo_bytes: int = 500 * 1024 * 1024
    """Most bytes git may download (the packfile) before it is stopped."""
    max_files: int = 20_000
    """Most Python files kept."""
    max_tree_entries: int = 200_000
    """Most entries of any kind in the repository tree."""
    max_file_bytes: int = 1024 * 1024
    """Largest Python file kept; larger ones are listed as skipped."""
    max_total_bytes: int = 200 * 1024 * 1024
    """Most bytes of Python source kept."""


@dataclass(frozen=True)
class TreeEntry:
    """A Python file in the fetched tree, not yet read."""

    path: str
    size: int
    blob_id: str


class RepoSnapshot(Protocol):
    """A fetched commit whose Python files can be read without a working tree."""

    @property
    def commit(self) -> str:
        """The commit id that was fetched."""
        ...

    @property
    def files_in_repo(self) -> int:
        """How many entries the tree has in all (any kind of file)."""
        ...

    @property
    def entries(self) -> Sequence[TreeEntry]:
        """The Python files kept, within the limits."""
        ...

    @property
    def skipped(self) -> Sequence[SkippedFile]:
        """Files not kept, each with a reason (too large, symlink, limit reached...)."""
        ...

    def read(self) -> Generator[tuple[TreeEntry, bytes], None, None]:
        """Yield each kept entry with its content, streaming (not all in memory).

        Closing the generator early stops the reading (and any process behind it).
        """
        ...


class RepoFetcher(Protocol):
    """Fetches one commit of a repository into a scratch folder (git)."""

    def fetch(
        self, url: RepoUrl, workdir: Path, limits: FetchLimits, deadline: float
    ) -> RepoSnapshot:
        """Fetch the default branch's head, stopping at ``deadline`` (time.monotonic()).

        Raise RepoNotFound, RepoTooLarge, FetchTimeout or GitFailed.
        """
        ...


class Reviewer(Protocol):
    """Reviews one function and returns suggestions (through the gateway)."""

    async def review(self, function: FunctionSource) -> list[str]:
        """Return actionable suggestions for ``function``; raise an LLMError on failure."""
        ...


@dataclass(frozen=True)
class ChatReply:
    """What a model answered to a chat completion."""

    content: str | None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatModel(Protocol):
    """One LLM provider's chat completions (OpenAI, DeepSeek, a local server)."""

    @property
    def provider(self) -> str:
        """The provider's name as in LLM_PROVIDER."""
        ...

    @property
    def model(self) -> str:
        """The model asked for."""
        ...

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, object] | None,
        timeout: float,
    ) -> ChatReply:
        """Return the model's answer, asking for ``json_schema`` in the provider's own way.

        Raise an LLMError whose ``retryable`` says whether sending it again may succeed.
        """
        ...


class ReviewCache(Protocol):
    """Finished reviews by request key (SQLite embedded, DynamoDB on AWS)."""

    def get(self, key: str) -> list[str] | None:
        """Return the cached suggestions, or None."""
        ...

    def put(self, key: str, suggestions: list[str]) -> None:
        """Remember the suggestions for ``key``."""
        ...


class StaticAnalyzer(Protocol):
    """Finds real problems in one function without a model (ruff and AST checks)."""

    def review(self, source: str, limit: int = 20) -> list[str]:
        """Return suggestions from every static check (linters included), most severe first."""
        ...

    def quick_review(self, source: str, limit: int = 20) -> list[str]:
        """Return suggestions from the in-process checks only (well under a millisecond)."""
        ...


@dataclass(frozen=True)
class FileChange:
    """One file a pull request touched, as git's diff sees it."""

    path: str
    """The path in the new version (the old path for a deleted file)."""
    status: str
    """added, modified, renamed, copied, deleted or type_changed."""
    old_path: str | None = None
    binary: bool = False
    changed_lines: tuple[tuple[int, int], ...] = ()
    """Added or changed line ranges in the new version, inclusive, 1-based."""


class PullRequestSnapshot(Protocol):
    """A fetched pull request: its base and head commits, what changed, the new contents."""

    @property
    def base(self) -> str:
        """The commit the changes are compared with (the merge base, or the merge's parent)."""
        ...

    @property
    def head(self) -> str:
        """The commit whose files are reviewed (the pull request's head or test merge)."""
        ...

    @property
    def changes(self) -> Sequence[FileChange]:
        """Every file the pull request touched."""
        ...

    @property
    def skipped(self) -> Sequence[SkippedFile]:
        """Changed Python files that cannot be read (too large, symlinks...), with reasons."""
        ...

    def read(self) -> Generator[tuple[TreeEntry, bytes], None, None]:
        """Yield the new version of each changed Python file that can be read."""
        ...


class PullRequestFetcher(Protocol):
    """Fetches a pull request the way the host exposes it to git (``refs/pull/N/...``)."""

    def fetch_pull_request(
        self,
        url: RepoUrl,
        number: int,
        base_ref: str | None,
        workdir: Path,
        limits: FetchLimits,
        deadline: float,
    ) -> PullRequestSnapshot:
        """Fetch pull request ``number`` and diff it against its base.

        Raise PullRequestNotFound, RepoNotFound, RepoTooLarge, FetchTimeout or GitFailed.
        """
        ...
