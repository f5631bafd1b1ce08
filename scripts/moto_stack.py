"""Create the bucket and tables template.yaml deploys, on a moto server (or any AWS endpoint).

The account-free way to run the AWS storage side on one machine (localstack/README.md):

    moto_server -H 127.0.0.1 -p 5000 &
    export AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_DEFAULT_REGION=us-east-1 \\
           AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    python scripts/moto_stack.py            # prints the settings to export, then:
    APP_MODE=aws FETCH_DISPATCH=inprocess JOBS_TABLE=... REPOS_BUCKET=... \\
        uvicorn functions.analysis.app:app --port 8000

It refuses to run without AWS_ENDPOINT_URL, so it never creates anything in a real account by
mistake. Existing resources are kept (running it twice is harmless).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.adapters.aws import DynamoJobStore, DynamoReviewCache
from functions.core.errors import StorageError


def _exists(exc: BaseException) -> bool:
    """Say whether ``exc`` (or its cause) reports that the resource is already there."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
    return code in ("ResourceInUseException", "BucketAlreadyOwnedByYou", "BucketAlreadyExists")


def main(argv: list[str]) -> int:
    """Create the resources and print the environment that uses them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="codereview-repos")
    parser.add_argument("--jobs-table", default="codereview-jobs")
    parser.add_argument("--cache-table", default="codereview-review-cache")
    args = parser.parse_args(argv)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        print(
            "Set AWS_ENDPOINT_URL to the moto server (e.g. http://127.0.0.1:5000).", file=sys.stderr
        )
        return 2
    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    try:
        try:
            s3.create_bucket(Bucket=args.bucket)
        except ClientError as exc:
            if not _exists(exc):
                raise
        for create, table in (
            (DynamoJobStore.create_table, args.jobs_table),
            (DynamoReviewCache.create_table, args.cache_table),
        ):
            try:
                create(dynamodb, table)
            except StorageError as exc:
                if not _exists(exc):
                    raise
    finally:
        s3.close()
        dynamodb.close()
    settings = {
        "AWS_ENDPOINT_URL": endpoint,
        "APP_MODE": "aws",
        "FETCH_DISPATCH": "inprocess",
        "REPOS_BUCKET": args.bucket,
        "JOBS_TABLE": args.jobs_table,
        "REVIEW_CACHE_TABLE": args.cache_table,
    }
    for name, value in settings.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
