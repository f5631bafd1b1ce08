"""A real llama.cpp server answers the way the gateway's ``local`` provider uses it.

The server runs the tiny random model from ``tests.support.llama.tiny_model``, so replies are
gibberish, but the protocol is real: model listing, chat completions, streaming (SSE ending
with ``[DONE]``), and grammar-constrained ``json_schema`` / ``json_object`` output. Latencies
are printed (run with ``-s``), not asserted: they depend on the machine.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.llama.fixtures import (  # noqa: F401 (fixtures are found by name)
    disposable_llama_server,
    llama_binary,
    llama_server,
    tiny_model_path,
)
from tests.support.llama.server import LlamaServer

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "suggestions": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
    "required": ["suggestions"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "review", "strict": True, "schema": REVIEW_SCHEMA},
}
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You review Python code. Answer in JSON."},
    {"role": "user", "content": "def add(a, b):\n    return a+b\n"},
]
# The gateway's default LOCAL_LLM_MODEL is an Ollama tag; llama-server serves its one model
# whatever name the request carries, so the gateway needs no model-name mapping.
GATEWAY_MODEL_NAME = "qwen2.5-coder:0.5b"


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _report(label: str, latencies_ms: list[float]) -> None:
    print(
        f"\n{label}: n={len(latencies_ms)} min={min(latencies_ms):.1f} ms "
        f"median={statistics.median(latencies_ms):.1f} ms max={max(latencies_ms):.1f} ms"
    )


@pytest.fixture
def client(llama_server: LlamaServer) -> Iterator[openai.OpenAI]:  # noqa: F811
    """An OpenAI client for the shared server, configured like the gateway's (no retries)."""
    with openai.OpenAI(
        base_url=llama_server.base_url, api_key="local", max_retries=0, timeout=30.0
    ) as oai:
        yield oai


def test_models_endpoint_lists_the_served_model(
    llama_server: LlamaServer,  # noqa: F811
    client: openai.OpenAI,
) -> None:
    ids = [model.id for model in client.models.list()]

    assert ids == [llama_server.model_id]
    assert llama_server.model_id == "codereview-tiny"
    assert llama_server.base_url == f"http://127.0.0.1:{llama_server.port}/v1"


def test_chat_completion_finishes_with_printable_text(client: openai.OpenAI) -> None:
    latencies: list[float] = []
    for seed in range(5):
        started = time.perf_counter()
        completion = client.chat.completions.create(
            model=GATEWAY_MODEL_NAME,
            messages=MESSAGES,
            max_tokens=64,
            temperature=0.8,
            seed=seed,
        )
        latencies.append((time.perf_counter() - started) * 1000)
        choice = completion.choices[0]
        content = choice.message.content

        assert choice.finish_reason == "stop", content
        assert content, "empty reply"
        assert _printable(content), repr(content)
        assert completion.usage is not None
        assert 0 < completion.usage.completion_tokens < 64
    _report("chat completion (max_tokens=64)", latencies)


def test_streaming_sends_chunks_then_done(llama_server: LlamaServer) -> None:  # noqa: F811
    # Raw SSE, because the openai package swallows the terminating "data: [DONE]" line.
    body = {
        "model": GATEWAY_MODEL_NAME,
        "messages": MESSAGES,
        "max_tokens": 64,
        "temperature": 0.8,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events: list[str] = []
    started = time.perf_counter()
    with (
        httpx.Client(timeout=30.0) as http,
        http.stream("POST", f"{llama_server.base_url}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events.extend(
            line.removeprefix("data:").strip()
            for line in response.iter_lines()
            if line.startswith("data:")
        )
    elapsed_ms = (time.perf_counter() - started) * 1000

    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) >= 2
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    finish = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"]]
    assert text
    assert _printable(text), repr(text)
    assert "stop" in finish
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    print(f"\nstreaming: {len(chunks)} chunks in {elapsed_ms:.1f} ms")


def test_streaming_through_the_openai_package(client: openai.OpenAI) -> None:
    with client.chat.completions.create(
        model=GATEWAY_MODEL_NAME,
        messages=MESSAGES,
        max_tokens=64,
        temperature=0.8,
        seed=2,
        stream=True,
    ) as stream:
        chunks = list(stream)

    assert chunks
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_json_schema_replies_match_the_schema(client: openai.OpenAI) -> None:
    latencies: list[float] = []
    tokens: list[int] = []
    for seed in range(20):
        started = time.perf_counter()
        # extra_body, as the gateway sends it (see functions/adapters/openai_chat.py).
        completion = client.chat.completions.create(
            model=GATEWAY_MODEL_NAME,
            messages=MESSAGES,
            extra_body={
                "max_tokens": 256,
                "temperature": 0.8,
                "seed": seed,
                "response_format": JSON_SCHEMA_FORMAT,
            },
        )
        latencies.append((time.perf_counter() - started) * 1000)
        choice = completion.choices[0]
        content = choice.message.content or ""

        assert choice.finish_reason == "stop", content
        data = json.loads(content)
        jsonschema.validate(data, REVIEW_SCHEMA)
        assert isinstance(data["suggestions"], list)
        assert completion.usage is not None
        tokens.append(completion.usage.completion_tokens)
    _report("json_schema reply (temperature 0.8)", latencies)
    print(f"json_schema completion tokens: median={statistics.median(tokens)} max={max(tokens)}")


def test_json_object_replies_are_objects(client: openai.OpenAI) -> None:
    latencies: list[float] = []
    for seed in range(5):
        started = time.perf_counter()
        completion = client.chat.completions.create(
            model=GATEWAY_MODEL_NAME,
            messages=MESSAGES,
            max_tokens=256,
            temperature=0.8,
            seed=seed,
            response_format={"type": "json_object"},
        )
        latencies.append((time.perf_counter() - started) * 1000)
        content = completion.choices[0].message.content or ""

        assert completion.choices[0].finish_reason == "stop", content
        assert isinstance(json.loads(content), dict), content
    _report("json_object reply (temperature 0.8)", latencies)


def test_concurrent_requests_from_the_async_client(llama_server: LlamaServer) -> None:  # noqa: F811
    # The gateway uses AsyncOpenAI and may have several reviews in flight; -np 2 serves two
    # at once and queues the rest.
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=llama_server.base_url, api_key="local", max_retries=0, timeout=30.0
        ) as oai:
            completions = await asyncio.gather(
                *(
                    oai.chat.completions.create(
                        model=GATEWAY_MODEL_NAME,
                        messages=MESSAGES,
                        extra_body={
                            "max_tokens": 256,
                            "temperature": 0.8,
                            "seed": seed,
                            "response_format": JSON_SCHEMA_FORMAT,
                        },
                    )
                    for seed in range(6)
                )
            )
        return [c.choices[0].message.content or "" for c in completions]

    started = time.perf_counter()
    contents = asyncio.run(run())
    elapsed_ms = (time.perf_counter() - started) * 1000

    for content in contents:
        jsonschema.validate(json.loads(content), REVIEW_SCHEMA)
    print(f"\n6 concurrent json_schema requests: {elapsed_ms:.1f} ms in total")


def test_a_stopped_server_refuses_connections_and_restarts_on_the_same_port(
    disposable_llama_server: LlamaServer,  # noqa: F811
) -> None:
    server = disposable_llama_server
    base_url = server.base_url
    with openai.OpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=5.0) as oai:
        server.stop()
        assert not server.is_running()
        with pytest.raises(openai.APIConnectionError):
            oai.models.list()

        server.start()
        assert server.base_url == base_url
        assert [m.id for m in oai.models.list()] == [server.model_id]
