"""Both services under uvicorn, embedded mode, end to end.

Given a real git smart-HTTP server on 127.0.0.1 serving repositories the tests build, and an
OpenAI-compatible model server on 127.0.0.1 that records what it is sent, the gateway
(LLM_PROVIDER=local pointed at that server) and the analysis service run as real processes
configured only by environment variables, exactly as a user runs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_llm import FakeLLM, digest
from tests.support.git_server import GitHttpServer
from tests.support.sample import sample_source
from tests.support.services import Service

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    gateway: Service
    analysis: Service
    data_dir: Path

    def start(self, repo_url: str) -> str:
        response = httpx.post(f"{self.analysis.url}/analyze/start", json={"repo_url": repo_url})
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["job_id"]
        assert isinstance(body["job_id"], str)
        assert body["job_id"]
        return str(body["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.analysis.url}/analyze/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("READY", "FAILED"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {self.job(job_id)}")

    def review(self, job_id: str, name: str) -> httpx.Response:
        return httpx.post(
            f"{self.analysis.url}/analyze/function",
            json={"job_id": job_id, "function_name": name},
            timeout=60,
        )

    def source(self, job_id: str, name: str) -> httpx.Response:
        return httpx.post(
            f"{self.analysis.url}/analyze/function/source",
            json={"job_id": job_id, "function_name": name},
        )

    def healthy(self) -> bool:
        return all(
            httpx.get(f"{s.url}/healthz").status_code == 200 for s in (self.gateway, self.analysis)
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLLM) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("stack")
    gateway = Service(
        "functions.gateway.app:app",
        {
            "LLM_PROVIDER": "local",
            "LOCAL_LLM_BASE_URL": fake_llm_server.base_url,
            "LOCAL_LLM_MODEL": "fake-model",
            "DATA_DIR": str(data / "gateway"),
            "LLM_MAX_RETRIES": "0",
        },
        data / "gateway.log",
    )
    analysis = Service(
        "functions.analysis.app:app",
        {
            "ALLOWED_REPO_HOSTS": "127.0.0.1",
            "DATA_DIR": str(data / "analysis"),
            "FUNCTION_WAIT_SECONDS": "20",
        },
        data / "analysis.log",
    )
    with gateway:
        analysis.env["LLM_GATEWAY_URL"] = f"{gateway.url}/v1"
        with analysis:
            yield Stack(gateway, analysis, data)


@pytest.fixture(scope="module")
def sample_job(stack: Stack, sample_repo_url: str) -> str:
    job_id = stack.start(sample_repo_url)
    job = stack.wait(job_id)
    assert job["status"] == "READY", job
    return job_id


def test_review_returns_the_spec_shape_and_the_model_sees_the_exact_source(
    stack: Stack, sample_job: str, fake_llm: FakeLLM
) -> None:
    response = stack.review(sample_job, "module_name.add")

    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["suggestions"]
    assert body["suggestions"]
    assert all(isinstance(s, str) for s in body["suggestions"])
    [request] = fake_llm.chat_requests()
    expected = sample_source("module_name.py", 1, 2)
    assert request.code == expected
    assert request.body["model"] == "fake-model"
    # The model's own answer reaches the user, merged with real static findings.
    assert any(digest(expected) in s for s in body["suggestions"])
    assert any(s.startswith("[typing]") for s in body["suggestions"])


def test_job_status_shows_timestamps_and_statistics(stack: Stack, sample_job: str) -> None:
    job = stack.job(sample_job)

    assert job["status"] == "READY"
    assert job["error"] is None
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    stats = job["stats"]
    assert stats["python_files"] == 6
    assert stats["bytes_stored"] > 0
    # The fetch does not parse (functions are indexed on first lookup), so these are unknown.
    assert stats["unparsable_files"] is None
    assert stats["functions"] is None
    assert len(stats["commit"]) == 40


@pytest.mark.parametrize(
    ("name", "path", "first", "last"),
    [
        ("shop.cart.Cart.add_item", "shop/cart.py", 13, 14),
        ("shop.cart.Cart.describe", "shop/cart.py", 22, 27),  # starts at its decorator
        ("shop.cart.Cart.Receipt.render", "shop/cart.py", 30, 31),
        ("shop.cart.fetch_prices", "shop/cart.py", 34, 38),  # async def
        ("shop.version", "shop/__init__.py", 4, 5),  # pkg/__init__.py
        ("textkit.slug.slugify", "src/textkit/slug.py", 4, 7),  # src/ layout
        ("src.textkit.slug.slugify", "src/textkit/slug.py", 4, 7),
        ("average", "module_name.py", 5, 9),  # a bare unique name
    ],
)
def test_function_names_resolve_to_their_exact_source(
    stack: Stack, sample_job: str, name: str, path: str, first: int, last: int
) -> None:
    response = stack.source(sample_job, name)

    assert response.status_code == 200, response.text
    assert response.json()["path"] == path
    assert response.json()["source"] == sample_source(path, first, last)


def test_gateway_analyze_returns_the_spec_shape(stack: Stack, fake_llm: FakeLLM) -> None:
    code = "def add(a, b): return a + b"

    response = httpx.post(f"{stack.gateway.url}/analyze", json={"function_code": code}, timeout=30)

    assert response.status_code == 200, response.text
    assert list(response.json()) == ["suggestions"]
    assert fake_llm.chat_requests()[0].code == code


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/srv/git/repo",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "ssh://git@127.0.0.1/owner/repo",
        "https://user:secret@127.0.0.1/owner/repo",
        "http://localhost/owner/repo",
        "http://10.1.2.3/owner/repo",
        "http://[::1]/owner/repo",
        "https://github.com/only-owner",
        "https://evil.example.com/owner/repo",
        "http://127.0.0.1/owner/../../etc",
        "http://127.0.0.1/owner/repo?upload-pack=x",
    ],
)
def test_refused_urls_get_422_before_any_git_process(
    stack: Stack, git_server: GitHttpServer, url: str
) -> None:
    before = git_server.request_count

    response = httpx.post(f"{stack.analysis.url}/analyze/start", json={"repo_url": url})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "repo_url_rejected"
    assert "refused" in response.json()["message"]
    assert git_server.request_count == before
    assert stack.healthy()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "repo_url"),
        ({"repo_url": 42}, "repo_url"),
        ({"repo_url": ""}, "repo_url"),
    ],
)
def test_invalid_start_bodies_get_422_naming_the_field(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{stack.analysis.url}/analyze/start", json=body)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert field in response.json()["message"]


def test_a_missing_repository_fails_the_job_with_a_clear_reason(
    stack: Stack, git_server: GitHttpServer
) -> None:
    job_id = stack.start(git_server.url("nobody/nothing-here"))

    job = stack.wait(job_id)

    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "repo_not_found"
    assert "not found" in job["error"]["message"]
    review = stack.review(job_id, "module_name.add")
    assert review.status_code == 409
    assert review.json()["code"] == "job_failed"
    assert "repo_not_found" in review.json()["message"]


def test_unknown_job_is_404(stack: Stack) -> None:
    review = stack.review("no-such-job", "module_name.add")
    status = httpx.get(f"{stack.analysis.url}/analyze/jobs/no-such-job")

    assert review.status_code == 404
    assert review.json()["code"] == "job_not_found"
    assert status.status_code == 404
    assert status.json()["code"] == "job_not_found"


def test_unknown_function_is_404_with_the_closest_names(stack: Stack, sample_job: str) -> None:
    response = stack.review(sample_job, "shop.cart.Cart.totl")

    assert response.status_code == 404
    assert response.json()["code"] == "function_not_found"
    assert "shop.cart.Cart.total" in response.json()["details"]["closest"]
    assert "shop.cart.Cart.total" in response.json()["message"]


def test_invalid_function_name_is_422(stack: Stack, sample_job: str) -> None:
    response = stack.review(sample_job, "shop.cart; rm -rf /")

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_function_name"


def test_a_function_in_a_file_that_does_not_parse_is_a_clear_409(
    stack: Stack, sample_job: str
) -> None:
    response = stack.review(sample_job, "legacy.old.greet")

    assert response.status_code == 409
    assert response.json()["code"] == "source_unparsable"
    assert "legacy/old.py" in response.json()["message"]
    assert stack.healthy()


def test_an_ambiguous_short_name_lists_the_candidates(
    stack: Stack, git_server: GitHttpServer
) -> None:
    url = git_server.create_repo(
        "e2e/ambiguous", {"a.py": "def run():\n    pass\n", "b.py": "def run():\n    pass\n"}
    )
    job_id = stack.start(url)
    assert stack.wait(job_id)["status"] == "READY"

    response = stack.review(job_id, "run")

    assert response.status_code == 409
    assert response.json()["code"] == "function_ambiguous"
    assert sorted(response.json()["details"]["candidates"]) == ["a.run", "b.run"]


def test_review_waits_for_a_job_that_is_still_fetching(
    stack: Stack, git_server: GitHttpServer, fake_llm: FakeLLM
) -> None:
    url = git_server.create_repo("e2e/slow", {"calc.py": "def mul(x, y):\n    return x * y\n"})
    git_server.delay_seconds = 0.5
    try:
        job_id = stack.start(url)
        assert stack.job(job_id)["status"] in ("QUEUED", "FETCHING")

        response = stack.review(job_id, "calc.mul")
    finally:
        git_server.delay_seconds = 0.0

    assert response.status_code == 200, response.text
    assert fake_llm.chat_requests()[-1].code == "def mul(x, y):\n    return x * y\n"


def test_a_job_survives_a_crash_of_the_analysis_service(
    tmp_path: Path, stack: Stack, git_server: GitHttpServer
) -> None:
    url = git_server.create_repo("e2e/crash", {"m.py": "def f():\n    return 1\n"})
    service = Service(
        "functions.analysis.app:app",
        {
            "ALLOWED_REPO_HOSTS": "127.0.0.1",
            "DATA_DIR": str(tmp_path / "data"),
            "FETCH_LEASE_SECONDS": "1",
            "LLM_GATEWAY_URL": f"{stack.gateway.url}/v1",
        },
        tmp_path / "analysis.log",
    )
    git_server.delay_seconds = 1.0
    try:
        with service:
            started = httpx.post(f"{service.url}/analyze/start", json={"repo_url": url})
            job_id = started.json()["job_id"]
            deadline = time.monotonic() + 10
            while httpx.get(f"{service.url}/analyze/jobs/{job_id}").json()["status"] != "FETCHING":
                assert time.monotonic() < deadline
                time.sleep(0.05)

            service.kill()  # mid-fetch, like a crash or an OOM kill
            git_server.delay_seconds = 0.0
            time.sleep(1.5)  # the dead worker's lease expires
            service.start()

            deadline = time.monotonic() + 30
            job = httpx.get(f"{service.url}/analyze/jobs/{job_id}").json()
            while job["status"] not in ("READY", "FAILED") and time.monotonic() < deadline:
                time.sleep(0.1)
                job = httpx.get(f"{service.url}/analyze/jobs/{job_id}").json()
    finally:
        git_server.delay_seconds = 0.0

    assert job["status"] == "READY", job
    assert job["attempts"] == 2
