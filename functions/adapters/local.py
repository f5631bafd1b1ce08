"""Adapters for one machine: blobs in a local folder, jobs in a SQLite file.

The embedded mode and local development use these instead of S3 and DynamoDB. They keep the
same contracts (``tests/integration/test_store_contracts.py`` runs one suite against both), so
the use cases cannot tell them apart.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from functions.core.errors import BlobNotFound, StateConflict, StorageError
from functions.core.models import Job, JobStatus

# Writers stage blobs under this name before renaming them into place; listings skip such
# files, and keys may not use the prefix, so a half-written blob is never taken for a real one.
_TEMP_PREFIX = ".tmp-blob-"


def _key_parts(key: str, *, what: str = "key") -> list[str]:
    """Split a blob key into path segments, refusing anything that could leave the root."""
    if "\x00" in key or "\\" in key:
        raise ValueError(f"blob {what} {key!r} contains a NUL byte or a backslash")
    if key.startswith("/"):
        raise ValueError(f"blob {what} {key!r} is absolute; use a relative key")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"blob {what} {key!r} has an empty, '.' or '..' segment")
        if part.startswith(_TEMP_PREFIX):
            raise ValueError(f"blob {what} {key!r} uses the reserved prefix {_TEMP_PREFIX!r}")
    return parts


def _check_range(start: int, length: int) -> None:
    if start < 0 or length < 0:
        raise ValueError(f"a blob range needs a start and length >= 0, not {start}, {length}")


class LocalFolderBlobStore:
    """Blobs as files under a root folder; key ``a/b/c.py`` is the file ``root/a/b/c.py``.

    Writes are atomic against readers (temporary file in the same folder, then ``os.replace``)
    but not fsynced: this store serves one machine, where a power cut losing the last few blobs
    only fails that fetch. Keys are checked lexically; a symlink planted inside the root is not
    guarded against, since only this service writes there.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        """The folder that holds the blobs."""
        return self._root

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*_key_parts(key))

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        self._write(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write the chunks one by one to a temporary file, then rename it to ``key``.

        Memory holds one chunk at a time; readers see the old blob (or none) until the rename.
        """
        return self._write(key, chunks)

    def _write(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        written = 0
        try:
            # A concurrent delete_prefix may remove the (then empty) folder between our mkdir
            # and mkstemp; one more try is enough because the folder is created again.
            for attempt in range(2):
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd, temp_name = tempfile.mkstemp(
                        dir=path.parent, prefix=_TEMP_PREFIX, suffix=".tmp"
                    )
                except FileNotFoundError:
                    if attempt:
                        raise
                    continue
                break
            try:
                with os.fdopen(fd, "wb") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
                        written += len(chunk)
                os.replace(temp_name, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
                raise
        except OSError as exc:
            raise StorageError(f"could not write blob {key!r} under {self._root}: {exc}") from exc
        return written

    def get(self, key: str) -> bytes:
        """Return the blob; raise BlobNotFound if there is none."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no blob {key!r} under {self._root}") from exc
        except OSError as exc:
            raise StorageError(f"could not read blob {key!r} under {self._root}: {exc}") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of the blob from ``start`` (open, seek, read)."""
        _check_range(start, length)
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                data = handle.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no blob {key!r} under {self._root}") from exc
        except OSError as exc:
            raise StorageError(f"could not read blob {key!r} under {self._root}: {exc}") from exc
        if len(data) != length:
            # S3 refuses such a range too: the caller's offsets do not match this blob.
            raise StorageError(
                f"blob {key!r} under {self._root} ends before bytes {start}+{length}"
            )
        return data

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many.

        The prefix is a plain string prefix, as in S3: ``repos/j`` also matches ``repos/j2/x``.
        """
        if "\x00" in prefix:
            raise ValueError(f"blob prefix {prefix!r} contains a NUL byte")
        # Only the folder named by the prefix's complete segments can hold matches.
        folder_key = prefix.rpartition("/")[0]
        top = (
            self._root.joinpath(*_key_parts(folder_key, what="prefix"))
            if folder_key
            else self._root
        )
        deleted = 0
        try:
            for key, path in self._walk(top):
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):  # a concurrent delete won
                        path.unlink()
                        deleted += 1
            self._prune_empty_folders(top)
        except OSError as exc:
            raise StorageError(
                f"could not delete blobs with prefix {prefix!r} under {self._root}: {exc}"
            ) from exc
        return deleted

    def _walk(self, top: Path) -> Iterator[tuple[str, Path]]:
        """Yield (key, path) for every finished blob under ``top``."""
        for folder, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(_TEMP_PREFIX):
                    continue
                path = Path(folder, name)
                yield path.relative_to(self._root).as_posix(), path

    def _prune_empty_folders(self, top: Path) -> None:
        """Remove folders left empty under ``top`` (and ``top``), never the root itself."""
        for folder, _dirs, _files in os.walk(top, topdown=False):
            path = Path(folder)
            if path != self._root:
                # Not empty (a writer got there first) or already gone: both are fine.
                with contextlib.suppress(OSError):
                    path.rmdir()


