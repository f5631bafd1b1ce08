"""LLM_PROVIDER=local against a real inference server, through both services.

llama.cpp's own OpenAI-compatible ``llama-server`` runs on 127.0.0.1 with a tiny generated
model (``tests.support.llama``): real tokenising, sampling, grammar-constrained JSON and
streaming, but nonsense words. The gateway and the analysis service run under uvicorn,
configured only by environment variables, exactly as a user points them at Ollama, LM Studio,
vLLM or their own llama.cpp server.

What is counted comes from the model server's own ``/metrics`` (tokens it generated), so each
test knows whether, and how often, the gateway really asked the model. Latencies are printed
(``-s``), not asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from functions.core.review import REVIEW_JSON_SCHEMA, REVIEW_MODEL
from tests.support.llama.fixtures import (  # noqa: F401 (fixtures are found by name)
    llama_binary,
    tiny_model_path,
)
from tests.support.llama.server import LlamaServer
from tests.support.llama.tiny_model import SPM_SPACE, build_vocab
from tests.support.services import Service

pytestmark = pytest.mark.e2e

# llama-server divides --ctx-size among its --parallel slots, and refuses (400) a request that
# does not fit in one slot. So the gateway's budget, LLM_CONTEXT_TOKENS, is one slot's share.
CTX_SIZE = 8192
PARALLEL = 2
SLOT_CONTEXT = CTX_SIZE // PARALLEL
SMALL_OUTPUT_BUDGET = 64  # the smallest LLM_MAX_OUTPUT_TOKENS the settings accept
ADD = "def add(a, b):\n    return a + b\n"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]


def start_model_server(binary: Path, model: Path, *extra: str) -> LlamaServer:
    """A llama-server with room for the gateway's prompts and with /metrics on."""
    return LlamaServer(
        binary, model, ctx_size=CTX_SIZE, parallel=PARALLEL, extra_args=("--metrics", *extra)
    ).start()


def generated_tokens(server: LlamaServer) -> int:
    """How many tokens the model server has generated since it started."""
    text = httpx.get(f"{server.root_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no tokens_predicted_total in /metrics:\n{text}")


def last_request_params(server: LlamaServer) -> dict[str, Any]:
    """The sampling parameters of the last request the model server took (its /slots)."""
    slots = [s for s in httpx.get(f"{server.root_url}/slots", timeout=5).json() if "id_task" in s]
    assert slots, "the model server has served no request"
    params: dict[str, Any] = max(slots, key=lambda s: s["id_task"])["params"]
    return params


@contextlib.contextmanager
def counting(server: LlamaServer) -> Iterator[Callable[[], int]]:
    """Yield a function returning the tokens the server generated since the block began."""
    before = generated_tokens(server)
    yield lambda: generated_tokens(server) - before


