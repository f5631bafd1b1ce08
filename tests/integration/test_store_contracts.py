"""One contract per port, run against every adapter of it, plus each adapter's own promises.

BlobStore: a local folder, S3 in-process (moto ``mock_aws``) and S3 over HTTP (a moto server on
127.0.0.1). JobStore and ReviewCache: SQLite, DynamoDB in-process and DynamoDB over HTTP. If a
case passes for one adapter and fails for another, the use cases would behave differently in
embedded and AWS mode: that is the bug these tests exist to catch.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from botocore.response import StreamingBody
from moto import mock_aws

from functions.adapters.aws import (
    TTL_ATTRIBUTE,
    DynamoJobStore,
    DynamoReviewCache,
    LambdaDispatcher,
    S3BlobStore,
)
from functions.adapters.cache import SqliteReviewCache
from functions.adapters.local import LocalFolderBlobStore, SqliteJobStore
from functions.core.errors import BlobNotFound, StateConflict, StorageError
from functions.core.models import Job, JobProgress, JobStats, JobStatus, SkippedFile
from functions.core.ports import BlobStore, JobStore, ReviewCache
from tests.support.aws import (
    create_dummy_function,
    dynamodb_client,
    lambda_client,
    moto_server,
    s3_client,
    unused_endpoint,
    use_dummy_credentials,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
LEASE = timedelta(minutes=2)
REPO = "https://github.com/octo/repo"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region for every test, so nothing can reach a real account."""
    use_dummy_credentials(monkeypatch)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 for this module (started on first use), stopped at the end."""
    with moto_server() as url:
        yield url


def _unique(name: str) -> str:
    # The server outlives single tests, so every test gets its own bucket and table.
    return f"{name}-{uuid.uuid4().hex[:12]}"


@contextmanager
def _s3(endpoint: str | None) -> Iterator[tuple[S3Client, str]]:
    client = s3_client(endpoint)
    bucket = _unique("blobs")
    try:
        client.create_bucket(Bucket=bucket)
        yield client, bucket
    finally:
        client.close()


@contextmanager
def _dynamo(endpoint: str | None) -> Iterator[tuple[DynamoDBClient, str]]:
    client = dynamodb_client(endpoint)
    table = _unique("jobs")
    try:
        DynamoJobStore.create_table(client, table)
        yield client, table
    finally:
        client.close()


@pytest.fixture
def s3_mock() -> Iterator[tuple[S3Client, str]]:
    """An S3 client and an empty bucket, in-process moto."""
    with mock_aws(), _s3(None) as pair:
        yield pair


@pytest.fixture
def s3_server(moto_endpoint: str) -> Iterator[tuple[S3Client, str]]:
    """An S3 client and an empty bucket on the moto server."""
    with _s3(moto_endpoint) as pair:
        yield pair


@pytest.fixture
def dynamo_mock() -> Iterator[tuple[DynamoDBClient, str]]:
    """A DynamoDB client and a fresh jobs table, in-process moto."""
    with mock_aws(), _dynamo(None) as pair:
        yield pair


@pytest.fixture
def dynamo_server(moto_endpoint: str) -> Iterator[tuple[DynamoDBClient, str]]:
    """A DynamoDB client and a fresh jobs table on the moto server."""
    with _dynamo(moto_endpoint) as pair:
        yield pair


@pytest.fixture(params=["local", "s3-mock", "s3-server"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Every BlobStore adapter in turn, empty."""
    if request.param == "local":
        return LocalFolderBlobStore(tmp_path / "blobs")
    if request.param == "s3-mock":
        client, bucket = request.getfixturevalue("s3_mock")
        return S3BlobStore(client, bucket)
    client, bucket = request.getfixturevalue("s3_server")
    return S3BlobStore(client, bucket, prefix="tenant")  # a prefix must not change the contract


@pytest.fixture(params=["sqlite", "dynamo-mock", "dynamo-server"])
def job_store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    """Every JobStore adapter in turn, empty."""
    if request.param == "sqlite":
        return SqliteJobStore(tmp_path / "state" / "jobs.sqlite3")
    client, table = request.getfixturevalue(
        "dynamo_mock" if request.param == "dynamo-mock" else "dynamo_server"
    )
    return DynamoJobStore(client, table)