_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.FETCHING.value)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id     TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, updated_at);
"""


def _utc_text(moment: datetime) -> str:
    """Return a sortable UTC timestamp (naive datetimes are taken to be UTC already)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


class SqliteJobStore:
    """Jobs in one SQLite file, safe from many threads and from several processes.

    Each call opens its own connection (cheap next to the work a job does, and free of
    per-thread state that would outlive its thread); WAL lets readers run beside a writer, and
    a 5 s busy timeout makes concurrent writers queue instead of failing.
    """

    BUSY_TIMEOUT_SECONDS = 5.0

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._schema_ready = threading.Event()
        self._schema_lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """Yield an autocommit connection, closed afterwards; sqlite3 errors become StorageError."""
        try:
            self._ensure_schema()
            conn = sqlite3.connect(
                self._path, timeout=self.BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            try:
                yield conn
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StorageError(f"job database {self._path} failed: {exc}") from exc

    def _ensure_schema(self) -> None:
        if self._schema_ready.is_set():
            return
        with self._schema_lock:
            if self._schema_ready.is_set():
                return
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder for {self._path}: {exc}") from exc
            conn = sqlite3.connect(
                self._path, timeout=self.BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            try:
                # WAL is a property of the file: set once, every later connection uses it.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
            finally:
                conn.close()
            self._schema_ready.set()

    def create(self, job: Job) -> None:
        """Insert a new job; raise StateConflict if the id exists."""
        with self._connect() as conn:
            try:
                conn.execute(
                    "INSERT INTO jobs (job_id, status, version, updated_at, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    self._row(job),
                )
            except sqlite3.IntegrityError as exc:
                raise StateConflict(f"job {job.job_id} already exists") from exc

    def replace(self, job: Job) -> None:
        """Write ``job`` only if the stored version is ``job.version - 1``; else StateConflict."""
        expected = job.version - 1
        job_id, status, version, updated_at, body = self._row(job)
        with self._connect() as conn:
            # IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so the
            # check-and-write and the follow-up read for the message see one state.
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute(
                    "UPDATE jobs SET status = ?, version = ?, updated_at = ?, body = ?"
                    " WHERE job_id = ? AND version = ?",
                    (status, version, updated_at, body, job_id, expected),
                ).rowcount
                stored = (
                    None
                    if changed
                    else conn.execute(
                        "SELECT version FROM jobs WHERE job_id = ?", (job_id,)
                    ).fetchone()
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        if changed:
            return
        if stored is None:
            raise StateConflict(f"job {job_id} does not exist, so it cannot be replaced")
        raise StateConflict(
            f"job {job_id} is at version {stored[0]}, not {expected}: another worker changed it"
        )

    def get(self, job_id: str) -> Job | None:
        """Return the job, or None if there is no such job."""
        with self._connect() as conn:
            row = conn.execute("SELECT body FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row[0])

    def list_unfinished(self, limit: int) -> list[Job]:
        """Return up to ``limit`` QUEUED or FETCHING jobs, least recently updated first."""
        if limit <= 0:
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT body FROM jobs WHERE status IN (?, ?) ORDER BY updated_at LIMIT ?",
                (*_UNFINISHED, limit),
            ).fetchall()
        return [self._job(body) for (body,) in rows]

    @staticmethod
    def _row(job: Job) -> tuple[str, str, int, str, str]:
        return (
            job.job_id,
            job.status.value,
            job.version,
            _utc_text(job.updated_at),
            job.model_dump_json(),
        )

    def _job(self, body: str) -> Job:
        try:
            return Job.model_validate_json(body)
        except ValidationError as exc:
            raise StorageError(f"a job record in {self._path} is unreadable: {exc}") from exc
