"""HTTP plumbing shared by both services: error mapping in one place, health, request ids."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.core.correlation import correlation_id
from functions.core.errors import CodeReviewError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built on first use (a container), so nothing is built at import time."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None

    def get(self) -> T:
        """Return the value, building it the first time."""
        if self._value is None:
            self._value = self._build()
        return self._value

    @property
    def built(self) -> T | None:
        """The value if it was built, else None."""
        return self._value


OPENAI_PATH_PREFIX = "/v1/"


def error_body(request: Request, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Build the error body: ``{"code", "message", "details"?}``, OpenAI's shape under /v1."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    if request.url.path.startswith(OPENAI_PATH_PREFIX):
        # The openai package reads body["error"]["message"]; keep ours beside it.
        body["error"] = {"message": message, "type": code, "code": code, "param": None}
    return body


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    parts = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        message = str(err.get("msg", "invalid"))
        errors.append({"field": location, "message": message, "type": err.get("type")})
        parts.append(f"{location}: {message}")
    return "Invalid request: " + "; ".join(parts[:5]), errors


def build_app(*, title: str, description: str, lifespan: Any, container: Lazy[Any]) -> FastAPI:
    """A FastAPI app with the shared error mapping, request ids and a lazy container."""
    app = FastAPI(title=title, version="0.1.0", description=description, lifespan=lifespan)
    app.state.container = container
    register_exception_handlers(app)
    add_request_id(app)
    return app


def register_exception_handlers(app: FastAPI) -> None:
    """Map every known error to its status and a body with a stable code and a message."""

    @app.exception_handler(CodeReviewError)
    async def _known(request: Request, exc: CodeReviewError) -> JSONResponse:
        level = logging.WARNING if exc.http_status >= 500 else logging.INFO
        log.log(
            level, "%s %s -> %s %s", request.method, request.url.path, exc.http_status, exc.code
        )
        return JSONResponse(
            error_body(request, exc.code, exc.message, exc.details or None),
            status_code=exc.http_status,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, errors = _describe_validation(exc)
        return JSONResponse(
            error_body(request, "invalid_request", message, {"errors": errors}), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(request, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        log.exception("unexpected error, request id %s", request_id)
        return JSONResponse(
            error_body(
                request,
                "internal_error",
                f"Unexpected server error (request id {request_id}); it was logged. "
                "Retry, and report it with the request id if it persists.",
            ),
            status_code=500,
        )


def add_request_id(app: FastAPI) -> None:
    """Echo (or create) an X-Request-ID header on every response, for correlating logs."""

    @app.middleware("http")
    async def _request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = (request.headers.get("x-request-id") or uuid.uuid4().hex)[:128]
        token = correlation_id.set(request_id)
        try:
            response = await call_next(request)
        finally:
            correlation_id.reset(token)
        response.headers["x-request-id"] = request_id
        return response
