"""CodeReviewer with a scripted model: retries, fallback, repair, cache, budget, redaction."""

from __future__ import annotations

import json

import anyio
import pytest

from functions.core.errors import (
    FunctionTooLarge,
    ProviderBadResponse,
    ProviderNotConfigured,
    ProviderTimeout,
    ProviderUnavailable,
)
from functions.core.ports import ChatModel, ChatReply
from functions.core.reviewer import CodeReviewer, RetryPolicy, ReviewResult
from tests.support.fakes import DictCache, ScriptedModel, StaticFindings

CODE = "def add(a, b):\n    return a + b\n"
GOOD = ChatReply(json.dumps({"suggestions": [{"category": "bug", "message": "Check types."}]}))


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def reviewer(*chain: ChatModel | None, **kw: object) -> CodeReviewer:
    values: dict[str, object] = {
        "static": StaticFindings(["[docs] Line 1: add a docstring to `add`."]),
        "sleep": Sleeps(),
        "retry": RetryPolicy(max_retries=2, base_delay=0.01),
    }
    values.update(kw)
    return CodeReviewer(chain=list(chain), **values)  # type: ignore[arg-type]


def run(r: CodeReviewer, code: str = CODE) -> ReviewResult:
    return anyio.run(lambda: r.review(code))


def test_a_good_answer_is_merged_with_static_findings() -> None:
    model = ScriptedModel([GOOD])

    result = run(reviewer(model))

    assert result.suggestions == ["[bug] Check types.", "[docs] Line 1: add a docstring to `add`."]
    assert (result.provider, result.model, result.cached) == ("scripted", "scripted-model", False)


def test_offline_returns_static_findings_without_any_model() -> None:
    result = run(reviewer(None))

    assert result.provider == "offline"
    assert result.suggestions == ["[docs] Line 1: add a docstring to `add`."]


def test_rate_limits_are_retried_honouring_retry_after() -> None:
    sleeps = Sleeps()
    model = ScriptedModel(
        [ProviderUnavailable("429", provider="p", retryable=True, retry_after=1.5), GOOD]
    )

    result = run(reviewer(model, sleep=sleeps))

    assert result.attempts == 2
    assert sleeps.waits
    assert sleeps.waits[0] >= 1.5


def test_non_retryable_errors_are_not_retried() -> None:
    model = ScriptedModel([ProviderNotConfigured("401", provider="p"), GOOD])

    with pytest.raises(ProviderNotConfigured):
        run(reviewer(model))

    assert len(model.calls) == 1


def test_retries_stop_after_the_limit() -> None:
    errors = [ProviderUnavailable("503", provider="p", retryable=True) for _ in range(5)]
    model = ScriptedModel(list(errors))

    with pytest.raises(ProviderUnavailable):
        run(reviewer(model))

    assert len(model.calls) == 3


def test_a_retry_that_would_overrun_the_budget_is_not_attempted() -> None:
    model = ScriptedModel(
        [ProviderUnavailable("429", provider="p", retryable=True, retry_after=60), GOOD]
    )

    with pytest.raises(ProviderUnavailable):
        run(reviewer(model, timeout_seconds=5))

    assert len(model.calls) == 1


def test_the_next_provider_is_tried_when_the_first_fails() -> None:
    first = ScriptedModel([ProviderTimeout("slow", provider="first")], provider="first")
    second = ScriptedModel([GOOD], provider="second")

    result = run(reviewer(first, second, retry=RetryPolicy(max_retries=0)))

    assert result.provider == "second"


def test_offline_as_the_last_fallback_still_answers_from_static_findings() -> None:
    first = ScriptedModel([ProviderNotConfigured("no key", provider="first")], provider="first")

    result = run(reviewer(first, None))

    assert result.provider == "offline"
    assert result.suggestions


def test_when_every_provider_fails_the_error_names_them_all() -> None:
    first = ScriptedModel([ProviderNotConfigured("no key", provider="a")], provider="a")
    second = ScriptedModel([ProviderNotConfigured("no key", provider="b")], provider="b")

    with pytest.raises(ProviderNotConfigured, match="tried in order: a, b"):
        run(reviewer(first, second))


def test_garbage_gets_one_repair_attempt() -> None:
    model = ScriptedModel([ChatReply("Sure! The code looks fine."), GOOD])

    result = run(reviewer(model))

    assert result.suggestions[0] == "[bug] Check types."
    assert len(model.calls) == 2
    assert "not valid JSON" in model.calls[1][-1]["content"]


def test_garbage_twice_is_a_clear_bad_response() -> None:
    model = ScriptedModel([ChatReply(""), ChatReply("still not json")])

    with pytest.raises(ProviderBadResponse, match="after one repair attempt"):
        run(reviewer(model))


def test_an_identical_request_is_answered_from_the_cache_without_a_model_call() -> None:
    cache, static = DictCache(), StaticFindings(["[docs] x"])
    model = ScriptedModel([GOOD])
    r = reviewer(model, cache=cache, static=static)
    first = run(r)

    second = run(r)

    assert second.cached
    assert second.suggestions == first.suggestions
    assert len(model.calls) == 1
    assert static.calls == 1  # a cache hit runs no linters either


def test_a_function_too_large_for_the_context_is_refused_before_any_call() -> None:
    model = ScriptedModel([GOOD])

    with pytest.raises(FunctionTooLarge, match="too large"):
        run(reviewer(model, context_tokens=600), "x = 1\n" * 2000)

    assert model.calls == []


def test_secrets_are_redacted_before_the_code_leaves() -> None:
    model = ScriptedModel([GOOD])
    code = 'def f():\n    key = "AKIAABCDEFGHIJKLMNOP"\n'

    result = run(reviewer(model), code)

    sent = model.calls[0][1]["content"]
    assert "AKIAABCDEFGHIJKLMNOP" not in sent
    assert result.redactions == 1


def test_the_prompt_gets_the_quick_findings_and_the_answer_all_of_them() -> None:
    static = StaticFindings(
        ["[docs] Line 1: add a docstring to `add`.", "[bug] Line 2: ruff says B006 here."],
        quick=["[docs] Line 1: add a docstring to `add`."],
    )
    model = ScriptedModel([GOOD])

    result = run(reviewer(model, static=static))

    prompt = model.calls[0][1]["content"]
    assert "add a docstring" in prompt
    assert "ruff says" not in prompt
    assert "[bug] Line 2: ruff says B006 here." in result.suggestions


def test_a_failing_cache_is_a_miss_not_a_failed_review() -> None:
    from functions.core.errors import StorageError

    class BrokenCache:
        def get(self, key: str) -> list[str] | None:
            raise StorageError("DynamoDB is throttling")

        def put(self, key: str, suggestions: list[str]) -> None:
            raise StorageError("DynamoDB is throttling")

    model = ScriptedModel([GOOD])

    result = run(reviewer(model, cache=BrokenCache()))

    assert result.suggestions[0] == "[bug] Check types."
    assert not result.cached