def gateway_env(server: LlamaServer, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The gateway's settings for a local OpenAI-compatible server, as docs/local_llm.md says."""
    return {
        "LLM_PROVIDER": "local",
        "LOCAL_LLM_BASE_URL": server.base_url,
        # Whatever the server reports in /v1/models (llama-server answers to any name, Ollama
        # and vLLM do not).
        "LOCAL_LLM_MODEL": server.model_id,
        "LLM_CONTEXT_TOKENS": str(SLOT_CONTEXT),
        "DATA_DIR": str(data_dir),
        **overrides,
    }


@dataclass
class Reviewed:
    """One review's HTTP outcome and the tokens the model generated for it."""

    response: httpx.Response
    tokens: int
    seconds: float


def review_code(gateway: Service, server: LlamaServer, code: str) -> Reviewed:
    """POST /analyze to the gateway and count the model's tokens for it."""
    with counting(server) as tokens:
        started = time.perf_counter()
        response = httpx.post(f"{gateway.url}/analyze", json={"function_code": code}, timeout=60)
        seconds = time.perf_counter() - started
        return Reviewed(response, tokens(), seconds)


def assert_suggestions(response: httpx.Response) -> list[str]:
    """The spec's 200 shape: exactly ``{"suggestions": [str, ...]}``."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["suggestions"]
    suggestions = body["suggestions"]
    assert isinstance(suggestions, list)
    assert all(isinstance(s, str) and s.strip() for s in suggestions), suggestions
    return [str(s) for s in suggestions]


def assert_clear_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    """A known failure: its status, a stable code and a message naming what failed."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body


def report(label: str, seconds: list[float]) -> None:
    """Print latencies (pytest -s)."""
    ms = [s * 1000 for s in seconds]
    print(
        f"\n{label}: n={len(ms)} min={min(ms):.0f} ms median={statistics.median(ms):.0f} ms "
        f"max={max(ms):.0f} ms"
    )


# --- one model server, gateway and analysis service for the module ---------------------------


@pytest.fixture(scope="module")
def model_server(llama_binary: Path, tiny_model_path: Path) -> Iterator[LlamaServer]:  # noqa: F811
    """The real inference server the module's services use."""
    server = start_model_server(llama_binary, tiny_model_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(
    model_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The gateway with LLM_PROVIDER=local and every other setting at its default."""
    data = tmp_path_factory.mktemp("local-gateway")
    with Service(
        "functions.gateway.app:app", gateway_env(model_server, data), data / "gateway.log"
    ) as service:
        yield service


@pytest.fixture(scope="module")
def analysis(gateway: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The analysis service, reviewing through ``gateway``."""
    data = tmp_path_factory.mktemp("local-analysis")
    env = {
        "LLM_GATEWAY_URL": f"{gateway.url}/v1",
        "ALLOWED_REPO_HOSTS": "127.0.0.1",
        "DATA_DIR": str(data),
    }
    with Service("functions.analysis.app:app", env, data / "analysis.log") as service:
        yield service


@pytest.fixture
def client(gateway: Service) -> Iterator[openai.OpenAI]:
    """The official openai client with the gateway as its base URL."""
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as oai:
        yield oai


def test_models_lists_the_review_model_and_the_model_the_server_reports(
    client: openai.OpenAI, model_server: LlamaServer
) -> None:
    upstream = httpx.get(f"{model_server.base_url}/models").json()

    ids = [model.id for model in client.models.list()]

    assert ids == [REVIEW_MODEL, model_server.model_id]
    assert [m["id"] for m in upstream["data"]] == [model_server.model_id]


@pytest.mark.parametrize("model", ["default", "served"])
def test_a_chat_completion_is_generated_by_the_local_model(
    client: openai.OpenAI, model_server: LlamaServer, model: str
) -> None:
    name = model_server.model_id if model == "served" else model

    with counting(model_server) as tokens:
        completion = client.chat.completions.create(
            model=name,
            messages=HELLO,
            max_tokens=SMALL_OUTPUT_BUDGET,
            temperature=0.8,
        )

    choice = completion.choices[0]
    assert choice.message.content
    assert choice.message.content.isprintable()
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= SMALL_OUTPUT_BUDGET
    # The answer is the model server's own: the tokens it counted, its model name and build.
    assert tokens() == completion.usage.completion_tokens
    assert completion.model == model_server.model_id  # "default" means LOCAL_LLM_MODEL
    assert (completion.system_fingerprint or "").startswith("b")


def test_streaming_arrives_chunk_by_chunk_through_the_openai_client(
    client: openai.OpenAI, model_server: LlamaServer
) -> None:
    with (
        counting(model_server) as tokens,
        client.chat.completions.create(
            model=model_server.model_id,
            messages=HELLO,
            max_tokens=SMALL_OUTPUT_BUDGET,
            temperature=0.8,
            stream=True,
        ) as stream,
    ):
        chunks = list(stream)

    assert len(chunks) >= 2
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text
    assert text.isprintable()
    assert finishes[-1] in ("stop", "length")
    assert 0 < tokens() <= SMALL_OUTPUT_BUDGET


def test_streaming_ends_with_done_as_openai_does(
    gateway: Service, model_server: LlamaServer
) -> None:
    body = {
        "model": model_server.model_id,
        "messages": HELLO,
        "max_tokens": SMALL_OUTPUT_BUDGET,
        "stream": True,
    }

    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [
            line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data:")
        ]

    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


def test_json_schema_output_is_constrained_end_to_end(
    client: openai.OpenAI, model_server: LlamaServer
) -> None:
    # The gateway passes response_format through; llama.cpp turns the schema into a grammar.
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "code_review", "strict": True, "schema": REVIEW_JSON_SCHEMA},
    }
    for seed in range(10):
        completion = client.chat.completions.create(
            model=model_server.model_id,
            messages=[{"role": "user", "content": f"Review: {ADD}"}],
            max_tokens=1024,
            temperature=0.8,
            seed=seed,
            response_format=response_format,
        )
        content = completion.choices[0].message.content or ""

        assert completion.choices[0].finish_reason == "stop", content
        jsonschema.validate(json.loads(content), REVIEW_JSON_SCHEMA)


@pytest.mark.parametrize("stream", [False, True])
def test_the_code_review_model_answers_suggestions_from_the_local_provider(
    client: openai.OpenAI, model_server: LlamaServer, stream: bool
) -> None:
    code = f"def scale(values, factor):\n    return [v * factor for v in values]  # {stream}\n"
    messages: Any = [{"role": "user", "content": code}]

    with counting(model_server) as tokens:
        if stream:
            with client.chat.completions.create(
                model=REVIEW_MODEL, messages=messages, stream=True
            ) as chunks:
                content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=REVIEW_MODEL, messages=messages
            )
            assert raw.headers["x-review-provider"] == "local"
            assert raw.headers["x-review-model"] == model_server.model_id
            content = raw.parse().choices[0].message.content or ""

    suggestions = json.loads(content)["suggestions"]
    assert all(isinstance(s, str) for s in suggestions)
    assert any(s.startswith("[typing]") for s in suggestions)  # static findings merged in
    assert tokens() > 0


