"""Lambda plumbing written once: Mangum + Powertools (JSON logs with a correlation id, tracing,
metrics) for the HTTP functions, and the same observability for the fetch worker.

Nothing is built at import time: the ASGI app is wrapped on the first invocation, and the
container behind it is built (once per warm container) on the first request that needs it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import utils as logging_utils
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "CodeReview"

LambdaEvent = dict[str, Any]


class LambdaContext(Protocol):
    """The parts of the Lambda context object we use."""

    aws_request_id: str
    function_name: str

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


Handler = Callable[[LambdaEvent, Any], Any]


class InvocationMetrics:
    """CloudWatch metrics (EMF lines) recorded per invocation, flushed when it ends.

    Powertools' ``Metrics`` keeps one metric set per process, shared by every instance: a
    handler's flush would then publish (and clear) what another handler running in the same
    process recorded. Each invocation here gets its own ``EphemeralMetrics``, so handlers never
    see each other's metrics, and an invocation that recorded nothing prints nothing.
    """

    def __init__(self, namespace: str, service: str) -> None:
        self.namespace = namespace
        self.service = service
        self._current: ContextVar[EphemeralMetrics | None] = ContextVar(
            f"metrics_{service}", default=None
        )

    def log_metrics(self, handler: Handler) -> Handler:
        """Decorate a Lambda handler: record its metrics, print them as EMF when it returns."""

        @functools.wraps(handler)
        def wrapper(event: LambdaEvent, context: Any) -> Any:
            metrics = EphemeralMetrics(namespace=self.namespace, service=self.service)
            token = self._current.set(metrics)
            try:
                return handler(event, context)
            finally:
                self._current.reset(token)
                if metrics.metric_set:
                    metrics.flush_metrics()

        return wrapper

    def add_metric(self, name: str, unit: MetricUnit | str, value: float) -> None:
        """Record a metric of the current invocation (inside a ``log_metrics`` handler)."""
        metrics = self._current.get()
        if metrics is None:
            raise RuntimeError("add_metric outside a handler decorated with log_metrics")
        metrics.add_metric(name=name, unit=unit, value=value)


def observability(service: str) -> tuple[Logger, Tracer, InvocationMetrics]:
    """Powertools logger, tracer and metrics for ``service``; our loggers log through it."""
    logger = Logger(service=service)
    # The domain logs with the standard library; give those loggers Powertools' JSON format.
    logging_utils.copy_config_to_registered_loggers(source_logger=logger, include={"functions"})
    logging.getLogger("functions").setLevel(logger.log_level)
    return logger, Tracer(service=service), InvocationMetrics(NAMESPACE, service)


def _correlation_id(event: LambdaEvent) -> str | None:
    context = event.get("requestContext") or {}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    value = headers.get("x-request-id") or context.get("requestId")
    # The caller chooses the header: bound what every log line of the request repeats.
    return str(value)[:128] if value else None


def _method_and_path(event: LambdaEvent) -> tuple[str, str]:
    """The request line of an HTTP API (payload 2.0) or REST API (1.0) event."""
    http = (event.get("requestContext") or {}).get("http") or {}
    method = http.get("method") or event.get("httpMethod") or "?"
    path = event.get("rawPath") or event.get("path") or "?"
    return str(method), str(path)


def http_handler(app: Any, service: str) -> Handler:
    """A Lambda handler serving ``app`` (an ASGI app) behind API Gateway (REST or HTTP API).

    Each invocation logs one JSON line (method, path, status, duration) with the correlation id
    (the caller's X-Request-ID, else API Gateway's request id, echoed as X-Request-ID) and
    counts Requests and Http4xx / Http5xx metrics for alarms.
    """
    logger, tracer, metrics = observability(service)
    adapters: list[Any] = []

    @metrics.log_metrics
    @tracer.capture_lambda_handler(capture_response=False)
    @logger.inject_lambda_context(log_event=False, clear_state=True)
    def handler(event: LambdaEvent, context: Any) -> Any:
        started = time.monotonic()
        correlation_id = _correlation_id(event)
        logger.set_correlation_id(correlation_id)
        if correlation_id:
            # The app's middleware takes the id from this header, so it is the one the app
            # passes on (to the gateway, to the worker) and echoes.
            event.setdefault("headers", {})
            if event["headers"] is None:
                event["headers"] = {}
            event["headers"]["x-request-id"] = correlation_id
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if not adapters:
            from mangum import Mangum

            # lifespan off: Mangum would run it on every invocation; the container is cached.
            adapters.append(Mangum(app, lifespan="off"))
        response = adapters[0](event, context)
        status = response.get("statusCode", 0) if isinstance(response, dict) else 0
        if correlation_id and isinstance(response, dict):
            response.setdefault("headers", {})["x-request-id"] = correlation_id
        if status >= 400:
            metrics.add_metric(name=f"Http{status // 100}xx", unit=MetricUnit.Count, value=1)
        method, path = _method_and_path(event)
        logger.info(
            "request",
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response

    return handler
