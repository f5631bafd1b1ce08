"""Use case: review a piece of code with the configured providers, dependably.

``CodeReviewer.review`` turns any chain of providers into well-formed suggestions or one clear
error: it refuses code too large for the context before any call, redacts secrets before code
leaves for a remote provider, answers repeats from a cache, retries transient faults with
backoff (honouring Retry-After) inside one time budget, repairs malformed output once, falls
back to the next provider, and merges static findings into every model answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from functions.core.errors import (
    CodeReviewError,
    FunctionTooLarge,
    LLMError,
    ProviderBadResponse,
    ProviderTimeout,
    StorageError,
)
from functions.core.ports import ChatModel, ReviewCache, StaticAnalyzer
from functions.core.review import (
    MAX_SUGGESTIONS,
    PROMPT_VERSION,
    REPAIR_PROMPT,
    REVIEW_JSON_SCHEMA,
    ReviewParseError,
    build_messages,
    estimate_tokens,
    merge_suggestions,
    normalize_suggestions,
    parse_suggestions,
    redact_secrets,
)

log = logging.getLogger(__name__)

OFFLINE = "offline"


@dataclass(frozen=True)
class ReviewResult:
    """Suggestions and where they came from."""

    suggestions: list[str]
    provider: str
    model: str
    cached: bool = False
    attempts: int = 0
    redactions: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How transient provider faults are retried."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): backoff with full jitter."""
        jitter = random.uniform(0.5, 1.0)  # noqa: S311 - not for security
        backoff: float = min(self.max_delay, self.base_delay * 2.0**attempt) * jitter
        return max(backoff, retry_after or 0.0)