def test_analyze_returns_the_spec_shape_from_the_real_model_and_caches_it(
    gateway: Service, model_server: LlamaServer
) -> None:
    first = review_code(gateway, model_server, ADD)
    again = review_code(gateway, model_server, ADD)

    suggestions = assert_suggestions(first.response)
    assert first.response.headers["x-review-provider"] == "local"
    assert first.response.headers["x-review-model"] == model_server.model_id
    assert first.response.headers["x-review-cached"] == "false"
    assert first.tokens > 0
    # The gateway's budget and temperature (LLM_MAX_OUTPUT_TOKENS, LLM_TEMPERATURE) reached it.
    sent = last_request_params(model_server)
    assert sent["max_tokens"] == 1024
    assert sent["temperature"] == pytest.approx(0.2)
    assert any(s.startswith("[typing]") for s in suggestions)
    assert any(s.startswith("[docs]") for s in suggestions)
    # The same code again: from the cache, the model is not asked.
    assert assert_suggestions(again.response) == suggestions
    assert again.response.headers["x-review-cached"] == "true"
    assert again.tokens == 0


def test_nonsense_from_the_model_still_gives_well_formed_reviews(
    gateway: Service, model_server: LlamaServer
) -> None:
    # The tiny model's words are nonsense, but grammar-constrained: every answer parses, and
    # the gateway keeps the spec's shape (empty or junk messages are dropped, static findings
    # are always there). Measured: 100/100 complete answers at the default 0.2 and 1024 tokens.
    reviews = [
        review_code(gateway, model_server, f"def f{i}(x):\n    return x * {i}\n") for i in range(8)
    ]

    for reviewed in reviews:
        suggestions = assert_suggestions(reviewed.response)
        assert suggestions, "static findings are always there"
        assert 0 < reviewed.tokens <= 1024
    report("POST /analyze, gateway -> llama-server (tiny model)", [r.seconds for r in reviews])


# --- both services, a real git server, the real model server --------------------------------