@contextmanager
def _cache_table(endpoint: str | None) -> Iterator[tuple[DynamoDBClient, str]]:
    client = dynamodb_client(endpoint)
    table = _unique("cache")
    try:
        DynamoReviewCache.create_table(client, table)
        yield client, table
    finally:
        client.close()


@pytest.fixture
def cache_mock() -> Iterator[tuple[DynamoDBClient, str]]:
    """A DynamoDB client and a fresh review-cache table, in-process moto."""
    with mock_aws(), _cache_table(None) as pair:
        yield pair


@pytest.fixture
def cache_server(moto_endpoint: str) -> Iterator[tuple[DynamoDBClient, str]]:
    """A DynamoDB client and a fresh review-cache table on the moto server."""
    with _cache_table(moto_endpoint) as pair:
        yield pair


ReviewCacheFactory = Callable[[float], ReviewCache]


@pytest.fixture(params=["sqlite", "dynamo-mock", "dynamo-server"])
def review_cache(request: pytest.FixtureRequest, tmp_path: Path) -> ReviewCacheFactory:
    """Every ReviewCache adapter in turn, empty: call it with the entries' lifetime (seconds)."""
    if request.param == "sqlite":
        return lambda ttl: SqliteReviewCache(tmp_path / "cache.sqlite3", ttl_seconds=ttl)
    client, table = request.getfixturevalue(
        "cache_mock" if request.param == "dynamo-mock" else "cache_server"
    )
    return lambda ttl: DynamoReviewCache(client, table, ttl_seconds=ttl)


def full_job(job_id: str) -> Job:
    """A job with every field set to something other than its default."""
    return Job(
        job_id=job_id,
        repo_url=REPO,
        status=JobStatus.READY,
        version=4,
        created_at=NOW,
        updated_at=NOW + timedelta(seconds=42),
        started_at=NOW + timedelta(seconds=1),
        finished_at=NOW + timedelta(seconds=42),
        lease_expires_at=NOW + LEASE,
        attempts=2,
        error_code="git_failed",
        error_message='first attempt: "remote hung up" - ünïcode kept',
        progress=JobProgress(phase="storing", done=7, total=9),
        stats=JobStats(
            commit="0123456789abcdef0123456789abcdef01234567",
            files_in_repo=120,
            python_files=9,
            bytes_stored=4096,
            functions=31,
            unparsable_files=1,
            skipped=[SkippedFile(path="big/ünï.py", reason="larger than 1 MiB")],
            clone_seconds=1.25,
            total_seconds=3.5,
        ),
    )


# --- BlobStore contract -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("repos/j/files/empty.py", b""),
        ("repos/j/files/blob.bin", bytes(range(256)) * 64),
        ("repos/j/files/pkg/ünï.py", "print('ünï')\r\n\x00tail".encode()),
    ],
    ids=["empty", "binary", "unicode-key"],
)
def test_blob_round_trips_bytes_exactly(blob_store: BlobStore, key: str, data: bytes) -> None:
    blob_store.put(key, b"an older version")
    blob_store.put(key, data)

    assert blob_store.get(key) == data


def test_blob_get_of_missing_key_raises_blob_not_found(blob_store: BlobStore) -> None:
    blob_store.put("repos/j/files/present.py", b"x")

    with pytest.raises(BlobNotFound):
        blob_store.get("repos/j/files/absent.py")


def test_blob_delete_prefix_removes_only_that_prefix(blob_store: BlobStore) -> None:
    for key, data in [
        ("repos/a/files/x.py", b"1"),
        ("repos/a/manifest.json", b"2"),
        ("repos/ab/files/y.py", b"3"),
        ("repos/b/files/z.py", b"4"),
    ]:
        blob_store.put(key, data)

    assert blob_store.delete_prefix("repos/a/") == 2
    assert blob_store.delete_prefix("repos/a/") == 0

    for gone in ("repos/a/files/x.py", "repos/a/manifest.json"):
        with pytest.raises(BlobNotFound):
            blob_store.get(gone)
    assert blob_store.get("repos/ab/files/y.py") == b"3"
    assert blob_store.get("repos/b/files/z.py") == b"4"
    # A prefix is a string prefix, as in S3, not a folder name.
    assert blob_store.delete_prefix("repos/a") == 1
    assert blob_store.get("repos/b/files/z.py") == b"4"


