"""The AWS serverless path end to end, without AWS: what a deployed stack does, on one machine.

Given real API Gateway events (``sam local generate-event`` shapes) sent to the Mangum handlers,
S3 and DynamoDB on a moto server on 127.0.0.1 (real HTTP, AWS_ENDPOINT_URL), the asynchronous
invoke of the fetch function captured and delivered to its handler with a Lambda context, and
the gateway function reached over HTTP as through the deployed API: a user starts a job, the
job becomes READY and /analyze/function answers with suggestions. Duplicate deliveries, a fetch
that runs out of time, and S3 or DynamoDB failing each leave a correct, visible job state.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.gateway import handler as gateway_handler
from tests.support.apigw import Shape, api_event, call
from tests.support.aws import dynamodb_client, moto_server, s3_client
from tests.support.fake_llm import FakeLLM, digest
from tests.support.git_server import GitHttpServer
from tests.support.lambda_stack import (
    Fault,
    LambdaStack,
    capture_json_logs,
    lambda_stack,
    lambda_without_docker,
)
from tests.support.sample import sample_source
from tests.support.services import REPO_ROOT, Service, clean_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 for this module; it accepts Lambda invokes without Docker."""
    with moto_server() as url, lambda_without_docker(url):
        yield url


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path, fake_llm: FakeLLM
) -> Iterator[LambdaStack]:
    """A fresh stack (bucket, tables, function) and a cold start of every handler."""
    env = {
        "LLM_PROVIDER": "local",
        "LOCAL_LLM_BASE_URL": fake_llm.base_url,
        "LOCAL_LLM_MODEL": "fake-model",
        "FUNCTION_WAIT_SECONDS": "1",
    }
    with lambda_stack(monkeypatch, moto_endpoint, tmp_path, env) as created:
        yield created


def clones(server: GitHttpServer) -> int:
    """How many clones (ref advertisements) the git server answered."""
    return sum(1 for path in server.requests if "info/refs" in path)


# --- the happy path ---------------------------------------------------------------------------


def test_start_fetch_and_review_through_the_lambda_handlers(
    stack: LambdaStack, sample_repo_url: str, fake_llm: FakeLLM, git_server: GitHttpServer
) -> None:
    # Given a job started through the analysis function's handler, by a caller with a request id
    started = stack.analysis(
        "POST", "/analyze/start", {"repo_url": sample_repo_url}, headers={"X-Request-ID": "req-1"}
    )
    job_id = started.json()["job_id"]

    # Then the handler answered at once: the job is QUEUED and one async invoke was sent,
    # carrying the caller's request id on to the worker's logs
    assert started.status == 200
    assert stack.job(job_id)["status"] == "QUEUED"
    [invoke] = stack.invokes
    assert invoke["FunctionName"] == stack.fetch_function
    assert invoke["InvocationType"] == "Event"
    assert stack.payload() == {"job_id": job_id, "correlation_id": "req-1"}

    # When Lambda delivers the event to the fetch function
    result = stack.deliver(stack.payload())

    # Then the sources are in S3 as one pack plus the manifest (two objects, not one per
    # file), and the job is READY in DynamoDB
    assert result == {"job_id": job_id, "status": "READY"}
    keys = stack.keys(f"repos/{job_id}/")
    assert sorted(keys) == [f"repos/{job_id}/manifest.json", f"repos/{job_id}/sources.pack"]
    job = stack.job(job_id)
    assert job["status"] == "READY"
    assert job["attempts"] == 1
    assert job["stats"]["python_files"] == 6
    with stack.dynamodb() as dynamodb:
        item = dynamodb.get_item(TableName=stack.jobs_table, Key={"job_id": {"S": job_id}})
    assert item["Item"]["status"] == {"S": "READY"}
    assert int(item["Item"]["expires_at"]["N"]) > 0  # the TTL attribute is written

    # When the user asks for a review (analysis -> gateway over HTTP -> the model)
    response = stack.review(job_id, "module_name.add")

    # Then the spec's shape comes back, with the model's answer on the exact source
    assert response.status == 200, response.body
    body = response.json()
    assert list(body) == ["suggestions"]
    expected = sample_source("module_name.py", 1, 2)
    assert any(digest(expected) in s for s in body["suggestions"])
    assert [r.code for r in fake_llm.chat_requests()] == [expected]
    # The gateway was reached as a Lambda behind API Gateway, with an HTTP API event
    [gateway_event] = stack.shim.events
    assert gateway_event["routeKey"] == "ANY /v1/{proxy+}"
    assert gateway_event["rawPath"] == "/v1/chat/completions"

    # And the same review again is answered from the DynamoDB review cache
    again = stack.review(job_id, "module_name.add")
    assert again.status == 200
    assert again.json() == body
    assert len(fake_llm.chat_requests()) == 1
    with stack.dynamodb() as dynamodb:
        assert dynamodb.scan(TableName=stack.cache_table)["Count"] == 1

    # And the fetch left nothing in the function's /tmp
    assert list(stack.lambda_tmp.iterdir()) == []


