"""Demo: start the gateway and the analysis service on embedded defaults and review functions.

    python scripts/demo.py                         # sample repo served on 127.0.0.1 (offline)
    python scripts/demo.py REPO_URL [NAME ...]     # e.g. https://github.com/psf/requests
    python scripts/demo.py --serve                 # keep the services running afterwards

Settings come from the environment as usual (LLM_PROVIDER, OPENAI_API_KEY, ...); with nothing
set, the gateway uses the offline static reviewer, so no key and no network are needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.git_server import GitHttpServer  # noqa: E402
from tests.support.sample import sample_files  # noqa: E402
from tests.support.services import Service  # noqa: E402

SAMPLE_FUNCTIONS = ["module_name.add", "shop.cart.Cart.total", "shop.cart.fetch_prices"]


def _print_progress(job: dict[str, Any], last: list[str]) -> None:
    progress = job.get("progress") or {}
    total = progress.get("total")
    done = f" {progress.get('done', 0)}/{total}" if total else ""
    line = f"  status {job['status']:<9} {progress.get('phase', ''):<8}{done}"
    if sys.stdout.isatty():
        print(f"\r{line}    ", end="", flush=True)
    elif line != (last[-1] if last else None):
        print(line, flush=True)  # a log, not a terminal: one line per change
    last.append(line)


def wait_for_job(analysis: str, job_id: str, timeout: float) -> dict[str, Any]:
    """Poll the job, showing progress, until it is READY or FAILED."""
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while True:
        job: dict[str, Any] = httpx.get(f"{analysis}/analyze/jobs/{job_id}").json()
        _print_progress(job, shown)
        if job["status"] in ("READY", "FAILED") or time.monotonic() > deadline:
            if sys.stdout.isatty():
                print()
            return job
        time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    """Start everything, review, report."""
    data_dir = Path(os.environ.get("DATA_DIR") or tempfile.mkdtemp(prefix="codereview-demo-"))
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        repo_url = args.repo_url
        allowed = os.environ.get("ALLOWED_REPO_HOSTS", "github.com")
        names = list(args.functions)
        if repo_url is None:
            git = stack.enter_context(GitHttpServer())
            repo_url = git.create_repo("demo/sample", sample_files())
            allowed = f"{allowed},127.0.0.1"  # the sample server, plus the usual hosts
            names = names or SAMPLE_FUNCTIONS
            print(f"Serving the sample repository at {repo_url}")
        gateway = stack.enter_context(
            Service(
                "functions.gateway.app:app",
                {"DATA_DIR": str(data_dir / "gateway")},
                logs / "gateway.log",
                port=args.gateway_port,
                isolated=False,
            )
        )
        analysis = stack.enter_context(
            Service(
                "functions.analysis.app:app",
                {
                    "DATA_DIR": str(data_dir / "analysis"),
                    "ALLOWED_REPO_HOSTS": allowed,
                    "LLM_GATEWAY_URL": f"{gateway.url}/v1",
                },
                logs / "analysis.log",
                port=args.analysis_port,
                isolated=False,
            )
        )
        health = httpx.get(f"{gateway.url}/healthz").json()
        print(f"Gateway   {gateway.url}  (providers: {', '.join(health['providers'])})")
        print(f"Analysis  {analysis.url}")
        print(f"\nPOST /analyze/start {{'repo_url': '{repo_url}'}}")
        started = httpx.post(f"{analysis.url}/analyze/start", json={"repo_url": repo_url})
        if started.status_code != 200:
            print(f"  refused ({started.status_code}): {started.json()['message']}")
            return 1
        job_id = started.json()["job_id"]
        print(f"  job_id {job_id}")
        job = wait_for_job(analysis.url, job_id, timeout=args.timeout)
        if job["status"] != "READY":
            error = job.get("error") or {}
            print(f"  the fetch did not finish: {error.get('message', job['status'])}")
            return 1
        stats = job["stats"]
        # The fetch does not parse, so it does not count functions (stats say null).
        print(
            f"  {stats['python_files']} Python files, "
            f"commit {stats['commit'][:12]}, {stats['total_seconds']} s"
        )
        if not names:
            listed = httpx.get(
                f"{analysis.url}/analyze/jobs/{job_id}/functions", params={"limit": 3}
            ).json()
            names = listed["functions"]
        for name in names:
            print(f"\nPOST /analyze/function {{'function_name': '{name}'}}")
            response = httpx.post(
                f"{analysis.url}/analyze/function",
                json={"job_id": job_id, "function_name": name},
                timeout=120,
            )
            body = response.json()
            if response.status_code != 200:
                print(f"  {response.status_code} {body.get('code')}: {body.get('message')}")
                continue
            for suggestion in body["suggestions"] or ["(no suggestions: nothing to fix)"]:
                print(f"  - {suggestion}")
        if args.serve:
            print("\nServices are running; press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


def main() -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("repo_url", nargs="?", help="repository to review (default: a sample)")
    parser.add_argument("functions", nargs="*", help="function names to review")
    parser.add_argument("--serve", action="store_true", help="keep the services running")
    parser.add_argument("--gateway-port", type=int, default=8001)
    parser.add_argument("--analysis-port", type=int, default=8000)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the fetch"
    )
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
