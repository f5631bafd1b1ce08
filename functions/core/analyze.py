"""Use case: review one function of a fetched repository.

Cost per request does not grow with the repository. The fetch stores the files and a manifest
of their paths, and parses nothing. A lookup by dotted name reads the manifest (cached per
job) and only the file(s) of the module the name names, parses those and keeps them (cached
per file). Bare names, suggestions for a name that is not there, the function listing and
whole-repository reviews need every function: that index is built once per job on first need
(every file read and parsed), stored next to the manifest for other processes and Lambdas,
and cached. Every cache is bounded by entries and by bytes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from functions.core.errors import BlobNotFound, StorageError, WrongJobKind
from functions.core.jobs import manifest_key, pack_key, read_source, wait_until_ready
from functions.core.locate import (
    FullIndex,
    FunctionIndex,
    ModuleSource,
    build_manifest,
    extract_source,
    index_module,
    parse_limit,
)
from functions.core.models import (
    FunctionInfo,
    FunctionSource,
    JobKind,
    ModuleInfo,
    RepoManifest,
    validate_function_name,
)
from functions.core.ports import BlobStore, Clock, JobStore, Reviewer

log = logging.getLogger(__name__)

INDEX_READ_WORKERS = 8
"""Threads reading files to build a whole-repository index: S3 reads are latency-bound."""
_INDEX_READ_CHUNK = 64
"""Files read ahead at once while indexing, so memory stays bounded on large repositories."""
_PACK_WINDOW_BYTES = 32 * 2**20
"""Most bytes of a pack read at once while indexing: one read for most repositories, and
bounded memory for the largest (a fetch may store up to 200 MB)."""
_FUNCTION_WEIGHT = 200
"""Rough bytes of memory per cached FunctionInfo, to weigh parsed files."""
_JSON_BYTES_PER_ENTRY = 100
"""Rough bytes of manifest JSON per file or function, to weigh an index not read as JSON."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def index_key(job_id: str) -> str:
    """Blob key of a job's whole-repository function index (an indexed ``RepoManifest``)."""
    return f"repos/{job_id}/index.json"