PACK = bytes(range(256)) * 40 + "ünï\r\n".encode()


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 10), (1000, 2560), (len(PACK) - 9, 9), (0, len(PACK)), (500, 0), (len(PACK), 0)],
    ids=["start", "middle", "end", "whole", "zero-length", "zero-length-at-end"],
)
def test_blob_get_range_returns_exactly_those_bytes(
    blob_store: BlobStore, start: int, length: int
) -> None:
    blob_store.put("repos/j/sources.pack", PACK)

    assert blob_store.get_range("repos/j/sources.pack", start, length) == PACK[start:][:length]


@pytest.mark.parametrize("length", [0, 5])
def test_blob_get_range_of_missing_key_raises_blob_not_found(
    blob_store: BlobStore, length: int
) -> None:
    blob_store.put("repos/j/present.pack", b"x")

    with pytest.raises(BlobNotFound):
        blob_store.get_range("repos/j/absent.pack", 0, length)


def test_blob_get_range_past_the_end_is_storage_error(blob_store: BlobStore) -> None:
    blob_store.put("repos/j/sources.pack", b"0123456789")

    with pytest.raises(StorageError) as caught:
        blob_store.get_range("repos/j/sources.pack", 5, 6)
    assert not isinstance(caught.value, BlobNotFound)
    with pytest.raises(ValueError, match="start and length"):
        blob_store.get_range("repos/j/sources.pack", -1, 2)


def test_blob_put_stream_stores_the_concatenation(blob_store: BlobStore) -> None:
    chunks = (bytes([i]) * 1000 for i in range(200))

    assert blob_store.put_stream("repos/j/sources.pack", chunks) == 200_000
    assert blob_store.put_stream("repos/j/empty.pack", iter([])) == 0

    assert blob_store.get("repos/j/sources.pack") == b"".join(bytes([i]) * 1000 for i in range(200))
    assert blob_store.get_range("repos/j/sources.pack", 199_000, 1000) == bytes([199]) * 1000
    assert blob_store.get("repos/j/empty.pack") == b""


def test_blob_put_stream_that_fails_midway_stores_nothing(blob_store: BlobStore) -> None:
    blob_store.put("repos/j/sources.pack", b"the old pack")

    def chunks() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("the reader broke")

    with pytest.raises(RuntimeError):
        blob_store.put_stream("repos/j/sources.pack", chunks())
    with pytest.raises(RuntimeError):
        blob_store.put_stream("repos/j/new.pack", chunks())

    assert blob_store.get("repos/j/sources.pack") == b"the old pack"
    with pytest.raises(BlobNotFound):
        blob_store.get("repos/j/new.pack")


# --- JobStore contract ------------------------------------------------------------------------


def test_job_round_trip_preserves_every_field(job_store: JobStore) -> None:
    job = full_job("job-full")

    job_store.create(job)
    stored = job_store.get("job-full")

    assert stored == job
    assert stored is not None
    for moment in (stored.created_at, stored.updated_at, stored.started_at):
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)


def test_job_create_twice_raises_state_conflict(job_store: JobStore) -> None:
    job_store.create(Job.new("job-1", REPO, NOW))

    with pytest.raises(StateConflict, match="already exists"):
        job_store.create(Job.new("job-1", "https://github.com/other/repo", NOW))
    assert job_store.get("job-1") == Job.new("job-1", REPO, NOW)


def test_job_replace_with_next_version_succeeds(job_store: JobStore) -> None:
    job = Job.new("job-1", REPO, NOW)
    job_store.create(job)

    fetching = job.start_fetch(NOW, LEASE)
    job_store.replace(fetching)
    beat = fetching.heartbeat(NOW + LEASE / 2, LEASE, JobProgress(phase="storing", done=1))
    job_store.replace(beat)

    assert job_store.get("job-1") == beat
    assert beat.version == 3


def test_job_replace_with_stale_version_loses_and_changes_nothing(job_store: JobStore) -> None:
    job_store.create(Job.new("job-1", REPO, NOW))
    # Two workers read the same version 1 ...
    first = job_store.get("job-1")
    second = job_store.get("job-1")
    assert first is not None
    assert second is not None

    # ... the first writes version 2, so the second's version 2 is stale.
    winner = first.start_fetch(NOW, LEASE)
    job_store.replace(winner)
    with pytest.raises(StateConflict, match="another worker"):
        job_store.replace(second.mark_failed(NOW, "git_failed", "lost the race"))

    assert job_store.get("job-1") == winner


