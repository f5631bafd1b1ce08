"""The analysis service's reviewer: the LLM gateway, reached with the official ``openai`` client.

The analysis service stays model-agnostic: it asks the gateway's virtual ``code-review`` model,
and the gateway decides which provider answers. Gateway errors keep their code and message.
"""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI

from functions.core.correlation import correlation_id
from functions.core.errors import (
    FunctionTooLarge,
    InvalidInput,
    LLMError,
    ProviderBadResponse,
    ProviderTimeout,
    ProviderUnavailable,
)
from functions.core.models import FunctionSource
from functions.core.review import REVIEW_MODEL, ReviewParseError, parse_suggestions

_BY_STATUS: dict[int, type[LLMError]] = {
    502: ProviderBadResponse,
    503: ProviderUnavailable,
    504: ProviderTimeout,
}


class GatewayReviewer:
    """Reviews functions by asking the gateway's ``code-review`` model."""

    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self._base_url = base_url
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0
        )

    async def review(self, function: FunctionSource) -> list[str]:
        """Return the gateway's suggestions for ``function``."""
        try:
            request_id = correlation_id.get()
            completion = await self._client.chat.completions.create(
                model=REVIEW_MODEL,
                messages=[{"role": "user", "content": function.source}],
                extra_body={"review_context": f"{function.path}:{function.qualname}"},
                extra_headers={"x-request-id": request_id} if request_id else None,
            )
        except openai.APIStatusError as exc:
            raise self._from_gateway(exc) from exc
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(
                f"The LLM gateway at {self._base_url} did not answer in time.", provider="gateway"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnavailable(
                f"Could not reach the LLM gateway at {self._base_url} (LLM_GATEWAY_URL). "
                "Is it running?",
                provider="gateway",
            ) from exc
        content = completion.choices[0].message.content if completion.choices else None
        try:
            return parse_suggestions(content)
        except ReviewParseError as exc:
            raise ProviderBadResponse(
                f"The LLM gateway answered without suggestions: {exc}.", provider="gateway"
            ) from exc

    def _from_gateway(self, exc: openai.APIStatusError) -> Exception:
        body: Any = exc.body
        message = exc.message
        code: str | None = None
        if isinstance(body, dict):
            error = body.get("error")
            inner: dict[str, Any] = error if isinstance(error, dict) else body
            message = str(inner.get("message") or message)
            code = inner.get("code") if isinstance(inner.get("code"), str) else None
        if exc.status_code == 413 or code == FunctionTooLarge.code:
            return FunctionTooLarge(message)
        if exc.status_code in (400, 422):
            return InvalidInput(message)
        cls = _BY_STATUS.get(exc.status_code, ProviderBadResponse)
        return cls(message, provider="gateway", details={"gateway_code": code} if code else None)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()