class _Lru(Generic[K, V]):
    """A thread-safe LRU bounded by entries and by total weight (about bytes).

    The newest entry is kept even when it alone is over the weight bound: what was just
    loaded is about to be used.
    """

    def __init__(self, max_entries: int, max_weight: int) -> None:
        self._max_entries = max_entries
        self._max_weight = max_weight
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, weight: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._items[key] = (value, weight)
            self._weight += weight
            while len(self._items) > 1 and (
                len(self._items) > self._max_entries or self._weight > self._max_weight
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._weight -= dropped


@dataclass(frozen=True)
class _File:
    """One source file's bytes and, once parsed, what is in it."""

    data: bytes
    module: ModuleInfo | None = None

    @property
    def weight(self) -> int:
        functions = len(self.module.functions) if self.module is not None else 0
        return len(self.data) + _FUNCTION_WEIGHT * (functions + 1)


def _pack_windows(manifest: RepoManifest, paths: list[str]) -> list[tuple[int, list[str]]]:
    """Group the packed files into runs of the pack read with one ranged read each.

    A window holds files in pack order up to ``_PACK_WINDOW_BYTES`` (or one larger file), so
    the whole index of a repository costs a few reads, not one per file, while memory holds
    one window at a time. Returns (window start, paths) pairs.
    """
    windows: list[tuple[int, list[str]]] = []
    start = end = 0
    current: list[str] = []
    for path in sorted(paths, key=lambda p: manifest.files[p].offset or 0):
        info = manifest.files[path]
        offset = info.offset or 0
        if current and (offset != end or offset + info.size - start > _PACK_WINDOW_BYTES):
            windows.append((start, current))
            current = []
        if not current:
            start = offset
        current.append(path)
        end = offset + info.size
    if current:
        windows.append((start, current))
    return windows


def build_function_index(blobs: BlobStore, job_id: str, manifest: RepoManifest) -> RepoManifest:
    """Read and parse every file of the manifest: the whole-repository index. O(repository).

    Packed files are read a window of the pack at a time (for most repositories the whole
    pack in one read) and sliced; files of older jobs, one blob each, are read on a pool.
    The index keeps each file's pack offset, so it can serve reads as the manifest does.
    """
    limit = parse_limit(manifest)
    packed = [path for path, info in manifest.files.items() if info.offset is not None]
    loose = [path for path, info in manifest.files.items() if info.offset is None]
    modules: list[ModuleInfo] = []

    def add(path: str, data: bytes) -> None:
        # Parsing stays on this thread: it is CPU work, and more threads only fight for
        # the GIL with the requests being served.
        module = index_module(path, data, max_bytes=limit)
        modules.append(module.model_copy(update={"offset": manifest.files[path].offset}))

    for start, window in _pack_windows(manifest, packed):
        last = manifest.files[window[-1]]
        assert last.offset is not None  # for the type checker: only packed files are here
        try:
            data = blobs.get_range(pack_key(job_id), start, last.offset + last.size - start)
        except BlobNotFound as exc:
            raise StorageError(
                f"Job {job_id} is READY but its stored files are missing (deleted or "
                "expired). Start a new job with POST /analyze/start."
            ) from exc
        view = memoryview(data)
        for path in window:
            info = manifest.files[path]
            offset = (info.offset or 0) - start
            add(path, bytes(view[offset : offset + info.size]))
    if loose:
        with ThreadPoolExecutor(INDEX_READ_WORKERS, thread_name_prefix="index-read") as pool:
            for first in range(0, len(loose), _INDEX_READ_CHUNK):
                chunk = loose[first : first + _INDEX_READ_CHUNK]
                contents = pool.map(lambda path: read_source(blobs, job_id, manifest, path), chunk)
                for path, data in zip(chunk, contents, strict=True):
                    add(path, data)
    indexed = build_manifest(job_id, manifest.commit, modules)
    return indexed.model_copy(update={"parse_max_bytes": manifest.parse_max_bytes})


def _load_function_index(
    blobs: BlobStore, job_id: str, manifest: RepoManifest
) -> tuple[RepoManifest, int]:
    """The job's indexed manifest and its size in bytes: stored, else built and stored."""
    if manifest.functions_indexed:  # fetched before lazy indexing: the manifest is the index
        functions = sum(len(module.functions) for module in manifest.files.values())
        return manifest, _JSON_BYTES_PER_ENTRY * (functions + len(manifest.files))
    key = index_key(job_id)
    try:
        data = blobs.get(key)
    except BlobNotFound:
        pass
    else:
        try:
            stored = RepoManifest.model_validate_json(data)
        except ValueError:  # not what this code writes (an older or foreign format): rebuild
            log.warning("job %s: stored function index is unreadable; rebuilding it", job_id)
        else:
            if stored.functions_indexed:
                return stored, len(data)
    indexed = build_function_index(blobs, job_id, manifest)
    data = indexed.model_dump_json().encode()
    try:
        blobs.put(key, data)
    except StorageError as exc:
        # A read-only store (a role that may not write) still gets its answer; the index is
        # then rebuilt by each process that needs it.
        log.warning("job %s: could not store the function index: %s", job_id, exc.message)
    return indexed, len(data)


def load_function_index(blobs: BlobStore, job_id: str, manifest: RepoManifest) -> RepoManifest:
    """Return the job's whole-repository index (an indexed manifest).

    Read from ``index.json`` when some process built it before; else every file is read and
    parsed once and the result stored there (best effort) for the next one.
    """
    return _load_function_index(blobs, job_id, manifest)[0]


class _JobFiles:
    """``ModuleSource`` for one job of a ``ManifestCache``: parses files as they are asked for."""

    def __init__(self, cache: ManifestCache, job_id: str, manifest: RepoManifest) -> None:
        self._cache = cache
        self._job_id = job_id
        self._manifest = manifest

    def module(self, path: str) -> ModuleInfo:
        return self._cache.module(self._job_id, self._manifest, path)

    def full(self) -> FullIndex:
        return self._cache.full_index(self._job_id, self._manifest)


class ManifestCache:
    """Per job: the manifest, the files looked at (parsed) and the whole-repository index.

    A READY job's blobs never change, so nothing here is ever stale. Each of the three LRUs is
    bounded by entries and by bytes, counted as stored JSON (or source) bytes; in memory the
    parsed objects take about four to five times that. For scale, the benchmark's large
    repository (1,681 files, 12,477 functions) has a 0.36 MB manifest of paths and a 1.4 MB
    index, which holds about 7 MB in memory with its lookup tables.
    """

    def __init__(
        self,
        blobs: BlobStore,
        max_entries: int = 64,
        *,
        max_manifest_bytes: int = 16 * 2**20,
        max_indexes: int = 8,
        max_index_bytes: int = 16 * 2**20,
        max_files: int = 2048,
        max_file_bytes: int = 16 * 2**20,
    ) -> None:
        self._blobs = blobs
        self._manifests: _Lru[str, RepoManifest] = _Lru(max_entries, max_manifest_bytes)
        self._indexes: _Lru[str, FullIndex] = _Lru(max_indexes, max_index_bytes)
        self._files: _Lru[tuple[str, str], _File] = _Lru(max_files, max_file_bytes)
        self._lock = threading.Lock()
        self._builds: dict[str, threading.Lock] = {}

    # -- loading (blocking: call from a worker thread)

    def manifest(self, job_id: str) -> RepoManifest:
        """Return the job's manifest, read from the blob store on first use."""
        cached = self._manifests.get(job_id)
        if cached is not None:
            return cached
        try:
            data = self._blobs.get(manifest_key(job_id))
        except BlobNotFound as exc:
            raise StorageError(
                f"Job {job_id} is READY but its stored files are missing (deleted or expired). "
                "Start a new job with POST /analyze/start."
            ) from exc
        manifest = RepoManifest.model_validate_json(data)
        self._manifests.put(job_id, manifest, len(data))
        return manifest

    def read(self, job_id: str, path: str) -> bytes:
        """Return one stored file's bytes (kept with its parse result while cached)."""
        cached = self._files.get((job_id, path))
        if cached is not None:
            return cached.data
        file = _File(read_source(self._blobs, job_id, self.manifest(job_id), path))
        self._files.put((job_id, path), file, file.weight)
        return file.data

    def module(self, job_id: str, manifest: RepoManifest, path: str) -> ModuleInfo:
        """Return one file's parse result: from the index if it is loaded, else parsed once."""
        index = self._indexes.get(job_id)
        if index is not None:
            return index.module(path)
        cached = self._files.get((job_id, path))
        if cached is not None and cached.module is not None:
            return cached.module
        data = (
            cached.data if cached is not None else read_source(self._blobs, job_id, manifest, path)
        )
        file = _File(data, index_module(path, data, max_bytes=parse_limit(manifest)))
        self._files.put((job_id, path), file, file.weight)
        assert file.module is not None  # for the type checker: set just above
        return file.module

    def full_index(self, job_id: str, manifest: RepoManifest) -> FullIndex:
        """Return the job's whole-repository index, loading or building it once per job."""
        index = self._indexes.get(job_id)
        if index is not None:
            return index
        # One build per job at a time: a second caller waits for the first one's result
        # instead of parsing the repository again.
        with self._lock:
            build = self._builds.setdefault(job_id, threading.Lock())
        try:
            with build:
                index = self._indexes.get(job_id)
                if index is None:
                    indexed, size = _load_function_index(self._blobs, job_id, manifest)
                    index = FullIndex(indexed)
                    self._indexes.put(job_id, index, size)
        finally:
            with self._lock:
                self._builds.pop(job_id, None)
        return index

    def function_index(self, job_id: str) -> FunctionIndex:
        """Return a ``FunctionIndex`` over the job's files (make one per request: it is cheap)."""
        manifest = self.manifest(job_id)
        source: ModuleSource
        if manifest.functions_indexed:
            source = self.full_index(job_id, manifest)  # no IO: the manifest is the index
        else:
            source = _JobFiles(self, job_id, manifest)
        return FunctionIndex(manifest, source)

    def locate(self, job_id: str, function_name: str) -> tuple[str, FunctionInfo, bytes]:
        """Resolve ``function_name`` in the job; return its path, its entry and the file."""
        path, info = self.function_index(job_id).resolve(function_name)
        return path, info, self.read(job_id, path)

    # -- async front (each call runs its blocking work in a worker thread)

    async def get(self, job_id: str) -> RepoManifest:
        """Return the job's manifest, from memory when it was loaded before."""
        return await anyio.to_thread.run_sync(self.manifest, job_id)

    async def dotted_names(self, job_id: str) -> list[str]:
        """Every dotted function name of the job (builds its whole index on first need)."""
        return await anyio.to_thread.run_sync(lambda: self.function_index(job_id).dotted_names())


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
    path, info, data = await anyio.to_thread.run_sync(ctx.manifests.locate, job_id, name)
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
