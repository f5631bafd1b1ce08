"""Chat models reached through the official ``openai`` package (OpenAI, DeepSeek, Ollama...).

The only module that talks to LLM providers. It asks for structured output in the form each
provider supports and translates the package's exceptions into our LLMError tree, marking which
faults are worth retrying. Secrets never appear in the messages it raises.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, cast

import openai
from openai import AsyncOpenAI

from functions.core.errors import (
    FunctionTooLarge,
    LLMError,
    ProviderBadResponse,
    ProviderNotConfigured,
    ProviderTimeout,
    ProviderUnavailable,
)
from functions.core.ports import ChatReply
from functions.core.review import redact_secrets


class StructuredOutput(StrEnum):
    """How a provider is asked for JSON."""

    JSON_SCHEMA = "json_schema"
    """A strict JSON schema in ``response_format`` (OpenAI; Ollama and llama.cpp accept it too)."""
    JSON_OBJECT = "json_object"
    """JSON mode; the prompt carries the word json and an example (DeepSeek)."""
    NONE = "none"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(parsed.timestamp() - time.time(), 0.0)


def _short(text: object, limit: int = 300) -> str:
    cleaned, _ = redact_secrets(" ".join(str(text).split()))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|size|window)|maximum context|too many tokens|prompt is too long", re.I
)


def translate_error(
    exc: openai.OpenAIError, provider: str, base_url: str
) -> LLMError | FunctionTooLarge:
    """Turn an ``openai`` exception into our error, saying which provider failed and why."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(
            f"{provider} did not answer in time.", provider=provider, retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(
            f"Could not connect to {provider} at {base_url}: {_short(exc.__cause__ or exc)}.",
            provider=provider,
            retryable=True,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _short(exc.message)
        details = {"upstream_status": status}
        if status == 429:
            return ProviderUnavailable(
                f"{provider} is rate limiting requests (429): {detail}",
                provider=provider,
                retryable=True,
                retry_after=_retry_after(exc.response.headers),
                details=details,
            )
        if status in (401, 403):
            return ProviderNotConfigured(
                f"{provider} refused the credentials ({status}). Check its API key setting.",
                provider=provider,
                details=details,
            )
        if status == 404:
            return ProviderNotConfigured(
                f"{provider} does not know the requested model or path (404): {detail}",
                provider=provider,
                details=details,
            )
        if status == 504 or status == 408:
            return ProviderTimeout(
                f"{provider} timed out ({status}).",
                provider=provider,
                retryable=True,
                details=details,
            )
        if status >= 500:
            cls = ProviderUnavailable if status in (502, 503) else ProviderBadResponse
            return cls(
                f"{provider} failed with {status}: {detail}",
                provider=provider,
                retryable=True,
                retry_after=_retry_after(exc.response.headers),
                details=details,
            )
        if status in (400, 413, 422) and _CONTEXT_RE.search(exc.message or ""):
            return FunctionTooLarge(
                f"The function does not fit {provider}'s context window ({detail}). Review a "
                "smaller function, or give the model a larger context (LLM_CONTEXT_TOKENS and "
                "the server's context size)."
            )
        return ProviderBadResponse(
            f"{provider} rejected the request ({status}): {detail}",
            provider=provider,
            details=details,
        )
    return ProviderBadResponse(f"{provider} answered badly: {_short(exc)}", provider=provider)


class OpenAIChatModel:
    """A provider's chat completions through ``openai.AsyncOpenAI``."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        base_url: str,
        api_key: str | None,
        structured: StructuredOutput,
        api_key_setting: str = "the API key",
        timeout: float = 25.0,
    ) -> None:
        self._provider = provider
        self._model = model
        self._base_url = base_url
        self._structured = structured
        self._missing_key = None if api_key else api_key_setting
        # Retries are ours (one budget across retries and fallbacks), so the client does none.
        self._client = AsyncOpenAI(
            api_key=api_key or "missing", base_url=base_url, max_retries=0, timeout=timeout
        )

    @property
    def provider(self) -> str:
        """The provider's name as in LLM_PROVIDER."""
        return self._provider

    @property
    def model(self) -> str:
        """The configured model."""
        return self._model

    @property
    def base_url(self) -> str:
        """Where the provider is reached."""
        return self._base_url

    def _check_configured(self) -> None:
        if self._missing_key is not None:
            raise ProviderNotConfigured(
                f"LLM_PROVIDER includes {self._provider}, but {self._missing_key} is not set.",
                provider=self._provider,
            )

    def _response_format(self, schema: dict[str, object] | None) -> dict[str, Any] | None:
        if schema is None or self._structured is StructuredOutput.NONE:
            return None
        if self._structured is StructuredOutput.JSON_OBJECT:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": "code_review", "strict": True, "schema": schema},
        }

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, object] | None,
        timeout: float,
    ) -> ChatReply:
        """Return the model's answer to ``messages``."""
        self._check_configured()
        body: dict[str, Any] = {"temperature": temperature}
        # OpenAI's newer models accept only max_completion_tokens; others know max_tokens.
        body["max_completion_tokens" if self._provider == "openai" else "max_tokens"] = max_tokens
        response_format = self._response_format(json_schema)
        if response_format is not None:
            body["response_format"] = response_format
        with self._translating():
            completion = await self._client.chat.completions.create(
                model=self._model,
                messages=cast(Any, list(messages)),
                stream=False,
                timeout=timeout,
                extra_body=body,
            )
        if not completion.choices:
            raise ProviderBadResponse(
                f"{self._provider} returned no choices.", provider=self._provider, retryable=True
            )
        choice = completion.choices[0]
        usage = completion.usage
        return ChatReply(
            content=choice.message.content,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def _split(self, body: Mapping[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
        rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        model = str(body.get("model") or "default")
        if model in ("default", self._provider):
            model = self._model
        return model, list(body.get("messages") or []), rest

    async def chat(self, body: Mapping[str, Any], *, timeout: float) -> bytes:
        """Pass an OpenAI chat completion request through; return the provider's JSON bytes.

        The answer is relayed as sent: building typed models of it only to serialise them
        again would add a millisecond to every pass-through call.
        """
        self._check_configured()
        model, messages, rest = self._split(body)
        with self._translating():
            raw = await self._client.chat.completions.with_raw_response.create(
                model=model, messages=messages, stream=False, timeout=timeout, extra_body=rest
            )
        content: bytes = raw.content
        if not content.lstrip().startswith(b"{"):
            raise ProviderBadResponse(
                f"{self._provider} answered with a body that is not JSON.", provider=self._provider
            )
        return content

    async def chat_stream(
        self, body: Mapping[str, Any], *, timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Pass a streaming chat completion through, chunk by chunk."""
        self._check_configured()
        model, messages, rest = self._split(body)
        with self._translating():
            stream = await self._client.chat.completions.create(
                model=model, messages=messages, stream=True, timeout=timeout, extra_body=rest
            )
        return self._chunks(stream)

    async def _chunks(self, stream: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            with self._translating():
                async for chunk in stream:
                    yield chunk.to_dict(mode="json")
        finally:
            await stream.close()

    @contextmanager
    def _translating(self) -> Iterator[None]:
        """Turn the client's exceptions into ours, naming this provider."""
        try:
            yield
        except openai.OpenAIError as exc:
            raise translate_error(exc, self._provider, self._base_url) from exc
        except ValueError as exc:  # a 200 whose body is not JSON (a proxy's error page...)
            raise ProviderBadResponse(
                f"{self._provider} answered with a body that is not JSON.",
                provider=self._provider,
                retryable=True,
            ) from exc

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()
