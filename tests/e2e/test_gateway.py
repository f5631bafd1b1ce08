"""The gateway end to end: provider routing by env vars, the official openai client as a
drop-in, offline mode, and clear errors when a provider is missing or down."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from pydantic import SecretStr

from functions.core.bootstrap import build_gateway_container
from functions.core.settings import Provider, Settings
from functions.gateway.app import create_app
from tests.support.fake_llm import FakeLLM, Step, digest
from tests.support.services import Service

pytestmark = pytest.mark.e2e

CODE = "def add(a, b):\n    return a + b\n"


def analyze_in_process(settings: Settings, code: str = CODE) -> httpx.Response:
    """POST /analyze to a gateway app built from ``settings`` (its provider calls are real)."""

    async def call() -> httpx.Response:
        container = build_gateway_container(settings)
        app = create_app(container)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                return await client.post("/analyze", json={"function_code": code}, timeout=30)
        finally:
            await container.aclose()

    return anyio.run(call)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("provider", "env", "path", "model", "key", "format_type", "max_tokens_field"),
    [
        (
            "openai",
            {
                "OPENAI_BASE_URL": "{base}/openai/v1",
                "OPENAI_MODEL": "gpt-test",
                "OPENAI_API_KEY": "sk-test-openai-key-0123456789",
            },
            "/openai/v1/chat/completions",
            "gpt-test",
            "sk-test-openai-key-0123456789",
            "json_schema",
            "max_completion_tokens",
        ),
        (
            "deepseek",
            {
                "DEEPSEEK_BASE_URL": "{base}/deepseek",
                "DEEPSEEK_MODEL": "deepseek-test",
                "DEEPSEEK_API_KEY": "sk-test-deepseek-key-0123456789",
            },
            "/deepseek/chat/completions",
            "deepseek-test",
            "sk-test-deepseek-key-0123456789",
            "json_object",
            "max_tokens",
        ),
        (
            "local",
            {"LOCAL_LLM_BASE_URL": "{base}/ollama/v1", "LOCAL_LLM_MODEL": "qwen-test"},
            "/ollama/v1/chat/completions",
            "qwen-test",
            "ollama",
            "json_schema",
            "max_tokens",
        ),
    ],
)
def test_each_provider_reaches_its_own_base_url_model_and_key(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_llm: FakeLLM,
    provider: str,
    env: dict[str, str],
    path: str,
    model: str,
    key: str,
    format_type: str,
    max_tokens_field: str,
) -> None:
    base = f"http://127.0.0.1:{fake_llm.port}"
    monkeypatch.setenv("LLM_PROVIDER", provider)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(base=base))

    response = analyze_in_process(Settings())

    assert response.status_code == 200, response.text
    assert response.headers["x-review-provider"] == provider
    [request] = fake_llm.chat_requests()
    assert request.path == path
    assert request.body["model"] == model
    assert request.headers["authorization"] == f"Bearer {key}"
    assert request.body["response_format"]["type"] == format_type
    assert max_tokens_field in request.body
    assert request.code == CODE
    assert any(digest(CODE) in s for s in response.json()["suggestions"])


def test_a_provider_without_its_key_is_a_clear_503_that_names_the_setting(
    tmp_path: Path,
) -> None:
    settings = Settings(llm_provider=Provider.OPENAI, data_dir=tmp_path)

    response = analyze_in_process(settings)

    assert response.status_code == 503
    assert response.json()["code"] == "llm_not_configured"
    assert "OPENAI_API_KEY" in response.json()["message"]


def test_a_provider_that_is_down_is_503_naming_it(tmp_path: Path) -> None:
    settings = Settings(
        llm_provider=Provider.LOCAL,
        local_llm_base_url=f"http://127.0.0.1:{closed_port()}/v1",
        llm_max_retries=1,
        data_dir=tmp_path,
    )

    response = analyze_in_process(settings)

    assert response.status_code == 503
    assert response.json()["code"] == "llm_unavailable"
    assert "local" in response.json()["message"]


def test_a_rejected_key_is_reported_without_leaking_it(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push(
        Step(status=401, body={"error": {"message": "bad key sk-live-abcdefghijklmnopqrstu"}})
    )
    settings = Settings(
        llm_provider=Provider.OPENAI,
        openai_base_url=fake_llm.base_url,
        openai_api_key=SecretStr("sk-live-abcdefghijklmnopqrstu"),
        data_dir=tmp_path,
    )

    response = analyze_in_process(settings)

    assert response.status_code == 503
    assert "sk-live-abcdefghijklmnopqrstu" not in response.text
    assert "credentials" in response.json()["message"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLLM) -> Iterator[str]:
    data = tmp_path_factory.mktemp("gateway")
    env = {
        "LLM_PROVIDER": "local",
        "LOCAL_LLM_BASE_URL": fake_llm_server.base_url,
        "LOCAL_LLM_MODEL": "fake-model",
        "DATA_DIR": str(data),
    }
    with Service("functions.gateway.app:app", env, data / "gateway.log") as service:
        yield service.url


@pytest.fixture(scope="module")
def offline_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("offline")
    with Service("functions.gateway.app:app", {"DATA_DIR": str(data)}, data / "g.log") as service:
        yield service.url


def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)


def test_the_openai_client_lists_the_gateway_models(gateway: str) -> None:
    with client(gateway) as oa:
        ids = [m.id for m in oa.models.list()]

    assert ids == ["code-review", "fake-model"]


def test_the_openai_client_chats_through_the_gateway(gateway: str, fake_llm: FakeLLM) -> None:
    fake_llm.push(Step(content="Hello from the model"))

    with client(gateway) as oa:
        completion = oa.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "Say hello"}],
            temperature=0.3,
            max_tokens=20,
        )

    assert completion.choices[0].message.content == "Hello from the model"
    [request] = fake_llm.chat_requests()
    assert request.body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert (request.body["temperature"], request.body["max_tokens"]) == (0.3, 20)


def test_the_openai_client_streams_through_the_gateway(gateway: str, fake_llm: FakeLLM) -> None:
    fake_llm.push(Step(content="A streamed answer that spans several chunks."))

    with client(gateway) as oa:
        stream = oa.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]

    assert len(pieces) > 3
    assert "".join(pieces) == "A streamed answer that spans several chunks."


@pytest.mark.parametrize("stream", [False, True])
def test_the_code_review_model_answers_the_spec_shape_in_the_content(
    gateway: str, fake_llm: FakeLLM, stream: bool
) -> None:
    code = f"def mul(x, y):\n    return x * y  # stream={stream}\n"

    with client(gateway) as oa:
        if stream:
            chunks = oa.chat.completions.create(
                model="code-review", messages=[{"role": "user", "content": code}], stream=True
            )
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            completion = oa.chat.completions.create(
                model="code-review", messages=[{"role": "user", "content": code}]
            )
            content = completion.choices[0].message.content or ""

    suggestions = json.loads(content)["suggestions"]
    assert any(digest(code) in s for s in suggestions)
    assert fake_llm.chat_requests()[0].code == code


def test_offline_reviews_need_no_model_and_give_specific_findings(offline_gateway: str) -> None:
    code = "def add_item(item, items=[]):\n    items.append(item)\n    return items\n"

    response = httpx.post(f"{offline_gateway}/analyze", json={"function_code": code}, timeout=30)

    assert response.status_code == 200
    suggestions = response.json()["suggestions"]
    assert any("items" in s and "mutable" in s.lower() for s in suggestions)
    assert any(s.startswith("[typing]") for s in suggestions)
    assert response.headers["x-review-provider"] == "offline"


def test_offline_refuses_plain_chat_with_an_openai_shaped_error(offline_gateway: str) -> None:
    with client(offline_gateway) as oa, pytest.raises(openai.UnprocessableEntityError) as caught:
        oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    body: Any = caught.value.body
    assert "code-review" in caught.value.message
    assert body["code"] == "invalid_input"


@pytest.mark.parametrize(
    "body",
    [{}, {"function_code": ""}, {"function_code": 12}, {"code": "def f(): pass"}],
)
def test_invalid_analyze_bodies_are_422(offline_gateway: str, body: dict[str, Any]) -> None:
    response = httpx.post(f"{offline_gateway}/analyze", json=body)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "function_code" in response.json()["message"]


def test_the_analysis_side_passes_its_request_id_on_to_the_gateway(fake_llm: FakeLLM) -> None:
    from functions.adapters.gateway_client import GatewayReviewer
    from functions.core.correlation import correlation_id
    from functions.core.models import FunctionSource

    function = FunctionSource(
        name="m.f", path="m.py", qualname="f", start_line=1, end_line=2, source=CODE
    )

    async def review() -> list[str]:
        reviewer = GatewayReviewer(base_url=fake_llm.base_url, api_key="x", timeout=10)
        token = correlation_id.set("req-7f3a")
        try:
            return await reviewer.review(function)
        finally:
            correlation_id.reset(token)
            await reviewer.aclose()

    suggestions = anyio.run(review)

    assert suggestions
    assert fake_llm.chat_requests()[0].headers["x-request-id"] == "req-7f3a"