def test_both_services_review_a_repository_function_with_the_local_model(
    analysis: Service,
    model_server: LlamaServer,
    sample_repo_url: str,
) -> None:
    started = httpx.post(f"{analysis.url}/analyze/start", json={"repo_url": sample_repo_url})
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 30
    job = httpx.get(f"{analysis.url}/analyze/jobs/{job_id}").json()
    while job["status"] not in ("READY", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = httpx.get(f"{analysis.url}/analyze/jobs/{job_id}").json()
    assert job["status"] == "READY", job
    names = ["module_name.add", "module_name.average", "shop.cart.Cart.add_item", "shop.version"]

    latencies = []
    for name in names:
        with counting(model_server) as tokens:
            begun = time.perf_counter()
            response = httpx.post(
                f"{analysis.url}/analyze/function",
                json={"job_id": job_id, "function_name": name},
                timeout=60,
            )
            latencies.append(time.perf_counter() - begun)
            generated = tokens()

        suggestions = assert_suggestions(response)
        assert suggestions
        assert generated > 0, f"{name}: the model was not asked"
    report("POST /analyze/function, analysis -> gateway -> llama-server", latencies)


# --- a model that answers too little ---------------------------------------------------------


def _bias_against(*characters: str) -> tuple[str, ...]:
    tokens, _, _ = build_vocab()
    args: list[str] = []
    for character in characters:
        args += ["--logit-bias", f"{tokens.index(character)}-100"]
    return tuple(args)


def test_answers_cut_off_by_the_output_budget_end_in_a_clear_502_after_one_repair(
    llama_binary: Path,  # noqa: F811
    tiny_model_path: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A model that never closes its JSON list and a 64-token budget: every answer is cut off
    # mid-JSON, like a small model that rambles. "]" is pushed far down, and so are spaces:
    # after "[ " the grammar would let "]" through (measured: 60/60 answers cut off).
    never_closes = _bias_against("]", SPM_SPACE, SPM_SPACE * 2, SPM_SPACE * 4)
    server = start_model_server(llama_binary, tiny_model_path, *never_closes)
    env = gateway_env(server, tmp_path, LLM_MAX_OUTPUT_TOKENS=str(SMALL_OUTPUT_BUDGET))
    try:
        with Service("functions.gateway.app:app", env, tmp_path / "gateway.log") as gateway:
            reviewed = review_code(gateway, server, ADD)
            with (
                openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0) as oai,
                pytest.raises(openai.APIStatusError) as raised,
            ):
                oai.chat.completions.create(
                    model=REVIEW_MODEL, messages=[{"role": "user", "content": ADD + "\n"}]
                )
            healthy = httpx.get(f"{gateway.url}/healthz").status_code
    finally:
        server.stop()

    assert_clear_error(
        reviewed.response, 502, "llm_bad_response", "local", server.model_id, "repair"
    )
    # Exactly the first answer and one repair, each cut at the budget; no retry storm.
    assert reviewed.tokens == 2 * SMALL_OUTPUT_BUDGET
    assert raised.value.status_code == 502
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "llm_bad_response"
    assert healthy == 200


def test_a_small_output_budget_gives_a_first_or_repaired_answer_or_a_clear_502(
    llama_binary: Path,  # noqa: F811
    tiny_model_path: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # At temperature 1.5 about one answer in five needs more than 64 tokens (measured: 10/50).
    server = start_model_server(llama_binary, tiny_model_path)
    env = gateway_env(
        server, tmp_path, LLM_MAX_OUTPUT_TOKENS=str(SMALL_OUTPUT_BUDGET), LLM_TEMPERATURE="1.5"
    )
    outcomes: dict[str, int] = {"first answer": 0, "repaired": 0, "502 after repair": 0}
    try:
        with Service("functions.gateway.app:app", env, tmp_path / "gateway.log") as gateway:
            for i in range(12):
                reviewed = review_code(gateway, server, f"def g{i}(y):\n    return y - {i}\n")
                # One call generates at most the budget, so more tokens mean a repair call.
                assert 0 < reviewed.tokens <= 2 * SMALL_OUTPUT_BUDGET
                if reviewed.response.status_code == 200:
                    assert_suggestions(reviewed.response)
                    repaired = reviewed.tokens > SMALL_OUTPUT_BUDGET
                    outcomes["repaired" if repaired else "first answer"] += 1
                else:
                    assert_clear_error(
                        reviewed.response, 502, "llm_bad_response", "local", "repair"
                    )
                    assert reviewed.tokens == 2 * SMALL_OUTPUT_BUDGET
                    outcomes["502 after repair"] += 1
            assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    finally:
        server.stop()

    print(f"\nLLM_MAX_OUTPUT_TOKENS=64, temperature 1.5, 12 reviews: {outcomes}")
    assert outcomes["first answer"] > 0


# --- the model server going away -------------------------------------------------------------


def test_a_model_server_stopped_mid_run_gives_503_naming_it_and_reviews_resume_after_restart(
    llama_binary: Path,  # noqa: F811
    tiny_model_path: Path,  # noqa: F811
    tmp_path: Path,
    sample_repo_url: str,
) -> None:
    server = start_model_server(llama_binary, tiny_model_path)
    gateway = Service(
        "functions.gateway.app:app",
        gateway_env(server, tmp_path / "gw", LLM_MAX_RETRIES="1"),
        tmp_path / "gateway.log",
    )
    analysis = Service(
        "functions.analysis.app:app",
        {"ALLOWED_REPO_HOSTS": "127.0.0.1", "DATA_DIR": str(tmp_path / "an")},
        tmp_path / "analysis.log",
    )
    try:
        with gateway:
            analysis.env["LLM_GATEWAY_URL"] = f"{gateway.url}/v1"
            with analysis:
                job_id = httpx.post(
                    f"{analysis.url}/analyze/start", json={"repo_url": sample_repo_url}
                ).json()["job_id"]

                def review(name: str) -> httpx.Response:
                    return httpx.post(
                        f"{analysis.url}/analyze/function",
                        json={"job_id": job_id, "function_name": name},
                        timeout=60,
                    )

                before = review("module_name.add")
                server.stop()  # the model server goes away between two reviews
                down_gateway = httpx.post(
                    f"{gateway.url}/analyze", json={"function_code": ADD}, timeout=30
                )
                down_analysis = review("module_name.average")
                down_chat = httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "default", "messages": HELLO},
                    timeout=30,
                )
                down_stream = httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={
                        "model": "default",
                        "stream": True,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                    timeout=30,
                )
                up_while_down = [
                    httpx.get(f"{s.url}/healthz").status_code for s in (gateway, analysis)
                ]
                server.start()  # same port: the configured URL is valid again
                after_gateway = httpx.post(
                    f"{gateway.url}/analyze", json={"function_code": ADD}, timeout=30
                )
                after_analysis = review("module_name.average")
    finally:
        server.stop()

    assert_suggestions(before)
    where = server.base_url
    assert_clear_error(down_gateway, 503, "llm_unavailable", "local", where)
    assert down_gateway.json()["details"]["provider"] == "local"
    # The analysis service passes the gateway's diagnosis on, not a vague "gateway failed".
    assert_clear_error(down_analysis, 503, "llm_unavailable", "local", where)
    # OpenAI-shaped errors for OpenAI clients, before any stream starts.
    assert down_chat.status_code == 503
    assert down_chat.json()["error"]["code"] == "llm_unavailable"
    assert down_stream.status_code == 503
    assert down_stream.json()["error"]["code"] == "llm_unavailable"
    assert up_while_down == [200, 200]
    assert_suggestions(after_gateway)
    assert_suggestions(after_analysis)


def test_a_model_server_dying_mid_stream_ends_the_stream_with_an_error_event(
    llama_binary: Path,  # noqa: F811
    tiny_model_path: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = start_model_server(llama_binary, tiny_model_path)
    env = gateway_env(server, tmp_path)
    # At temperature 0 the tiny model never stops by itself: the reply runs to max_tokens
    # (seconds), so the server surely dies in the middle of it. SIGKILL, like a crash or the
    # OOM killer: on SIGTERM llama-server would finish the reply first.
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3000,
        "temperature": 0,
        "stream": True,
    }
    events: list[str] = []
    try:
        with Service("functions.gateway.app:app", env, tmp_path / "gateway.log") as gateway:
            with httpx.stream(
                "POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        events.append(line.removeprefix("data: "))
                    if len(events) == 3 and server.pid is not None:
                        os.kill(server.pid, signal.SIGKILL)
            healthy = httpx.get(f"{gateway.url}/healthz").status_code
    finally:
        server.stop()

    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "llm_unavailable"
    assert "local" in error["message"]
    chunks = [json.loads(e) for e in events[:-2]]
    assert len(chunks) >= 3
    # Cut short: no chunk says the reply finished.
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks if c["choices"])
    assert healthy == 200
