"""API Gateway in tests: real event shapes for the Mangum handlers, and an HTTP front for them.

``api_event`` starts from the events ``sam local generate-event`` wrote (``tests/events``) and
sets what a request changes, so handlers get the structure API Gateway sends. ``call`` runs a
handler on one and decodes the answer. ``ApiGatewayShim`` is a tiny API Gateway on 127.0.0.1:
plain HTTP in, an HTTP API event through a Lambda handler, plain HTTP out (the analysis service
reaches the gateway function this way, as it does through the deployed API).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"

ROUTES: dict[str, str] = {
    "ANY /analyze/{proxy+}": "AnalysisFunction",
    "GET /healthz": "AnalysisFunction",
    "POST /analyze": "GatewayFunction",
    "ANY /v1/{proxy+}": "GatewayFunction",
}
"""The HTTP API's routes in template.yaml and the function each one invokes (a test keeps the two
in step)."""

LambdaHandler = Callable[[dict[str, Any], Any], Any]


class Shape(StrEnum):
    """Which API Gateway flavour sends the event."""

    HTTP_API = "http-api-proxy"
    """HTTP API, payload format 2.0 (what template.yaml deploys)."""
    REST_API = "aws-proxy"
    """REST API, payload format 1.0."""


@cache
def _sample(shape: Shape) -> dict[str, Any]:
    with (EVENTS_DIR / f"{shape.value}.json").open(encoding="utf-8") as handle:
        sample: dict[str, Any] = json.load(handle)
    return sample


def route_of(method: str, path: str) -> tuple[str, dict[str, str] | None]:
    """The template route that serves ``method path``, and its path parameters."""
    if path == "/analyze" and method == "POST":
        return "POST /analyze", None
    if path == "/healthz" and method == "GET":
        return "GET /healthz", None
    for prefix in ("/analyze/", "/v1/"):
        if path.startswith(prefix) and len(path) > len(prefix):
            return f"ANY {prefix}{{proxy+}}", {"proxy": path[len(prefix) :]}
    raise ValueError(f"template.yaml routes no {method} {path}; API Gateway would answer 404")


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    shape: Shape = Shape.HTTP_API,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway proxy event for one request; ``body`` may be JSON data, str or bytes."""
    route_key, path_parameters = route_of(method, path)
    raw_body: str | None
    if body is None:
        raw_body = None
    elif isinstance(body, bytes):
        raw_body = body.decode()
    elif isinstance(body, str):
        raw_body = body
    else:
        raw_body = json.dumps(body)
    all_headers = {"user-agent": "pytest", "x-forwarded-proto": "https"}
    if raw_body is not None:
        all_headers["content-type"] = "application/json"
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    request_id = request_id or uuid.uuid4().hex
    event = copy.deepcopy(_sample(shape))
    if shape is Shape.HTTP_API:
        _http_api(event, method, path, route_key, path_parameters, all_headers, query)
    else:
        _rest_api(event, method, path, route_key, path_parameters, all_headers, query)
    event["requestContext"]["requestId"] = request_id
    if raw_body is None:
        event.pop("body", None)
        if shape is Shape.REST_API:
            event["body"] = None  # the REST payload keeps the key
    else:
        event["body"] = raw_body
    event["isBase64Encoded"] = False  # API Gateway base64-encodes binary media types only
    return event


def _http_api(
    event: dict[str, Any],
    method: str,
    path: str,
    route_key: str,
    path_parameters: dict[str, str] | None,
    headers: dict[str, str],
    query: Mapping[str, str] | None,
) -> None:
    context = event["requestContext"]
    host = context["domainName"]
    event["routeKey"] = context["routeKey"] = route_key
    event["rawPath"] = context["http"]["path"] = path
    event["rawQueryString"] = urlencode(query or {})
    event["headers"] = {"host": host, **headers}  # HTTP APIs send header names in lower case
    context["http"]["method"] = method
    context["http"]["userAgent"] = headers["user-agent"]
    context["time"] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    context["timeEpoch"] = int(time.time() * 1000)
    # The sample invents a JWT authorizer, an mTLS certificate, cookies and stage variables;
    # the deployed API has none of them, so its events do not carry those keys.
    for key in ("authorizer", "authentication"):
        context.pop(key, None)
    for key in ("cookies", "stageVariables", "queryStringParameters", "pathParameters"):
        event.pop(key, None)
    if query:
        event["queryStringParameters"] = dict(query)
    if path_parameters:
        event["pathParameters"] = path_parameters


def _rest_api(
    event: dict[str, Any],
    method: str,
    path: str,
    route_key: str,
    path_parameters: dict[str, str] | None,
    headers: dict[str, str],
    query: Mapping[str, str] | None,
) -> None:
    context = event["requestContext"]
    resource = route_key.split(" ", 1)[1]
    event["resource"] = context["resourcePath"] = resource
    event["path"] = path
    context["path"] = f"/{context['stage']}{path}"
    event["httpMethod"] = context["httpMethod"] = method
    event["headers"] = dict(headers)
    event["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
    event["queryStringParameters"] = dict(query) if query else None
    event["multiValueQueryStringParameters"] = (
        {name: [value] for name, value in query.items()} if query else None
    )
    event["pathParameters"] = path_parameters
    event["stageVariables"] = None


@dataclass
class Response:
    """A handler's answer, decoded."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def decode(response: Mapping[str, Any]) -> Response:
    """Decode a proxy integration's response dict (both payload formats)."""
    headers = {k.lower(): str(v) for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), ", ".join(str(v) for v in values))
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
    return Response(int(response["statusCode"]), headers, body)


@dataclass
class FakeLambdaContext:
    """What Lambda passes as ``context``; its clock runs from creation to ``timeout_seconds``."""

    timeout_seconds: float = 300.0
    function_name: str = "codereview-test"
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN, as Lambda reports it."""
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop this invocation."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def call(handler: LambdaHandler, event: dict[str, Any], timeout_seconds: float = 29.0) -> Response:
    """Invoke ``handler`` as Lambda would (fresh context) and decode its answer."""
    return decode(handler(event, FakeLambdaContext(timeout_seconds=timeout_seconds)))


class ApiGatewayShim:
    """Plain HTTP on 127.0.0.1 in, HTTP API events through ``handler``, plain HTTP out.

    One thread serves every request, with its own asyncio event loop, as one warm Lambda
    container would; ``on_stop`` (a coroutine factory) runs on that loop before it closes.
    """

    def __init__(
        self,
        handler: LambdaHandler,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._handler = handler
        self._on_stop = on_stop
        self.events: list[dict[str, Any]] = []
        """Every event sent to the handler, in order."""
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the shim is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        """Start serving in a background thread."""
        shim = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0, one request per connection: a kept-alive idle connection would hold
            # the one serving thread (and shutdown) forever.
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

            def _proxy(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                split = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers.pop("content-length", None)
                event = api_event(
                    self.command,
                    split.path,
                    body=body,
                    headers=headers,
                    query=dict(parse_qsl(split.query)),
                )
                shim.events.append(event)
                answer = call(shim._handler, event)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    if name not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _proxy

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._serve, name="apigw-shim", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._server is not None
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # Mangum runs each request on the thread's loop
        try:
            self._server.serve_forever(poll_interval=0.05)
        finally:
            try:
                if self._on_stop is not None:
                    loop.run_until_complete(self._on_stop())
            finally:
                loop.close()
                asyncio.set_event_loop(None)

    def stop(self) -> None:
        """Stop serving, run ``on_stop`` and close the loop and the socket."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._server is not None:
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