def test_job_replace_of_missing_job_raises_state_conflict(job_store: JobStore) -> None:
    with pytest.raises(StateConflict, match="does not exist"):
        job_store.replace(Job.new("job-404", REPO, NOW).start_fetch(NOW, LEASE))
    assert job_store.get("job-404") is None


def test_job_concurrent_replace_has_exactly_one_winner(job_store: JobStore) -> None:
    base = Job.new("job-1", REPO, NOW)
    job_store.create(base)
    start = threading.Barrier(8)
    winners: list[Job] = []
    losers: list[StateConflict] = []
    others: list[BaseException] = []

    def worker(n: int) -> None:
        attempt = base.start_fetch(NOW, LEASE).model_copy(
            update={"progress": JobProgress(phase="cloning", done=n)}
        )
        start.wait()
        try:
            job_store.replace(attempt)
            winners.append(attempt)
        except StateConflict as exc:
            losers.append(exc)
        except BaseException as exc:  # surfaced below instead of dying in the thread
            others.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert others == []
    assert (len(winners), len(losers)) == (1, 7)
    assert job_store.get("job-1") == winners[0]


def test_job_list_unfinished_returns_queued_and_fetching_only(job_store: JobStore) -> None:
    for job_id in ("queued", "fetching", "ready", "failed"):
        job_store.create(Job.new(job_id, REPO, NOW))
    fetching = Job.new("fetching", REPO, NOW).start_fetch(NOW, LEASE)
    job_store.replace(fetching)
    ready = Job.new("ready", REPO, NOW).start_fetch(NOW, LEASE)
    job_store.replace(ready)
    job_store.replace(ready.mark_ready(NOW, JobStats()))
    job_store.replace(Job.new("failed", REPO, NOW).mark_failed(NOW, "repo_not_found", "gone"))

    unfinished = job_store.list_unfinished(10)

    assert sorted(job.job_id for job in unfinished) == ["fetching", "queued"]
    assert fetching in unfinished
    assert len(job_store.list_unfinished(1)) == 1
    assert job_store.list_unfinished(0) == []


def test_job_get_of_missing_job_returns_none(job_store: JobStore) -> None:
    assert job_store.get("no-such-job") is None


# --- ReviewCache contract ---------------------------------------------------------------------

WEEK = 7 * 24 * 3600.0


def test_review_cache_miss_is_none(review_cache: ReviewCacheFactory) -> None:
    cache = review_cache(WEEK)
    cache.put("other-key", ["x"])

    assert cache.get("a" * 64) is None


@pytest.mark.parametrize(
    "suggestions",
    [["[docs] Line 1: add a docstring.", '[typing] ünïcode, "quotes" and\nnewlines'], []],
    ids=["two", "none"],
)
def test_review_cache_round_trips_suggestions_in_order(
    review_cache: ReviewCacheFactory, suggestions: list[str]
) -> None:
    cache = review_cache(WEEK)

    cache.put("k" * 64, suggestions)

    assert cache.get("k" * 64) == suggestions


def test_review_cache_put_replaces_the_entry(review_cache: ReviewCacheFactory) -> None:
    cache = review_cache(WEEK)
    cache.put("key", ["old"])

    cache.put("key", ["new", "newer"])

    assert cache.get("key") == ["new", "newer"]


def test_review_cache_entry_past_its_lifetime_is_a_miss(review_cache: ReviewCacheFactory) -> None:
    expired = review_cache(0)
    expired.put("key", ["stale"])

    assert expired.get("key") is None


def test_dynamo_review_cache_item_has_the_ttl_attribute(
    cache_mock: tuple[DynamoDBClient, str],
) -> None:
    client, table = cache_mock
    cache = DynamoReviewCache(client, table, ttl_seconds=3600, clock=lambda: 1_000_000.5)

    cache.put("key", ["a"])

    item = client.get_item(TableName=table, Key={"cache_key": {"S": "key"}})["Item"]
    assert item[TTL_ATTRIBUTE] == {"N": "1003600"}  # whole seconds, rounded down
    assert json.loads(item["suggestions"]["S"]) == ["a"]
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl.get("TimeToLiveStatus") == "ENABLED"
    assert ttl.get("AttributeName") == TTL_ATTRIBUTE


