"""The LLM gateway: one place that talks to LLMs, speaking the OpenAI API.

``POST /analyze`` reviews a function. ``POST /v1/chat/completions`` serves the virtual model
``code-review`` (the same review pipeline, for OpenAI clients such as the analysis service) and
passes any other model through to the configured provider, streaming too.
``functions.gateway.app:app`` for uvicorn; ``create_app(container)`` for tests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.core.bootstrap import GatewayContainer, gateway_container
from functions.core.errors import CodeReviewError, InvalidInput
from functions.core.review import REVIEW_MODEL
from functions.core.reviewer import ReviewResult
from functions.web import Lazy, build_app

MAX_CODE_CHARS = 200_000


class AnalyzeRequest(BaseModel):
    """Body of POST /analyze."""

    function_code: str = Field(
        min_length=1, max_length=MAX_CODE_CHARS, examples=["def add(a, b): return a + b"]
    )


class AnalyzeResponse(BaseModel):
    """Review suggestions."""

    suggestions: list[str]


class ChatMessage(BaseModel):
    """One OpenAI chat message (content may be text or a list of parts)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, parts joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request; unknown fields are passed through to providers."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    review_context: str | None = Field(default=None, max_length=1000)


def _container(request: Request) -> GatewayContainer:
    lazy: Lazy[GatewayContainer] = request.app.state.container
    return lazy.get()


ContainerDep = Annotated[GatewayContainer, Depends(_container)]


def _review_headers(response: Response, result: ReviewResult) -> None:
    response.headers["x-review-provider"] = result.provider
    response.headers["x-review-model"] = result.model
    response.headers["x-review-cached"] = "true" if result.cached else "false"


def _completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _sse(data: dict[str, Any] | Literal["[DONE]"]) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


async def _review_chunks(content: str, model: str) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield _sse({**base, "choices": [first]})
    for start in range(0, len(content), 256):
        delta = {
            "index": 0,
            "delta": {"content": content[start : start + 256]},
            "finish_reason": None,
        }
        yield _sse({**base, "choices": [delta]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    yield _sse("[DONE]")


async def _passthrough_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield _sse(chunk)
    except CodeReviewError as exc:
        # Headers are sent; the error can only travel in the stream, as OpenAI does.
        yield _sse({"error": {"message": exc.message, "type": exc.code, "code": exc.code}})
    yield _sse("[DONE]")


def create_app(container: GatewayContainer | None = None) -> FastAPI:
    """Build the gateway app; without ``container`` it is built from the environment on use."""
    lazy = Lazy(lambda: container) if container is not None else Lazy(gateway_container)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if lazy.built is not None:
            await lazy.built.aclose()

    app = build_app(
        title="LLM gateway",
        description="Routes code reviews and OpenAI chat completions to the configured LLM.",
        lifespan=lifespan,
        container=lazy,
    )

    @app.get("/healthz")
    async def healthz(c: ContainerDep) -> dict[str, Any]:
        """Say the gateway is up and which providers it routes to."""
        chain = [m.provider if m else "offline" for m in c.reviewer.chain]
        return {"status": "ok", "service": "gateway", "providers": chain}

    @app.post("/analyze")
    async def analyze(body: AnalyzeRequest, response: Response, c: ContainerDep) -> AnalyzeResponse:
        """Review one function's source code."""
        result = await c.reviewer.review(body.function_code)
        _review_headers(response, result)
        return AnalyzeResponse(suggestions=result.suggestions)

    @app.get("/v1/models")
    async def models(c: ContainerDep) -> dict[str, Any]:
        """List the models this gateway serves (OpenAI format)."""
        names = [REVIEW_MODEL]
        names += [m.model for m in c.reviewer.chain if m is not None and m.model not in names]
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "codereview"}
                for name in names
            ],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, c: ContainerDep
    ) -> dict[str, Any] | Response:
        """OpenAI-compatible chat completions (``stream: true`` too)."""
        if body.model == REVIEW_MODEL:
            users = [m for m in body.messages if m.role == "user"]
            code = users[-1].text() if users else ""
            if not code.strip():
                raise InvalidInput("The code-review model needs the code as the last user message.")
            if len(code) > MAX_CODE_CHARS:
                raise InvalidInput(f"The code is longer than {MAX_CODE_CHARS} characters.")
            result = await c.reviewer.review(code, context=body.review_context)
            content = json.dumps({"suggestions": result.suggestions})
            headers = {
                "x-review-provider": result.provider,
                "x-review-model": result.model,
                "x-review-cached": "true" if result.cached else "false",
            }
            if body.stream:
                return StreamingResponse(
                    _review_chunks(content, REVIEW_MODEL),
                    media_type="text/event-stream",
                    headers=headers,
                )
            return JSONResponse(_completion(content, REVIEW_MODEL), headers=headers)
        if c.passthrough is None:
            raise InvalidInput(
                f"LLM_PROVIDER=offline serves only the {REVIEW_MODEL!r} model. Set LLM_PROVIDER "
                "to openai, deepseek or local to chat with other models."
            )
        payload = body.model_dump(exclude={"stream", "review_context"}, exclude_none=True)
        timeout = c.settings.llm_timeout_seconds
        if body.stream:
            chunks = await c.passthrough.chat_stream(payload, timeout=timeout)
            return StreamingResponse(_passthrough_chunks(chunks), media_type="text/event-stream")
        answer = await c.passthrough.chat(payload, timeout=timeout)
        return Response(content=answer, media_type="application/json")

    return app


app = create_app()