def test_gateway_handler_serves_both_api_gateway_payload_formats(
    stack: LambdaStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The built-in reviewer: this test is about event shapes, not the model (the happy path
    # above reaches the model through the gateway function).
    monkeypatch.setenv("LLM_PROVIDER", "offline")
    for shape in Shape:
        # POST /analyze, the gateway's own review endpoint
        event = api_event(
            "POST", "/analyze", body={"function_code": "def add(a, b): return a + b"}, shape=shape
        )
        review = call(gateway_handler.handler, event)
        assert review.status == 200, (shape, review.body)
        assert review.headers["content-type"] == "application/json"
        suggestions = review.json()["suggestions"]
        assert suggestions
        assert all(isinstance(s, str) for s in suggestions)
        assert review.headers["x-review-provider"] == "offline"

        # GET /v1/models, the OpenAI-compatible listing
        models = call(gateway_handler.handler, api_event("GET", "/v1/models", shape=shape))
        assert models.status == 200, (shape, models.body)
        listing = models.json()
        assert listing["object"] == "list"
        assert [m["id"] for m in listing["data"]] == ["code-review"]


def test_handlers_log_json_with_the_correlation_id(
    stack: LambdaStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capture_json_logs(monkeypatch)

    # A caller's X-Request-ID is the correlation id ...
    missing = stack.analysis("GET", "/analyze/jobs/nope", headers={"X-Request-ID": "corr-42"})
    # ... else API Gateway's request id is
    event = api_event("GET", "/v1/models", request_id="apigw-request-7")
    models = call(gateway_handler.handler, event)

    assert missing.status == 404
    assert missing.json()["code"] == "job_not_found"
    assert missing.headers["x-request-id"] == "corr-42"
    assert models.headers["x-request-id"] == "apigw-request-7"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    requests = [line for line in lines if line.get("message") == "request"]
    assert [(r["service"], r["correlation_id"], r["status"]) for r in requests] == [
        ("analysis", "corr-42", 404),
        ("gateway", "apigw-request-7", 200),
    ]
    assert requests[0]["path"] == "/analyze/jobs/nope"
    assert requests[0]["function_request_id"]  # the Lambda context is in every line
    # The metrics are CloudWatch EMF lines on the same stream
    metrics = [line for line in lines if "_aws" in line]
    assert {"Requests", "Http4xx"} <= {m["Name"] for line in metrics for m in _emf(line)}


def _emf(line: dict[str, Any]) -> list[dict[str, str]]:
    return [m for block in line["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]]


# --- at-least-once delivery -------------------------------------------------------------------


def test_a_redelivered_fetch_event_does_nothing(
    stack: LambdaStack, sample_repo_url: str, git_server: GitHttpServer
) -> None:
    job_id = stack.start(sample_repo_url)
    event = stack.payload()
    before = clones(git_server)
    assert stack.deliver(event)["status"] == "READY"
    first = stack.job(job_id)

    # Lambda delivers the same event again (async invokes are at least once)
    again = stack.deliver(event)

    assert again == {"job_id": job_id, "status": "READY"}
    assert clones(git_server) == before + 1  # no second clone
    assert stack.job(job_id) == first  # not even updated_at moved
    assert first["attempts"] == 1


def test_two_concurrent_deliveries_of_one_event_fetch_once(
    stack: LambdaStack, sample_repo_url: str, git_server: GitHttpServer
) -> None:
    job_id = stack.start(sample_repo_url)
    event = stack.payload()
    before = clones(git_server)
    gate = threading.Barrier(2)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        gate.wait()
        try:
            results.append(stack.deliver(event))
        except BaseException as exc:  # surfaced below instead of dying in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == 2
    job = stack.job(job_id)
    assert job["status"] == "READY"
    assert job["attempts"] == 1
    assert clones(git_server) == before + 1
    assert list(stack.lambda_tmp.iterdir()) == []


def test_an_invalid_fetch_event_is_dropped_without_a_retry(stack: LambdaStack) -> None:
    # Raising would make Lambda retry an event that can never succeed.
    assert stack.deliver({"job_id": "../../etc"}) == {"status": "invalid_event"}
    assert stack.deliver({"unexpected": 1}) == {"status": "invalid_event"}


# --- running out of time ----------------------------------------------------------------------


def test_a_fetch_without_time_left_fails_the_job_cleanly(
    stack: LambdaStack, sample_repo_url: str, git_server: GitHttpServer
) -> None:
    job_id = stack.start(sample_repo_url)
    before = clones(git_server)

    # The event arrives with less time left than the fetch keeps back to record its outcome
    result = stack.deliver(stack.payload(), timeout_seconds=5)

    assert result == {"job_id": job_id, "status": "FAILED"}
    assert clones(git_server) == before  # git never started
    job = stack.job(job_id)
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "fetch_timeout"
    refused = stack.review(job_id, "module_name.add")
    assert refused.status == 409
    assert refused.json()["code"] == "job_failed"
    assert "fetch_timeout" in refused.json()["message"]


def test_a_fetch_that_runs_out_of_time_mid_clone_is_stopped_and_recorded(
    stack: LambdaStack, fresh_git_server: GitHttpServer
) -> None:
    url = fresh_git_server.create_repo("slow/repo", {"m.py": "def f():\n    return 1\n"})
    job_id = stack.start(url)
    (stack.lambda_tmp / "fetch-killed-earlier").mkdir()  # what a killed invocation leaves
    fresh_git_server.delay_seconds = 3.0  # git is still waiting for the server ...

    # ... when the 0.6 s this invocation may spend (10.6 s left, 10 s kept back) are gone
    result = stack.deliver(stack.payload(), timeout_seconds=10.6)

    assert result == {"job_id": job_id, "status": "FAILED"}
    job = stack.job(job_id)
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "fetch_timeout"
    assert stack.keys(f"repos/{job_id}/") == []  # never READY without its files
    assert list(stack.lambda_tmp.iterdir()) == []  # the clone and the old leftover are gone


# --- S3 and DynamoDB failing ------------------------------------------------------------------


def test_s3_failing_during_the_upload_fails_the_job_visibly(
    stack: LambdaStack, sample_repo_url: str
) -> None:
    job_id = stack.start(sample_repo_url)
    with stack.s3() as s3:
        s3.delete_bucket(Bucket=stack.bucket)  # e.g. removed by hand, or a wrong REPOS_BUCKET

    result = stack.deliver(stack.payload())

    assert result == {"job_id": job_id, "status": "FAILED"}
    job = stack.job(job_id)
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "storage_unavailable"
    assert stack.bucket in job["error"]["message"]
    assert "NoSuchBucket" in job["error"]["message"]
    assert list(stack.lambda_tmp.iterdir()) == []


def test_dynamodb_failing_on_start_answers_503_with_a_body(
    stack: LambdaStack, sample_repo_url: str
) -> None:
    with stack.dynamodb() as dynamodb:
        dynamodb.delete_table(TableName=stack.jobs_table)

    response = stack.analysis("POST", "/analyze/start", {"repo_url": sample_repo_url})

    assert response.status == 503
    body = response.json()
    assert body["code"] == "storage_unavailable"
    assert stack.jobs_table in body["message"]
    assert "ResourceNotFoundException" in body["message"]
    assert stack.invokes == []  # no fetch was started for a job that was never recorded


def test_dynamodb_failing_when_the_fetch_starts_is_retried_by_lambda(
    stack: LambdaStack, sample_repo_url: str
) -> None:
    job_id = stack.start(sample_repo_url)
    fault = stack.fail(Fault("dynamodb", "GetItem", code="ProvisionedThroughputExceededException"))

    # The first delivery cannot read the job: the handler raises, so Lambda retries the event
    with pytest.raises(Exception, match="ProvisionedThroughputExceededException"):
        stack.deliver(stack.payload())

    assert fault.hits == 1
    assert stack.job(job_id)["status"] == "QUEUED"  # nothing half-done
    # Lambda's retry of the same event then fetches as usual
    assert stack.deliver(stack.payload())["status"] == "READY"
    assert stack.job(job_id)["attempts"] == 1


def test_dynamodb_failing_to_record_ready_never_shows_ready_without_success(
    stack: LambdaStack, sample_repo_url: str
) -> None:
    job_id = stack.start(sample_repo_url)

    def marks_ready(params: dict[str, Any]) -> bool:
        return bool(params.get("Item", {}).get("status") == {"S": "READY"})

    stack.fail(Fault("dynamodb", "PutItem", when=marks_ready, code="InternalServerError"))

    result = stack.deliver(stack.payload())

    assert result["status"] == "FAILED"
    job = stack.job(job_id)
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "storage_unavailable"
    assert "InternalServerError" in job["error"]["message"]


# --- the smoke test script users run against a deployed stack --------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="smoke_test.sh needs curl")
def test_smoke_test_script_passes_against_the_stack(
    stack: LambdaStack, sample_repo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One process plays both functions here, each on its own thread and event loop; with the
    # built-in reviewer the gateway keeps no model connections that one loop could hand another.
    monkeypatch.setenv("LLM_PROVIDER", "offline")
    with stack.api() as url:
        run = subprocess.run(
            ["bash", str(REPO_ROOT / "localstack" / "smoke_test.sh")],
            env={
                **clean_env({}),
                "API_URL": url,
                "REPO_URL": sample_repo_url,
                "FUNCTION": "module_name.add",
                "POLL_SECONDS": "0.2",
                "WAIT_SECONDS": "30",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "== smoke test passed" in run.stdout
    assert '"suggestions"' in run.stdout
    assert "status READY" in run.stdout
    [invoke] = stack.invokes
    assert invoke["InvocationType"] == "Event"


# --- the account-free local path: APP_MODE=aws under uvicorn, against moto_server -------------


def _exports(output: str) -> dict[str, str]:
    """The variables of ``export NAME=value`` lines."""
    pairs = (line.removeprefix("export ").split("=", 1) for line in output.splitlines())
    return {name: shlex.split(value)[0] for name, value in pairs}


def test_analysis_service_in_aws_mode_under_uvicorn_against_moto_server(
    moto_endpoint: str, sample_repo_url: str, tmp_path: Path
) -> None:
    # As localstack/README.md documents: scripts/moto_stack.py creates the bucket and tables
    # on moto_server; the analysis service keeps jobs and sources there and fetches in-process.
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    suffix = uuid.uuid4().hex[:8]
    names = ["--bucket", f"repos-{suffix}", "--jobs-table", f"jobs-{suffix}"]
    names += ["--cache-table", f"cache-{suffix}"]
    script = [sys.executable, str(REPO_ROOT / "scripts" / "moto_stack.py"), *names]
    created = subprocess.run(
        script, env=clean_env(aws), capture_output=True, text=True, timeout=60, check=True
    )
    again = subprocess.run(
        script, env=clean_env(aws), capture_output=True, text=True, timeout=60, check=True
    )
    assert again.stdout == created.stdout  # running it twice is harmless
    settings = _exports(created.stdout)
    assert settings["APP_MODE"] == "aws"
    gateway = Service(
        "functions.gateway.app:app",
        {"LLM_PROVIDER": "offline", "DATA_DIR": str(tmp_path / "gateway")},
        tmp_path / "gateway.log",
    )
    with gateway:
        analysis = Service(
            "functions.analysis.app:app",
            {
                **aws,
                **settings,
                "ALLOWED_REPO_HOSTS": "127.0.0.1",
                "LLM_GATEWAY_URL": f"{gateway.url}/v1",
                "FUNCTION_WAIT_SECONDS": "20",
                "DATA_DIR": str(tmp_path / "must-stay-empty"),
            },
            tmp_path / "analysis.log",
        )
        with analysis:
            started = httpx.post(
                f"{analysis.url}/analyze/start", json={"repo_url": sample_repo_url}
            )
            assert started.status_code == 200, started.text
            job_id = started.json()["job_id"]
            review = httpx.post(
                f"{analysis.url}/analyze/function",
                json={"job_id": job_id, "function_name": "module_name.add"},
                timeout=60,
            )
            assert review.status_code == 200, review.text + analysis.log_tail()
            assert review.json()["suggestions"]
            health = httpx.get(f"{analysis.url}/healthz").json()

    assert health["mode"] == "aws"
    # The job and the sources are in DynamoDB and S3 on the moto server, not on disk
    dynamodb, s3 = dynamodb_client(moto_endpoint), s3_client(moto_endpoint)
    try:
        item = dynamodb.get_item(TableName=settings["JOBS_TABLE"], Key={"job_id": {"S": job_id}})[
            "Item"
        ]
        listing = s3.list_objects_v2(Bucket=settings["REPOS_BUCKET"], Prefix=f"repos/{job_id}/")
    finally:
        dynamodb.close()
        s3.close()
    assert item["status"] == {"S": "READY"}
    keys = [entry.get("Key") for entry in listing.get("Contents", [])]
    assert f"repos/{job_id}/manifest.json" in keys
    assert not (tmp_path / "must-stay-empty").exists()
