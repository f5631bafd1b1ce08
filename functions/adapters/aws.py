"""AWS adapters: blobs in S3, jobs and cached reviews in DynamoDB, workers started by Lambda.

The only module that touches boto3. Clients are passed in (built by the composition root, or by
tests against moto), never created here, and every SDK error leaves as one of ours:
``BlobNotFound``, ``StateConflict`` or ``StorageError`` naming the resource and the operation.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from functions.core.correlation import correlation_id
from functions.core.errors import BlobNotFound, StateConflict, StorageError
from functions.core.models import Job, JobStatus
from functions.core.ports import Clock

if TYPE_CHECKING:
    # Type stubs are a dev dependency; at run time these names are only annotations.
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

TTL_ATTRIBUTE = "expires_at"
"""The DynamoDB attribute that holds each job's expiry (epoch seconds); TTL must be on for it."""

_S3_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_SPOOL_MEMORY_BYTES = 8 * 2**20
"""A streamed upload is spooled in memory up to this size, then on disk (bounded memory)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: ClientError | BotoCoreError) -> str:
    """Say what the SDK reported: code and message of a service error, else the client error.

    Neither carries credentials: service messages do not echo keys, and botocore's own errors
    name the endpoint, not the signer.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "UnknownError"
        message = error.get("Message")
        return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"


def _create_table(client: DynamoDBClient, table: str, key: str) -> None:
    """Create an on-demand table keyed by ``key`` (a string), wait for it, turn on its TTL."""
    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"could not create DynamoDB table {table} ({_describe(exc)})") from exc