def test_dynamo_review_cache_ignores_an_expired_item_dynamodb_has_not_deleted_yet(
    cache_mock: tuple[DynamoDBClient, str],
) -> None:
    # DynamoDB's TTL deletes expired items within days, not at once.
    client, table = cache_mock
    now = [1_000_000.0]
    cache = DynamoReviewCache(client, table, ttl_seconds=60, clock=lambda: now[0])
    cache.put("key", ["a"])
    assert cache.get("key") == ["a"]

    now[0] += 61

    assert cache.get("key") is None


def test_dynamo_review_cache_missing_table_is_storage_error(
    cache_mock: tuple[DynamoDBClient, str],
) -> None:
    client, _ = cache_mock
    cache = DynamoReviewCache(client, "no-such-table")

    with pytest.raises(StorageError, match="no-such-table") as caught:
        cache.get("key")
    assert isinstance(caught.value.__cause__, ClientError)
    with pytest.raises(StorageError, match="PutItem"):
        cache.put("key", ["a"])


# --- LocalFolderBlobStore ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["../x", "repos/../../x", "/etc/passwd", "repos/j/\x00.py", "", "repos//x", "repos\\..\\x"],
)
def test_local_blob_store_refuses_keys_that_could_escape_the_root(tmp_path: Path, key: str) -> None:
    store = LocalFolderBlobStore(tmp_path / "blobs")

    with pytest.raises(ValueError, match="blob key"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="blob key"):
        store.get(key)
    assert not (tmp_path / "x").exists()


def test_local_blob_store_refuses_prefixes_that_could_escape_the_root(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_bytes(b"keep me")
    store = LocalFolderBlobStore(tmp_path / "blobs")

    with pytest.raises(ValueError, match="blob prefix"):
        store.delete_prefix("../")
    assert (tmp_path / "outside.txt").read_bytes() == b"keep me"


def test_local_blob_store_failed_write_keeps_the_old_blob_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalFolderBlobStore(tmp_path)
    store.put("repos/j/files/a.py", b"old")

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("functions.adapters.local.os.replace", broken_replace)
    with pytest.raises(StorageError, match="No space left"):
        store.put("repos/j/files/a.py", b"new")
    monkeypatch.undo()

    assert store.get("repos/j/files/a.py") == b"old"
    assert [p.name for p in (tmp_path / "repos/j/files").iterdir()] == ["a.py"]


def test_local_blob_store_delete_prefix_prunes_empty_folders(tmp_path: Path) -> None:
    store = LocalFolderBlobStore(tmp_path)
    store.put("repos/j/files/pkg/a.py", b"a")
    store.put("repos/k/b.py", b"b")

    assert store.delete_prefix("repos/j/") == 1

    assert not (tmp_path / "repos" / "j").exists()
    assert store.get("repos/k/b.py") == b"b"


# --- SqliteJobStore ---------------------------------------------------------------------------


def test_sqlite_job_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first, second = SqliteJobStore(path), SqliteJobStore(path)
    job = Job.new("job-1", REPO, NOW)

    first.create(job)
    fetching = job.start_fetch(NOW, LEASE)
    second.replace(fetching)

    assert first.get("job-1") == fetching
    with pytest.raises(StateConflict):
        first.replace(job.mark_failed(NOW, "git_failed", "stale"))


def test_sqlite_job_store_serves_another_process(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path)
    job = Job.new("job-1", REPO, NOW)
    store.create(job)
    script = (
        "import sys\n"
        "from datetime import datetime, timedelta\n"
        "from pathlib import Path\n"
        "from functions.adapters.local import SqliteJobStore\n"
        "store = SqliteJobStore(Path(sys.argv[1]))\n"
        "job = store.get('job-1')\n"
        "store.replace(job.start_fetch(job.created_at, timedelta(minutes=2)))\n"
    )

    subprocess.run(
        [sys.executable, "-c", script, str(path)],
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=60,
    )

    assert store.get("job-1") == job.start_fetch(NOW, LEASE)
    with pytest.raises(StateConflict):
        store.replace(job.start_fetch(NOW, LEASE))


def test_sqlite_job_store_uses_wal_and_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "jobs.sqlite3"
    SqliteJobStore(path).create(Job.new("job-1", REPO, NOW))

    conn = sqlite3.connect(path)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert mode == "wal"


def test_sqlite_job_store_reports_a_broken_file_as_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(b"this is not a database" * 100)

    with pytest.raises(StorageError, match=r"jobs\.sqlite3") as caught:
        SqliteJobStore(path).get("job-1")
    assert caught.value.__cause__ is not None


# --- S3BlobStore ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["put", "get", "delete_prefix", "get_range", "put_stream"])
def test_s3_store_turns_an_unreachable_endpoint_into_storage_error(operation: str) -> None:
    client = s3_client(unused_endpoint())
    store = S3BlobStore(client, "blobs")
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: store.put("k", b"x"),
        "get": lambda: store.get("k"),
        "delete_prefix": lambda: store.delete_prefix("repos/"),
        "get_range": lambda: store.get_range("k", 0, 1),
        "put_stream": lambda: store.put_stream("k", [b"x"]),
    }
    try:
        with pytest.raises(StorageError, match="s3://blobs/") as caught:
            calls[operation]()
    finally:
        client.close()

    assert not isinstance(caught.value, BlobNotFound)
    assert isinstance(caught.value.__cause__, BotoCoreError)
    assert "testing" not in caught.value.message  # the dummy secret never leaks


