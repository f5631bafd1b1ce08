"""Pull-request and repository reviews end to end: both services under uvicorn, a real git
smart-HTTP server with pull-request refs the tests create, a model server that records what it
reviewed, and reports as JSON, Markdown and SARIF 2.1.0 (validated by Microsoft's validator)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_llm import FakeLLM, Recorded
from tests.support.git_server import GitHttpServer
from tests.support.sarif import validate
from tests.support.services import Service

pytestmark = pytest.mark.e2e

CORE = """\
def alpha(x):
    return x + 1

def beta(x):
    return x * 2

class Calc:
    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b
"""
CORE_PR = """\
def alpha(x):
    return x + 1

def beta(x):
    return x * 3

class Calc:
    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return b - a

LIMIT = 10
"""
UTIL = "def helper():\n    return 1\n\n\ndef unused():\n    return 2\n"
EXTRA = "import os\n\n\ndef gamma(path):\n    return os.path.exists(path)\n"


def first_line_review(request: Recorded) -> str:
    """A model that flags line 2 of whatever it reviews, naming the item's first line."""
    code = request.code or ""
    first = code.splitlines()[0].strip() if code.strip() else "?"
    return json.dumps(
        {"suggestions": [{"category": "bug", "message": f"Line 2: check this ({first})"}]}
    )


