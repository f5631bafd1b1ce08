"""The Lambda path in one process: the three handlers, their AWS calls on a moto server.

``LambdaStack`` is what the deployed stack is, minus AWS: API Gateway events (from
``tests/events``) go through the real Mangum handlers; S3, DynamoDB and Lambda calls go over HTTP
to a ``moto_server`` on 127.0.0.1; the asynchronous invoke of the fetch function is captured by
a botocore hook and delivered to ``functions.fetch_repo.handler.handler`` when the test says so,
with a Lambda context whose remaining time the test chooses. The analysis service reaches the
gateway over HTTP through an ``ApiGatewayShim``, as it reaches it through the deployed API.

Each test is one cold start: ``cold_start`` clears the process's cached settings and containers
and gives the apps fresh lazy containers, so the environment the test sets is the one read.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from functions.adapters.aws import DynamoJobStore, DynamoReviewCache
from functions.analysis import app as analysis_app
from functions.analysis import handler as analysis_handler
from functions.core import bootstrap
from functions.fetch_repo import handler as fetch_handler
from functions.gateway import app as gateway_app
from functions.gateway import handler as gateway_handler
from functions.web import Lazy
from tests.support.apigw import (
    ROUTES,
    ApiGatewayShim,
    FakeLambdaContext,
    Response,
    api_event,
    call,
)
from tests.support.aws import (
    create_dummy_function,
    dynamodb_client,
    lambda_client,
    s3_client,
    use_dummy_credentials,
)
from tests.support.services import clean_env

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

POWERTOOLS_SERVICES = ("analysis", "gateway", "fetch_repo")
"""The Powertools loggers of the three handlers (``observability(service)``)."""


def moto_config(endpoint: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read moto's configuration, after applying ``config`` when given (moto-api)."""
    url = f"{endpoint}/moto-api/config"
    response = httpx.post(url, json=config) if config is not None else httpx.get(url)
    response.raise_for_status()
    current: dict[str, Any] = response.json()
    return current


@contextmanager
def lambda_without_docker(endpoint: str) -> Iterator[None]:
    """Let the moto server accept invokes without running them (it has no Docker); restore."""
    before = moto_config(endpoint)
    moto_config(endpoint, {"lambda": {"use_docker": False}})
    try:
        yield
    finally:
        # The setting is process-wide: in-process mock_aws tests must get moto's default back.
        moto_config(endpoint, {"lambda": before.get("lambda", {})})


@dataclass
class Fault:
    """Make one AWS operation fail, ``times`` times, when ``when(params)`` holds."""

    service: str
    operation: str
    times: int = 1
    when: Callable[[dict[str, Any]], bool] = lambda params: True
    code: str = "InternalServerError"
    hits: int = 0