def test_s3_store_against_a_stopped_server_raises_storage_error() -> None:
    with moto_server() as url:
        client = s3_client(url)
        client.create_bucket(Bucket="blobs")
        store = S3BlobStore(client, "blobs")
        store.put("k", b"x")
    try:
        with pytest.raises(StorageError, match="GetObject"):
            store.get("k")
    finally:
        client.close()


def test_s3_store_missing_bucket_is_storage_error_not_blob_not_found(
    s3_mock: tuple[S3Client, str],
) -> None:
    client, _ = s3_mock
    store = S3BlobStore(client, "no-such-bucket")

    with pytest.raises(StorageError, match="NoSuchBucket") as caught:
        store.get("k")
    assert not isinstance(caught.value, BlobNotFound)
    assert isinstance(caught.value.__cause__, ClientError)


def test_s3_store_keeps_blobs_under_its_prefix(s3_mock: tuple[S3Client, str]) -> None:
    client, bucket = s3_mock
    client.put_object(Bucket=bucket, Key="elsewhere/x.py", Body=b"not ours")
    store = S3BlobStore(client, bucket, prefix="tenant")

    store.put("repos/j/a.py", b"a")

    keys = [o.get("Key", "") for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(keys) == ["elsewhere/x.py", "tenant/repos/j/a.py"]
    assert store.delete_prefix("") == 1
    assert [o.get("Key") for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == [
        "elsewhere/x.py"
    ]


def test_s3_store_deletes_more_than_one_batch(s3_mock: tuple[S3Client, str]) -> None:
    client, bucket = s3_mock
    store = S3BlobStore(client, bucket)
    for i in range(1001):
        store.put(f"repos/j/{i:04}.py", b"")
    batches: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(params["Delete"]["Objects"]))

    client.meta.events.register("provide-client-params.s3.DeleteObjects", count)
    assert store.delete_prefix("repos/j/") == 1001

    assert batches == [1000, 1]
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_store_ranged_read_is_one_get_with_a_range_and_zero_length_sends_none(
    s3_mock: tuple[S3Client, str],
) -> None:
    client, bucket = s3_mock
    store = S3BlobStore(client, bucket)
    store.put("repos/j/sources.pack", b"0123456789")
    sent: list[tuple[str, str | None]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, params.get("Range")))

    client.meta.events.register("provide-client-params.s3.*", record)

    assert store.get_range("repos/j/sources.pack", 3, 4) == b"3456"
    assert store.get_range("repos/j/sources.pack", 3, 0) == b""

    assert sent == [("GetObject", "bytes=3-6"), ("HeadObject", None)]


def test_s3_store_put_stream_to_a_missing_bucket_is_storage_error(
    s3_mock: tuple[S3Client, str],
) -> None:
    client, _ = s3_mock
    store = S3BlobStore(client, "no-such-bucket")

    with pytest.raises(StorageError, match="s3://no-such-bucket/") as caught:
        store.put_stream("k", [b"x"])
    assert not isinstance(caught.value, BlobNotFound)