class S3BlobStore:
    """Blobs as objects in one S3 bucket, under an optional key prefix."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self._client = client
        self._bucket = bucket
        # A prefix names a folder; add the separator so "env1" cannot run into "env1x/...".
        self._prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"

    @property
    def bucket(self) -> str:
        """The bucket that holds the blobs."""
        return self._bucket

    def _key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def _failure(
        self, operation: str, target: str, exc: ClientError | BotoCoreError
    ) -> StorageError:
        if isinstance(exc, ClientError):
            operation = exc.operation_name or operation  # ListObjectsV2 or DeleteObjects
        return StorageError(
            f"S3 {operation} on s3://{self._bucket}/{self._key(target)} failed ({_describe(exc)})."
            " Check that the bucket exists and that this function may use it."
        )

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        try:
            self._client.put_object(Bucket=self._bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._failure("PutObject", key, exc) from exc

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Spool the chunks to a temporary file, then upload it with ``upload_fileobj``.

        The spool stays in memory up to ``_SPOOL_MEMORY_BYTES`` and moves to disk beyond, so a
        large repository never sits in memory whole; boto3 turns a large upload into a
        multipart one by itself. Nothing is stored if ``chunks`` raises.
        """
        written = 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES) as spool:
            for chunk in chunks:
                spool.write(chunk)
                written += len(chunk)
            spool.seek(0)
            try:
                self._client.upload_fileobj(spool, self._bucket, self._key(key))
            except S3UploadFailedError as exc:
                raise StorageError(
                    f"S3 upload to s3://{self._bucket}/{self._key(key)} failed ({exc})."
                    " Check that the bucket exists and that this function may use it."
                ) from exc
            except (ClientError, BotoCoreError) as exc:
                raise self._failure("PutObject", key, exc) from exc
        return written

    def get(self, key: str) -> bytes:
        """Return the blob; raise BlobNotFound if there is none."""
        return self._read(key, None)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` with one ranged GET (s3:GetObject only).

        A zero-length range cannot be written as an HTTP Range, so it is a HEAD instead: it
        still tells a missing blob apart from an empty answer.
        """
        if start < 0 or length < 0:
            raise ValueError(f"a blob range needs a start and length >= 0, not {start}, {length}")
        if length == 0:
            try:
                self._client.head_object(Bucket=self._bucket, Key=self._key(key))
            except ClientError as exc:
                if _error_code(exc) in ("NoSuchKey", "404"):
                    raise BlobNotFound(f"no blob s3://{self._bucket}/{self._key(key)}") from exc
                raise self._failure("HeadObject", key, exc) from exc
            except BotoCoreError as exc:
                raise self._failure("HeadObject", key, exc) from exc
            return b""
        data = self._read(key, f"bytes={start}-{start + length - 1}")
        if len(data) != length:
            # S3 cuts a range that runs past the end short: the offsets do not match the blob.
            raise StorageError(
                f"s3://{self._bucket}/{self._key(key)} ends before bytes {start}+{length}"
            )
        return data

    def _read(self, key: str, byte_range: str | None) -> bytes:
        try:
            if byte_range is None:
                response = self._client.get_object(Bucket=self._bucket, Key=self._key(key))
            else:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=self._key(key), Range=byte_range
                )
            with response["Body"] as body:
                return body.read()
        except ClientError as exc:
            # Without s3:ListBucket S3 answers AccessDenied instead, reported as StorageError.
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise BlobNotFound(f"no blob s3://{self._bucket}/{self._key(key)}") from exc
            raise self._failure("GetObject", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failure("GetObject", key, exc) from exc

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many."""
        full_prefix = self._key(prefix)
        deleted = 0
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self._bucket,
                Prefix=full_prefix,
                PaginationConfig={"PageSize": _S3_DELETE_BATCH},
            )
            # Deleting page by page is safe: the continuation token marks a key position, so
            # removing keys already listed does not make the listing skip any.
            for page in pages:
                keys = [item["Key"] for item in page.get("Contents", []) if "Key" in item]
                if keys:
                    deleted += self._delete_batch(keys)
        except (ClientError, BotoCoreError) as exc:
            raise self._failure("DeleteObjects", f"{prefix}*", exc) from exc
        return deleted

    def _delete_batch(self, keys: list[str]) -> int:
        response = self._client.delete_objects(
            Bucket=self._bucket,
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise StorageError(
                f"S3 DeleteObjects on s3://{self._bucket} could not delete {len(errors)} of "
                f"{len(keys)} objects (first: {first.get('Key')}: {first.get('Code')} "
                f"{first.get('Message', '')}). Retry the delete."
            )
        return len(keys)


class DynamoJobStore:
    """Jobs as items in one DynamoDB table, written with conditions on their version.

    Item: ``job_id`` (S, partition key), ``status`` (S), ``version`` (N), ``updated_at`` (S,
    ISO 8601 UTC), ``expires_at`` (N, epoch seconds, the table's TTL attribute: ``ttl_days``
    after the last write) and ``body`` (S, the whole job as JSON, the source of truth).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        ttl_days: int = 7,
        clock: Clock = _utc_now,
    ) -> None:
        if ttl_days < 1:
            raise ValueError("ttl_days must be at least 1")
        self._client = client
        self._table = table
        self._ttl = timedelta(days=ttl_days)
        self._clock = clock

    @property
    def table(self) -> str:
        """The table that holds the jobs."""
        return self._table

    @classmethod
    def create_table(cls, client: DynamoDBClient, table: str) -> None:
        """Create the jobs table (on-demand, key ``job_id``, TTL on ``expires_at``) and wait.

        For tests and local development; deployed stacks declare the same table in the template.
        """
        _create_table(client, table, "job_id")

    def _failure(
        self, operation: str, job_id: str, exc: ClientError | BotoCoreError
    ) -> StorageError:
        return StorageError(
            f"DynamoDB {operation} on table {self._table} for job {job_id} failed "
            f"({_describe(exc)}). Check that the table exists and that this function may use it."
        )

    def _item(self, job: Job) -> dict[str, AttributeValueTypeDef]:
        expires_at = int((self._clock() + self._ttl).timestamp())
        updated_at = job.updated_at
        if updated_at.tzinfo is None:  # naive datetimes are taken to be UTC already
            updated_at = updated_at.replace(tzinfo=UTC)
        return {
            "job_id": {"S": job.job_id},
            "status": {"S": job.status.value},
            "version": {"N": str(job.version)},
            "updated_at": {"S": updated_at.astimezone(UTC).isoformat()},
            TTL_ATTRIBUTE: {"N": str(expires_at)},
            "body": {"S": job.model_dump_json()},
        }

    def create(self, job: Job) -> None:
        """Insert a new job; raise StateConflict if the id exists."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(job),
                ConditionExpression="attribute_not_exists(job_id)",
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise StateConflict(f"job {job.job_id} already exists") from exc
            raise self._failure("PutItem", job.job_id, exc) from exc
        except BotoCoreError as exc:
            raise self._failure("PutItem", job.job_id, exc) from exc

    def replace(self, job: Job) -> None:
        """Write ``job`` only if the stored version is ``job.version - 1``; else StateConflict."""
        expected = job.version - 1
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(job),
                ConditionExpression="attribute_exists(job_id) AND #version = :expected",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":expected": {"N": str(expected)}},
                # The failed check then carries the stored item: no second read for the message.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise self._failure("PutItem", job.job_id, exc) from exc
            response = cast("Mapping[str, Any]", exc.response)  # stubs omit "Item"
            stored: Mapping[str, Any] | None = response.get("Item")
            if not stored:
                raise StateConflict(
                    f"job {job.job_id} does not exist, so it cannot be replaced"
                ) from exc
            version = stored.get("version", {}).get("N", "?")
            raise StateConflict(
                f"job {job.job_id} is at version {version}, not {expected}: "
                "another worker changed it"
            ) from exc
        except BotoCoreError as exc:
            raise self._failure("PutItem", job.job_id, exc) from exc

    def get(self, job_id: str) -> Job | None:
        """Return the job, or None if there is no such job."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                ConsistentRead=True,
                ProjectionExpression="body",
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._failure("GetItem", job_id, exc) from exc
        item = response.get("Item")
        return None if item is None else self._job(item)

    def list_unfinished(self, limit: int) -> list[Job]:
        """Return up to ``limit`` QUEUED or FETCHING jobs, in no particular order.

        A Scan reads the whole table (filters apply after reading), which suits crash recovery
        and operations on a table that TTL keeps small; a status index would be the next step.
        """
        jobs: list[Job] = []
        start: dict[str, Any] = {}
        while len(jobs) < limit:
            try:
                page = self._client.scan(
                    TableName=self._table,
                    FilterExpression="#status IN (:queued, :fetching)",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":queued": {"S": JobStatus.QUEUED.value},
                        ":fetching": {"S": JobStatus.FETCHING.value},
                    },
                    ProjectionExpression="body",
                    ConsistentRead=True,
                    **start,
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._failure("Scan", "(unfinished)", exc) from exc
            jobs.extend(self._job(item) for item in page.get("Items", []))
            last_key = page.get("LastEvaluatedKey")
            if not last_key:
                break
            start = {"ExclusiveStartKey": last_key}
        return jobs[: max(limit, 0)]

    def _job(self, item: Mapping[str, Any]) -> Job:
        try:
            return Job.model_validate_json(item["body"]["S"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise StorageError(f"a job item in table {self._table} is unreadable: {exc}") from exc


class DynamoReviewCache:
    """Finished reviews as items in one DynamoDB table, expiring after ``ttl_seconds``.

    Item: ``cache_key`` (S, partition key), ``suggestions`` (S, a JSON list) and ``expires_at``
    (N, epoch seconds, the table's TTL attribute). DynamoDB deletes expired items within a day
    or two, not at once, so ``get`` also treats an item past ``expires_at`` as a miss.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        ttl_seconds: float = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must not be negative")
        self._client = client
        self._table = table
        self._ttl = ttl_seconds
        self._clock = clock

    @classmethod
    def create_table(cls, client: DynamoDBClient, table: str) -> None:
        """Create the cache table (on-demand, key ``cache_key``, TTL on ``expires_at``) and wait.

        For tests and local development; deployed stacks declare the same table in the template.
        """
        _create_table(client, table, "cache_key")

    def _failure(self, operation: str, exc: ClientError | BotoCoreError) -> StorageError:
        return StorageError(
            f"DynamoDB {operation} on review cache table {self._table} failed ({_describe(exc)})."
            " Check that the table exists and that this function may use it."
        )

    def get(self, key: str) -> list[str] | None:
        """Return the cached suggestions, or None when absent or expired."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"cache_key": {"S": key}},
                ProjectionExpression="suggestions, expires_at",
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._failure("GetItem", exc) from exc
        item = response.get("Item")
        if item is None:
            return None
        try:
            expires_at = float(item[TTL_ATTRIBUTE]["N"])
            value = json.loads(item["suggestions"]["S"])
        except (KeyError, ValueError):
            return None  # an item we cannot read is a miss; the next put replaces it
        if expires_at <= self._clock() or not isinstance(value, list):
            return None
        return [str(suggestion) for suggestion in value]

    def put(self, key: str, suggestions: list[str]) -> None:
        """Remember ``suggestions`` for ``key``."""
        # Whole seconds, as DynamoDB's TTL wants them; rounding down keeps ttl_seconds an
        # upper bound (at most one second early, never late).
        expires_at = math.floor(self._clock() + self._ttl)
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "cache_key": {"S": key},
                    "suggestions": {"S": json.dumps(suggestions)},
                    TTL_ATTRIBUTE: {"N": str(expires_at)},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._failure("PutItem", exc) from exc


class LambdaDispatcher:
    """Starts the fetch worker with an asynchronous (``Event``) invoke of its Lambda function."""

    def __init__(self, client: LambdaClient, function_name: str) -> None:
        self._client = client
        self._function_name = function_name

    def dispatch(self, job_id: str, batch: int | None = None) -> None:
        """Queue the job (or one review batch) for the worker function; Lambda answers 202."""
        # Only ids travel: the worker reads everything else from the job store.
        event: dict[str, object] = {"job_id": job_id}
        if batch is not None:
            event["batch"] = batch
        request_id = correlation_id.get()
        if request_id:
            event["correlation_id"] = request_id  # the worker logs under the caller's id
        payload = json.dumps(event).encode()
        try:
            response = self._client.invoke(
                FunctionName=self._function_name, InvocationType="Event", Payload=payload
            )
            response["Payload"].close()  # empty for Event invokes, but still an open response
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"could not start the fetch worker (Lambda {self._function_name}: "
                f"{_describe(exc)}) for job {job_id}; retry, or check the function exists"
            ) from exc
        status = response.get("StatusCode")
        if status != 202:
            raise StorageError(
                f"could not start the fetch worker (Lambda {self._function_name} answered "
                f"{status}, expected 202) for job {job_id}"
            )
