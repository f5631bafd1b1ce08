"""The correlation id of the request being served, so one id follows a request everywhere.

Set by the HTTP layer (the caller's X-Request-ID, API Gateway's request id, or a new one) and
read by the adapters that call onwards: the gateway client sends it as X-Request-ID, and the
Lambda dispatcher puts it in the worker's event, so the logs of all three functions share it.
"""

from __future__ import annotations

from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
