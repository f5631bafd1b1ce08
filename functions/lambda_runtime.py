"""Lambda plumbing written once: Mangum + Powertools (JSON logs with a correlation id, tracing,
metrics) for the HTTP functions, and the same observability for the fetch worker.

Nothing is built at import time: the ASGI app is wrapped on the first invocation, and the
container behind it is built (once per warm container) on the first request that needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import utils as logging_utils

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


def observability(service: str) -> tuple[Logger, Tracer, Metrics]:
    """Powertools logger, tracer and metrics for ``service``; our loggers log through it."""
    logger = Logger(service=service)
    # The domain logs with the standard library; give those loggers Powertools' JSON format.
    logging_utils.copy_config_to_registered_loggers(source_logger=logger, include={"functions"})
    logging.getLogger("functions").setLevel(logger.log_level)
    return logger, Tracer(service=service), Metrics(namespace=NAMESPACE, service=service)


def _correlation_id(event: LambdaEvent) -> str | None:
    context = event.get("requestContext") or {}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    return headers.get("x-request-id") or context.get("requestId")


def http_handler(app: Any, service: str) -> Handler:
    """A Lambda handler serving ``app`` (an ASGI app) behind API Gateway (REST or HTTP API)."""
    logger, tracer, metrics = observability(service)
    adapters: list[Any] = []

    @metrics.log_metrics
    @tracer.capture_lambda_handler(capture_response=False)
    @logger.inject_lambda_context(log_event=False)
    def handler(event: LambdaEvent, context: Any) -> Any:
        correlation_id = _correlation_id(event)
        logger.set_correlation_id(correlation_id)
        if not adapters:
            from mangum import Mangum

            # lifespan off: Mangum would run it on every invocation; the container is cached.
            adapters.append(Mangum(app, lifespan="off"))
        response = adapters[0](event, context)
        if correlation_id and isinstance(response, dict):
            response.setdefault("headers", {})["x-request-id"] = correlation_id
        return response

    return handler