# --- DynamoJobStore ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["dynamo_mock", "dynamo_server"])
def test_dynamo_item_layout_and_ttl(request: pytest.FixtureRequest, where: str) -> None:
    client, table = request.getfixturevalue(where)
    store = DynamoJobStore(client, table, ttl_days=3, clock=lambda: NOW)
    job = full_job("job-ttl")

    store.create(job)
    item = client.get_item(TableName=table, Key={"job_id": {"S": "job-ttl"}})["Item"]

    assert item["job_id"] == {"S": "job-ttl"}
    assert item["status"] == {"S": "READY"}
    assert item["version"] == {"N": "4"}
    assert item["updated_at"] == {"S": (NOW + timedelta(seconds=42)).isoformat()}
    assert int(item[TTL_ATTRIBUTE]["N"]) == int((NOW + timedelta(days=3)).timestamp())
    assert json.loads(item["body"]["S"])["job_id"] == "job-ttl"
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl.get("TimeToLiveStatus") == "ENABLED"
    assert ttl.get("AttributeName") == TTL_ATTRIBUTE


def test_dynamo_store_missing_table_is_storage_error(
    dynamo_mock: tuple[DynamoDBClient, str],
) -> None:
    client, _ = dynamo_mock
    store = DynamoJobStore(client, "no-such-table")

    with pytest.raises(StorageError, match="no-such-table") as caught:
        store.get("job-1")
    assert isinstance(caught.value.__cause__, ClientError)


# --- LambdaDispatcher -------------------------------------------------------------------------


@pytest.fixture
def lambda_mock() -> Iterator[LambdaClient]:
    """A Lambda client in-process, with a ``fetch`` function moto accepts (never runs)."""
    with mock_aws(config={"lambda": {"use_docker": False}}):
        client = lambda_client()
        try:
            create_dummy_function(client, "fetch")
            yield client
        finally:
            client.close()


def test_lambda_dispatcher_invokes_asynchronously_with_only_the_job_id(
    lambda_mock: LambdaClient,
) -> None:
    captured: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        captured.append(dict(params))

    lambda_mock.meta.events.register("provide-client-params.lambda.Invoke", capture)

    LambdaDispatcher(lambda_mock, "fetch").dispatch("job-1")

    assert len(captured) == 1
    assert captured[0]["FunctionName"] == "fetch"
    assert captured[0]["InvocationType"] == "Event"
    assert json.loads(captured[0]["Payload"]) == {"job_id": "job-1"}


def test_lambda_dispatcher_passes_the_batch_and_the_callers_correlation_id(
    lambda_mock: LambdaClient,
) -> None:
    from functions.core.correlation import correlation_id

    captured: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        captured.append(dict(params))

    lambda_mock.meta.events.register("provide-client-params.lambda.Invoke", capture)
    token = correlation_id.set("req-42")
    try:
        LambdaDispatcher(lambda_mock, "fetch").dispatch("job-1", 3)
    finally:
        correlation_id.reset(token)

    assert json.loads(captured[0]["Payload"]) == {
        "job_id": "job-1",
        "batch": 3,
        "correlation_id": "req-42",
    }


def test_lambda_dispatcher_missing_function_is_storage_error() -> None:
    # Without use_docker=False moto looks the function up (and answers 404) before it would
    # try Docker; the Docker-less mode accepts invokes of any name.
    with mock_aws():
        client = lambda_client()
        try:
            with pytest.raises(StorageError, match="could not start the fetch worker") as caught:
                LambdaDispatcher(client, "no-such-function").dispatch("job-1")
        finally:
            client.close()

    assert "ResourceNotFoundException" in caught.value.message
    assert isinstance(caught.value.__cause__, ClientError)


def test_lambda_dispatcher_refuses_a_status_other_than_202(lambda_mock: LambdaClient) -> None:
    def answer_200(**_: Any) -> tuple[SimpleNamespace, dict[str, Any]]:
        # A synchronous-style answer: the invoke ran, but not as the queued event we asked for.
        return SimpleNamespace(status_code=200), {
            "StatusCode": 200,
            "Payload": StreamingBody(BytesIO(b"{}"), 2),
        }

    # botocore uses a before-call handler's return value as the response (the stubs say None).
    lambda_mock.meta.events.register("before-call.lambda.Invoke", answer_200)  # type: ignore[arg-type]

    with pytest.raises(StorageError, match="answered 200, expected 202"):
        LambdaDispatcher(lambda_mock, "fetch").dispatch("job-1")