@dataclass
class Stack:
    analysis: str

    def start_pr(self, repo_url: str, number: int, **extra: Any) -> str:
        body = {"repo_url": repo_url, "pr_number": number, **extra}
        response = httpx.post(f"{self.analysis}/analyze/pr", json=body)
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["job_id"]
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.analysis}/analyze/jobs/{job_id}").json())

    def wait(self, job_id: str, timeout: float = 60.0) -> tuple[dict[str, Any], list[Any]]:
        """Poll until the job ends; return it and every progress value seen on the way."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["progress"] is not None:
                seen.append((job["status"], job["progress"]["done"], job["progress"]["total"]))
            if job["status"] in ("READY", "FAILED"):
                return job, seen
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {self.job(job_id)}")

    def report(self, job_id: str, fmt: str = "json") -> httpx.Response:
        return httpx.get(f"{self.analysis}/analyze/jobs/{job_id}/report", params={"format": fmt})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLLM) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("reviews")
    gateway = Service(
        "functions.gateway.app:app",
        {
            "LLM_PROVIDER": "local",
            "LOCAL_LLM_BASE_URL": fake_llm_server.base_url,
            "DATA_DIR": str(data / "gateway"),
            "LLM_MAX_RETRIES": "0",
        },
        data / "gateway.log",
    )
    with gateway:
        analysis = Service(
            "functions.analysis.app:app",
            {
                "ALLOWED_REPO_HOSTS": "127.0.0.1",
                "DATA_DIR": str(data / "analysis"),
                "LLM_GATEWAY_URL": f"{gateway.url}/v1",
                "REVIEW_CONCURRENCY": "4",
                "REVIEW_BATCH_SIZE": "50",
            },
            data / "analysis.log",
        )
        with analysis:
            yield Stack(analysis.url)


@pytest.fixture
def reviewing_llm(fake_llm: FakeLLM) -> Iterator[FakeLLM]:
    fake_llm.default = first_line_review
    yield fake_llm
    from tests.support.fake_llm import default_review

    fake_llm.default = default_review


@pytest.fixture(scope="module")
def pr_repo(git_server: GitHttpServer) -> str:
    url = git_server.create_repo(
        "prs/several-files",
        {
            "app/__init__.py": "",
            "app/core.py": CORE,
            "app/util.py": UTIL,
            "docs/readme.md": "# Docs\n",
            "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00binary",
            "assets/blob.py": b"\x00\x01\x02 not text",
            "old/name.py": "def moved():\n    return 'same'\n",
            "legacy/gone.py": "def gone():\n    return None\n",
        },
    )
    git_server.create_pull_request(
        "prs/several-files",
        7,
        {
            "app/core.py": CORE_PR,
            "app/extra.py": EXTRA,
            "docs/readme.md": "# Docs\n\nMore.\n",
            "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x01changed",
            "assets/blob.py": b"\x00\x01\x03 still not text",
        },
        delete=["legacy/gone.py"],
        renames={"old/name.py": "new/name.py"},
    )
    return url


def test_a_pull_request_review_covers_exactly_the_changed_functions(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM
) -> None:
    job_id = stack.start_pr(pr_repo, 7)

    job, _ = stack.wait(job_id)

    assert job["status"] == "READY", job
    assert job["kind"] == "pull_request"
    report = stack.report(job_id).json()
    assert report["reviewed"] == [
        "app.core.Calc.sub",
        "app.core.beta",
        "app.core:<module>",
        "app.extra.gamma",
        "app.extra:<module>",  # a new file's imports are new module-level code
    ]
    reviewed_code = sorted(
        (r.code or "").splitlines()[0].strip() for r in reviewing_llm.chat_requests()
    )
    assert reviewed_code == [
        "def beta(x):",
        "def gamma(path):",
        "def sub(self, a, b):",
        "import os",
        "return b - a",  # the module block starts 2 lines of context before `LIMIT = 10`
    ]
    assert job["stats"]["findings"] == len(report["findings"])


def test_findings_point_at_changed_lines_of_the_new_version(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM
) -> None:
    job_id = stack.start_pr(pr_repo, 7)
    stack.wait(job_id)

    every = stack.report(job_id).json()["findings"]
    # The model's finding per item (static findings are merged in beside it).
    findings = {f["function"]: f for f in every if f["message"].startswith("check this")}
    assert len(findings) == 5
    changed = {("app/core.py", n) for n in (5, 12, 14)} | {("app/extra.py", n) for n in range(1, 6)}
    assert all((f["path"], f["start_line"]) in changed for f in every)

    assert (findings["app.core.beta"]["start_line"], findings["app.core.beta"]["end_line"]) == (
        5,
        5,
    )
    assert findings["app.core.Calc.sub"]["start_line"] == 12
    assert findings["app.core:<module>"]["start_line"] == 14  # `LIMIT = 10`, the changed line
    assert findings["app.extra.gamma"]["start_line"] == 5  # a new file: every line is new
    assert findings["app.core.beta"]["path"] == "app/core.py"
    assert findings["app.core.beta"]["category"] == "bug"
    assert findings["app.core.beta"]["severity"] == "error"
    assert findings["app.core.beta"]["message"] == "check this (def beta(x):)"


def test_files_that_are_not_reviewed_are_listed_with_their_reason(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM
) -> None:
    job_id = stack.start_pr(pr_repo, 7)
    stack.wait(job_id)

    reasons = {n["path"]: n["reason"] for n in stack.report(job_id).json()["not_reviewed"]}

    assert reasons == {
        "assets/blob.py": "binary file",
        "assets/logo.png": "binary file",
        "docs/readme.md": "not a Python file",
        "legacy/gone.py": "deleted by the pull request",
        "new/name.py": "renamed from old/name.py, with no changed lines",
    }


def test_markdown_and_sarif_reports(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM, tmp_path: Path
) -> None:
    job_id = stack.start_pr(pr_repo, 7)
    stack.wait(job_id)

    markdown = stack.report(job_id, "markdown")
    sarif = stack.report(job_id, "sarif")

    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# Code review of pull request #7" in markdown.text
    assert "| error | `app/core.py:5` | `app.core.beta` |" in markdown.text
    assert "- `legacy/gone.py`: deleted by the pull request" in markdown.text
    log = sarif.json()
    assert validate(log, tmp_path) == []
    results = log["runs"][0]["results"]
    assert len(results) == len(stack.report(job_id).json()["findings"])
    beta = next(r for r in results if "check this (def beta(x):)" in r["message"]["text"])
    assert beta["level"] == "error"
    assert beta["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "app/core.py"
    assert beta["locations"][0]["physicalLocation"]["region"]["startLine"] == 5


def test_the_test_merge_ref_is_used_when_the_host_publishes_one(
    stack: Stack, git_server: GitHttpServer, reviewing_llm: FakeLLM
) -> None:
    name = "prs/merge-ref"
    url = git_server.create_repo(name, {"m.py": "def f():\n    return 1\n"})
    head = git_server.create_pull_request(name, 3, {"m.py": "def f():\n    return 2\n"})
    # The base moves on after the pull request was opened; the test merge contains both.
    base = git_server.add_commit(name, {"other.py": "def g():\n    return 3\n"})
    make_merge_ref(git_server, name, 3, base, head)

    job_id = stack.start_pr(url, 3)
    job, _ = stack.wait(job_id)

    assert job["status"] == "READY", job
    report = stack.report(job_id).json()
    assert report["reviewed"] == ["m.f"]  # not other.g, which came from the base
    assert report["base_commit"] == base


def make_merge_ref(server: GitHttpServer, name: str, number: int, base: str, head: str) -> None:
    """Store GitHub's kind of test merge commit at refs/pull/N/merge."""
    git_dir = str(server.repo_path(name))
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "HOME": git_dir,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={git_dir}", *args],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        ).stdout.strip()

    tree = git("merge-tree", "--write-tree", base, head)
    merge = git("commit-tree", tree, "-p", base, "-p", head, "-m", f"Merge #{number}")
    git("update-ref", f"refs/pull/{number}/merge", merge)


