"""Test helpers for the AWS adapters: dummy credentials, boto3 clients, a moto server.

Two ways to emulate AWS without Docker (see the environment notes): moto in-process
(``mock_aws``, which patches botocore) and a real HTTP server (``moto_server``) that clients
reach through ``endpoint_url``, as they would reach AWS.
"""

from __future__ import annotations

import socket
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
"""The account moto puts every resource in (its default)."""

# Fail fast: the tests talk to 127.0.0.1, where a retry cannot help and only slows a failure.
_FAST = Config(
    retries={"max_attempts": 1, "mode": "standard"},
    connect_timeout=2,
    read_timeout=10,
    max_pool_connections=16,
)


def use_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point boto3 at dummy credentials and away from the developer's own AWS setup."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    # An endpoint override from the shell would send "in-process" calls to a real server.
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_LAMBDA"):
        monkeypatch.delenv(name, raising=False)


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


def s3_client(endpoint_url: str | None = None) -> S3Client:
    """Return an S3 client (in-process moto when ``endpoint_url`` is None); close it after."""
    return _session().client("s3", endpoint_url=endpoint_url, config=_FAST)


def dynamodb_client(endpoint_url: str | None = None) -> DynamoDBClient:
    """Return a DynamoDB client (in-process moto when ``endpoint_url`` is None); close it after."""
    return _session().client("dynamodb", endpoint_url=endpoint_url, config=_FAST)


def lambda_client(endpoint_url: str | None = None) -> LambdaClient:
    """Return a Lambda client (in-process moto when ``endpoint_url`` is None); close it after."""
    return _session().client("lambda", endpoint_url=endpoint_url, config=_FAST)


@contextmanager
def moto_server() -> Iterator[str]:
    """Run a moto server on 127.0.0.1 (ephemeral port); yield its URL; stop it on exit.

    The server shares moto's in-memory state with ``mock_aws`` in this process, and
    ``mock_aws`` resets that state when it starts: create buckets and tables per test.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        # stop() shuts the loop down but leaves the listening socket open.
        if server._server is not None:
            server._server.server_close()


def unused_endpoint() -> str:
    """Return the URL of a 127.0.0.1 port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def create_dummy_function(client: LambdaClient, name: str, endpoint_url: str | None = None) -> str:
    """Create a Lambda function moto accepts (it never runs the code); return its ARN.

    moto checks that the execution role exists in IAM in its account, so one is created too;
    pass the moto server's ``endpoint_url`` when ``client`` talks to one.
    """
    # No IAM stubs are installed; the two calls below are all the tests need of IAM.
    iam: Any = _session().client("iam", endpoint_url=endpoint_url, config=_FAST)
    try:
        role = iam.create_role(
            RoleName=f"{name}-role",
            AssumeRolePolicyDocument=(
                '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                '"Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
            ),
        )
    finally:
        iam.close()
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("handler.py", "def handler(event, context):\n    return event\n")
    response = client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
    )
    return response["FunctionArn"]