@dataclass
class CodeReviewer:
    """Reviews code through a chain of providers; ``None`` in the chain is the static reviewer."""

    chain: Sequence[ChatModel | None]
    static: StaticAnalyzer
    cache: ReviewCache | None = None
    timeout_seconds: float = 25.0
    context_tokens: int = 8192
    max_output_tokens: int = 1024
    temperature: float = 0.2
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    monotonic: Callable[[], float] = time.monotonic

    @property
    def primary(self) -> tuple[str, str]:
        """The first provider's name and model."""
        first = self.chain[0] if self.chain else None
        return (OFFLINE, OFFLINE) if first is None else (first.provider, first.model)

    def cache_key(self, model: ChatModel, code: str, context: str | None) -> str:
        """Key of a review: same code, provider, model and prompt version -> same key."""
        raw = json.dumps([PROMPT_VERSION, model.provider, model.model, code, context or ""])
        return hashlib.sha256(raw.encode()).hexdigest()

    async def review(self, code: str, *, context: str | None = None) -> ReviewResult:
        """Return suggestions for ``code``; raise the last provider's LLMError if all fail."""
        deadline = self.monotonic() + self.timeout_seconds
        static_memo: list[list[str]] = []

        async def static() -> list[str]:
            # Computed once, and only when needed: a cache hit never runs the linters.
            if not static_memo:
                found = await anyio.to_thread.run_sync(
                    self.static.review, code, abandon_on_cancel=True
                )
                static_memo.append(found)
            return static_memo[0]

        last_error: LLMError | None = None
        for model in self.chain:
            if model is None:
                return ReviewResult(normalize_suggestions(await static()), OFFLINE, OFFLINE)
            try:
                return await self._review_with(model, code, context, static, deadline)
            except FunctionTooLarge:
                raise
            except LLMError as exc:
                log.warning("provider %s failed: %s", model.provider, exc.message)
                last_error = exc
        assert last_error is not None, "the provider chain is never empty"
        if len(self.chain) > 1:
            tried = ", ".join(m.provider if m else OFFLINE for m in self.chain)
            last_error.message = f"{last_error.message} (tried in order: {tried})"
            last_error.details["tried"] = tried
            last_error.args = (last_error.message,)
        raise last_error

    async def _review_with(
        self,
        model: ChatModel,
        code: str,
        context: str | None,
        static_findings: Callable[[], Awaitable[list[str]]],
        deadline: float,
    ) -> ReviewResult:
        key = self.cache_key(model, code, context)
        hit = await self._cached(key)
        if hit is not None:
            return ReviewResult(hit, model.provider, model.model, cached=True)
        # The prompt gets the cheap AST findings; the linters (a ruff process) run while the
        # model thinks, and their findings are merged in afterwards.
        quick = self.static.quick_review(code)
        safe_code, redactions = redact_secrets(code)
        messages = build_messages(safe_code, static_findings=quick, context=context)
        needed = sum(estimate_tokens(m["content"]) for m in messages) + self.max_output_tokens
        if needed > self.context_tokens:
            raise FunctionTooLarge(
                f"The function is too large for {model.provider} model {model.model}: about "
                f"{needed} tokens needed with the answer, the context is {self.context_tokens}. "
                "Review a smaller function, or raise LLM_CONTEXT_TOKENS for a bigger model.",
                details={"estimated_tokens": needed, "context_tokens": self.context_tokens},
            )
        full: list[list[str]] = []

        async def lint() -> None:
            full.append(await static_findings())

        answer: tuple[list[str], int] | None = None
        failure: CodeReviewError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(lint)
            try:
                answer = await self._ask(model, messages, deadline)
            except CodeReviewError as exc:
                # Raised outside the group, as itself (a group would wrap it), linters abandoned.
                failure = exc
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert answer is not None
        suggestions, attempts = answer
        merged = merge_suggestions(suggestions, full[0], limit=MAX_SUGGESTIONS)
        await self._remember(key, merged)
        return ReviewResult(
            merged, model.provider, model.model, attempts=attempts, redactions=redactions
        )

    async def _cached(self, key: str) -> list[str] | None:
        """The cached review, or None; a cache that fails is a miss, never a failed review."""
        if self.cache is None:
            return None
        try:
            return await anyio.to_thread.run_sync(self.cache.get, key)
        except StorageError as exc:
            log.warning("review cache unavailable, reviewing anyway: %s", exc.message)
            return None

    async def _remember(self, key: str, suggestions: list[str]) -> None:
        if self.cache is None:
            return
        try:
            await anyio.to_thread.run_sync(self.cache.put, key, suggestions)
        except StorageError as exc:
            log.warning("review cache unavailable, answer not cached: %s", exc.message)

    async def _ask(
        self, model: ChatModel, messages: list[dict[str, str]], deadline: float
    ) -> tuple[list[str], int]:
        """The model's suggestions, asking once more if its first answer is unusable."""
        content, attempts = await self._complete(model, messages, deadline, 0)
        try:
            suggestions = parse_suggestions(content)
        except ReviewParseError as first:
            log.info(
                "provider %s: unusable answer (%s); asking once to repair", model.provider, first
            )
            repair = [
                *messages,
                {"role": "assistant", "content": (content or "")[:4000]},
                {"role": "user", "content": REPAIR_PROMPT},
            ]
            content, attempts = await self._complete(model, repair, deadline, attempts)
            try:
                suggestions = parse_suggestions(content)
            except ReviewParseError as second:
                raise ProviderBadResponse(
                    f"{model.provider} model {model.model} did not return usable suggestions "
                    f"after one repair attempt: {second}.",
                    provider=model.provider,
                ) from second
        return suggestions, attempts

    async def _complete(
        self,
        model: ChatModel,
        messages: list[dict[str, str]],
        deadline: float,
        attempts: int,
    ) -> tuple[str | None, int]:
        retry = 0
        while True:
            remaining = deadline - self.monotonic()
            if remaining <= 0.05:
                raise ProviderTimeout(
                    f"{model.provider} did not answer within the {self.timeout_seconds:.0f} s "
                    "review budget.",
                    provider=model.provider,
                )
            attempts += 1
            try:
                reply = await model.complete(
                    messages,
                    max_tokens=self.max_output_tokens,
                    temperature=self.temperature,
                    json_schema=REVIEW_JSON_SCHEMA,
                    timeout=remaining,
                )
            except LLMError as exc:
                if not exc.retryable or retry >= self.retry.max_retries:
                    raise
                wait = self.retry.delay(retry, exc.retry_after)
                if self.monotonic() + wait >= deadline:
                    raise
                log.info("provider %s: %s; retry in %.2f s", model.provider, exc.code, wait)
                await self.sleep(wait)
                retry += 1
                continue
            return reply.content, attempts