@dataclass
class LambdaStack:
    """One deployed stack's worth of state, on a moto server, for one test."""

    endpoint: str
    bucket: str
    jobs_table: str
    cache_table: str
    fetch_function: str
    lambda_tmp: Path
    shim: ApiGatewayShim
    invokes: list[dict[str, Any]] = field(default_factory=list)
    """Every Lambda Invoke call's parameters, in order (FunctionName, InvocationType, Payload)."""
    auto_deliver: bool = False
    """Deliver each captured invoke to the fetch handler at once, on a thread (as Lambda does)."""
    deliveries: list[threading.Thread] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- HTTP through API Gateway events ------------------------------------------------------

    def analysis(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Response:
        """Send one request to the analysis function's handler as an HTTP API event."""
        event = api_event(method, path, body=body, headers=headers, query=query)
        return call(analysis_handler.handler, event)

    def start(self, repo_url: str) -> str:
        """POST /analyze/start; return the job id."""
        response = self.analysis("POST", "/analyze/start", {"repo_url": repo_url})
        assert response.status == 200, response.body
        job_id = response.json()["job_id"]
        assert isinstance(job_id, str)
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /analyze/jobs/{job_id}."""
        response = self.analysis("GET", f"/analyze/jobs/{job_id}")
        assert response.status == 200, response.body
        job: dict[str, Any] = response.json()
        return job

    def review(self, job_id: str, function_name: str) -> Response:
        """POST /analyze/function."""
        return self.analysis(
            "POST", "/analyze/function", {"job_id": job_id, "function_name": function_name}
        )

    # -- the asynchronous invoke --------------------------------------------------------------

    def _capture(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.invokes.append(dict(params))
            if self.auto_deliver:
                event = json.loads(params["Payload"])
                thread = threading.Thread(target=self.deliver, args=(event,), daemon=True)
                self.deliveries.append(thread)
                thread.start()

    def payload(self, index: int = -1) -> dict[str, Any]:
        """The event of a captured invoke, as Lambda would hand it to the function."""
        with self._lock:
            invoke = self.invokes[index]
        event: dict[str, Any] = json.loads(invoke["Payload"])
        return event

    def deliver(self, event: dict[str, Any], timeout_seconds: float = 900.0) -> dict[str, Any]:
        """Run the fetch function's handler on ``event``, with ``timeout_seconds`` to live."""
        context = FakeLambdaContext(timeout_seconds=timeout_seconds, function_name="fetch-repo")
        result: dict[str, Any] = fetch_handler.handler(event, context)
        return result

    @contextmanager
    def api(self) -> Iterator[str]:
        """Serve the whole API on 127.0.0.1 as the deployed stack does; yield its URL.

        Requests are routed as template.yaml routes them (``ROUTES``) to the analysis or the
        gateway handler, and fetch invokes are delivered at once, so a client (the smoke test
        script, say) sees what it would see on AWS.
        """
        handlers = {
            "AnalysisFunction": analysis_handler.handler,
            "GatewayFunction": gateway_handler.handler,
        }

        def route(event: dict[str, Any], context: Any) -> Any:
            return handlers[ROUTES[event["routeKey"]]](event, context)

        async def close_analysis() -> None:
            # The analysis container was used on this shim's loop; close it there.
            if bootstrap.analysis_container.cache_info().currsize:
                await bootstrap.analysis_container().aclose()
                bootstrap.analysis_container.cache_clear()

        self.auto_deliver = True
        api = ApiGatewayShim(route, on_stop=close_analysis).start()
        try:
            yield api.url
        finally:
            for thread in list(self.deliveries):
                thread.join(timeout=60)
            api.stop()
            self.auto_deliver = False

    # -- faults -------------------------------------------------------------------------------

    def fail(self, fault: Fault) -> Fault:
        """Inject ``fault`` into the AWS calls of every client the process builds."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def _inject(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        # before-parameter-build: ``params`` are the operation's arguments, as the adapter
        # passed them; raising here fails the call before anything is sent (or retried).
        service = model.service_model.endpoint_prefix
        with self._lock:
            for fault in self.faults:
                if (
                    fault.service == service
                    and fault.operation == model.name
                    and fault.hits < fault.times
                    and fault.when(params)
                ):
                    fault.hits += 1
                    break
            else:
                return
        raise ClientError(
            {"Error": {"Code": fault.code, "Message": "injected by the test"}}, model.name
        )

    # -- direct access for setting up and checking ----------------------------------------------

    @contextmanager
    def s3(self) -> Iterator[S3Client]:
        """An S3 client on the moto server."""
        client = s3_client(self.endpoint)
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def dynamodb(self) -> Iterator[DynamoDBClient]:
        """A DynamoDB client on the moto server."""
        client = dynamodb_client(self.endpoint)
        try:
            yield client
        finally:
            client.close()

    def keys(self, prefix: str = "") -> list[str]:
        """Object keys in the bucket under ``prefix``."""
        with self.s3() as client:
            listing = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item.get("Key", "") for item in listing.get("Contents", []))


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the process's settings and containers, as a new Lambda container would."""
    bootstrap.settings_from_env.cache_clear()
    bootstrap.analysis_container.cache_clear()
    bootstrap.gateway_container.cache_clear()
    # The module-level apps hold their container in a Lazy once built; give them new ones.
    monkeypatch.setattr(
        analysis_app.app.state, "container", Lazy(bootstrap.analysis_container), raising=False
    )
    monkeypatch.setattr(
        gateway_app.app.state, "container", Lazy(bootstrap.gateway_container), raising=False
    )


def capture_json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send the handlers' Powertools log lines to the current ``sys.stdout`` (capsys sees it).

    Powertools binds its stream when the logger is made (at import); capsys swaps sys.stdout
    later, so the handlers' stream is pointed at the swapped one for this test.
    """
    import logging
    import sys

    for service in POWERTOOLS_SERVICES:
        for handler in logging.getLogger(service).handlers:
            if isinstance(handler, logging.StreamHandler):
                monkeypatch.setattr(handler, "stream", sys.stdout)


@contextmanager
def lambda_stack(
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
    tmp_path: Path,
    env: dict[str, str],
) -> Iterator[LambdaStack]:
    """Create the bucket, tables and fetch function on ``endpoint`` and wire the handlers to it.

    ``env`` adds to (or overrides) the variables template.yaml would set.
    """
    for name in set(os.environ) - set(clean_env({})):
        monkeypatch.delenv(name)  # the developer's own settings must not leak in
    use_dummy_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)

    bucket, jobs_table, cache_table = _unique("repos"), _unique("jobs"), _unique("cache")
    fetch_function = _unique("fetch-repo")
    s3, dynamodb, lambdas = (
        s3_client(endpoint),
        dynamodb_client(endpoint),
        lambda_client(endpoint),
    )
    try:
        s3.create_bucket(Bucket=bucket)
        DynamoJobStore.create_table(dynamodb, jobs_table)
        DynamoReviewCache.create_table(dynamodb, cache_table)
        create_dummy_function(lambdas, fetch_function, endpoint)
    finally:
        for client in (s3, dynamodb, lambdas):
            client.close()

    lambda_tmp = tmp_path / "lambda-tmp"
    lambda_tmp.mkdir()
    # The fetch function's /tmp: scratch clones and git's temporary files go here.
    monkeypatch.setattr("tempfile.tempdir", str(lambda_tmp))

    cold_start(monkeypatch)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # the analysis handler's Mangum runs on this thread's loop

    async def close_gateway() -> None:
        if bootstrap.gateway_container.cache_info().currsize:
            await bootstrap.gateway_container().aclose()

    shim = ApiGatewayShim(gateway_handler.handler, on_stop=close_gateway).start()
    stack = LambdaStack(
        endpoint=endpoint,
        bucket=bucket,
        jobs_table=jobs_table,
        cache_table=cache_table,
        fetch_function=fetch_function,
        lambda_tmp=lambda_tmp,
        shim=shim,
    )
    settings = {
        # What template.yaml sets (names from it) ...
        "APP_MODE": "aws",
        "JOBS_TABLE": jobs_table,
        "REPOS_BUCKET": bucket,
        "FETCH_FUNCTION_NAME": fetch_function,
        "REVIEW_CACHE_TABLE": cache_table,
        "LLM_GATEWAY_URL": f"{shim.url}/v1",
        # ... and what the tests need: their own git server, a fast failure.
        "ALLOWED_REPO_HOSTS": "127.0.0.1",
        "LLM_MAX_RETRIES": "0",
        **env,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    # Every boto3 client the handlers build comes from the default session: hook it before.
    session = boto3.session.Session()
    session.events.register("provide-client-params.lambda.Invoke", stack._capture)
    session.events.register("before-parameter-build", stack._inject)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    try:
        yield stack
    finally:
        shim.stop()
        try:
            if bootstrap.analysis_container.cache_info().currsize:
                loop.run_until_complete(bootstrap.analysis_container().aclose())
        finally:
            bootstrap.settings_from_env.cache_clear()
            bootstrap.analysis_container.cache_clear()
            bootstrap.gateway_container.cache_clear()
            loop.close()
            asyncio.set_event_loop(None)