def test_a_pull_request_that_does_not_exist_fails_clearly(stack: Stack, pr_repo: str) -> None:
    job_id = stack.start_pr(pr_repo, 999)

    job, _ = stack.wait(job_id)

    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "pull_request_not_found"
    assert "#999" in job["error"]["message"]
    report = stack.report(job_id)
    assert report.status_code == 409
    assert report.json()["code"] == "job_failed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"repo_url": "http://127.0.0.1/o/r"}, "pr_number"),
        ({"repo_url": "http://127.0.0.1/o/r", "pr_number": 0}, "pr_number"),
        ({"repo_url": "http://127.0.0.1/o/r", "pr_number": 1, "base_ref": "-x"}, "base_ref"),
        ({"repo_url": "http://127.0.0.1/o/r", "pr_number": 1, "base_ref": "a b"}, "base_ref"),
    ],
)
def test_invalid_pull_request_bodies_are_422(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{stack.analysis}/analyze/pr", json=body)

    assert response.status_code == 422
    assert field in response.json()["message"]


def test_a_pull_request_of_200_functions_runs_with_bounded_concurrency_and_shows_progress(
    stack: Stack, git_server: GitHttpServer, reviewing_llm: FakeLLM
) -> None:
    name = "prs/large"
    url = git_server.create_repo(name, {"README.md": "large\n"})
    files = {
        f"pkg/mod{i:02d}.py": "\n\n".join(
            f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(10)
        )
        for i in range(20)
    }
    git_server.create_pull_request(name, 1, files)
    reviewing_llm.delay = 0.02

    job_id = stack.start_pr(url, 1)
    job, seen = stack.wait(job_id, timeout=120)

    assert job["status"] == "READY", job
    assert job["stats"]["reviewed"] == 200
    assert len(reviewing_llm.chat_requests()) == 200
    assert 1 < reviewing_llm.max_in_flight <= 4
    reviewing = [(done, total) for status, done, total in seen if status == "REVIEWING"]
    assert reviewing, "progress was never visible while reviewing"
    assert all(total == 200 for _, total in reviewing)
    assert [done for done, _ in reviewing] == sorted(done for done, _ in reviewing)
    assert job["progress"] == {"phase": "done", "done": 200, "total": 200}


def test_a_repository_review_covers_every_selected_function(
    stack: Stack, sample_repo_url: str, reviewing_llm: FakeLLM
) -> None:
    fetched = httpx.post(f"{stack.analysis}/analyze/start", json={"repo_url": sample_repo_url})
    source_id = fetched.json()["job_id"]
    assert stack.wait(source_id)[0]["status"] == "READY"

    response = httpx.post(
        f"{stack.analysis}/analyze/repo",
        json={"job_id": source_id, "include": ["shop/*"], "max_functions": 4},
    )
    job_id = response.json()["job_id"]
    job, _ = stack.wait(job_id)

    assert job["status"] == "READY", job
    report = stack.report(job_id).json()
    assert report["kind"] == "repo_review"
    assert len(report["reviewed"]) == 4
    assert all(name.startswith("shop.") for name in report["reviewed"])
    over = [n for n in report["not_reviewed"] if "over the limit" in n["reason"]]
    assert len(over) == 3  # shop has 7 functions and methods


def test_a_review_job_is_not_a_repository_to_look_functions_up_in(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM
) -> None:
    job_id = stack.start_pr(pr_repo, 7)
    stack.wait(job_id)

    response = httpx.post(
        f"{stack.analysis}/analyze/function", json={"job_id": job_id, "function_name": "beta"}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "wrong_job_kind"
    assert f"/analyze/jobs/{job_id}/report" in response.json()["message"]


def test_a_fetch_job_has_no_report_and_says_what_to_do(stack: Stack, sample_repo_url: str) -> None:
    fetched = httpx.post(f"{stack.analysis}/analyze/start", json={"repo_url": sample_repo_url})
    job_id = fetched.json()["job_id"]
    stack.wait(job_id)

    response = stack.report(job_id)

    assert response.status_code == 409
    assert response.json()["code"] == "report_not_available"
    assert "/analyze/repo" in response.json()["message"]


def codereview(*args: str, server: str) -> subprocess.CompletedProcess[str]:
    """Run the command-line client as a user would (``codereview`` is ``functions.cli:main``)."""
    import os
    import sys

    env = {**os.environ, "CODEREVIEW_URL": server}
    return subprocess.run(
        [sys.executable, "-m", "functions.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_cli_prints_the_markdown_report_and_fails_on_error_findings(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM
) -> None:
    done = codereview("pr", pr_repo, "7", "--fail-on", "error", server=stack.analysis)

    assert done.returncode == 1, done.stderr
    assert "# Code review of pull request #7" in done.stdout
    assert "app.core.beta" in done.stdout
    assert "reviewing" in done.stderr or "done" in done.stderr  # the progress bar
    assert "findings at or above error" in done.stderr


def test_the_cli_writes_sarif_and_passes_when_asked_never_to_fail(
    stack: Stack, pr_repo: str, reviewing_llm: FakeLLM, tmp_path: Path
) -> None:
    target = tmp_path / "review.sarif"

    done = codereview(
        "pr", pr_repo, "7", "--format", "sarif", "--output", str(target), server=stack.analysis
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["version"] == "2.1.0"
    assert done.stdout == ""


def test_the_cli_reviews_one_function(
    stack: Stack, sample_repo_url: str, reviewing_llm: FakeLLM
) -> None:
    done = codereview(
        "function", sample_repo_url, "module_name.add", "--format", "json", server=stack.analysis
    )

    assert done.returncode == 0, done.stderr
    assert "check this (def add(a, b):)" in " ".join(json.loads(done.stdout)["suggestions"])


def test_the_cli_explains_a_service_it_cannot_reach_with_exit_status_2() -> None:
    done = codereview("pr", "https://github.com/o/r", "1", server="http://127.0.0.1:9")

    assert done.returncode == 2
    assert "cannot reach the service at http://127.0.0.1:9" in done.stderr


def test_the_cli_reports_a_failed_job_with_exit_status_2(stack: Stack, pr_repo: str) -> None:
    done = codereview("pr", pr_repo, "999", server=stack.analysis)

    assert done.returncode == 2
    assert "pull_request_not_found" in done.stderr
