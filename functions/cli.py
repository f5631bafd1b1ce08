"""``codereview``: review a pull request, a repository or one function against a running service.

    codereview pr https://github.com/owner/repo 42 --fail-on error
    codereview pr https://github.com/owner/repo 42 --format sarif --output review.sarif
    codereview repo https://github.com/owner/repo --include 'src/*' --max 200
    codereview function https://github.com/owner/repo package.module.func

The service is the analysis service's URL (``--server``, or CODEREVIEW_URL). Progress goes to
stderr, the report to stdout or ``--output``. Exit status: 0 when no finding is at or above
``--fail-on`` (default: never fail on findings), 1 when one is, 2 when the review could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import httpx

from functions.core.report import CATEGORY_SEVERITY, Severity, parse_suggestion
from functions.core.settings import ClientSettings

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FAIL_ON = ("error", "warning", "note", "never")


class ReviewError(Exception):
    """The service refused or failed the review; the message says why."""


class Client:
    """The analysis service's HTTP API, with errors turned into ReviewError."""

    def __init__(self, server: str, timeout: float) -> None:
        self._http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ReviewError with the service's message on failure."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ReviewError(f"cannot reach the service at {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = f"{body.get('code', 'error')}: {body.get('message', response.text)}"
            except ValueError:
                message = response.text[:300]
            raise ReviewError(f"{method} {path} failed ({response.status_code}) {message}")
        return response

    def wait(self, job_id: str, timeout: float, progress: TextIO) -> dict[str, Any]:
        """Poll the job until it ends, drawing a progress bar; return it."""
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.call("GET", f"/analyze/jobs/{job_id}").json()
            draw_progress(job, progress)
            if job["status"] == "READY":
                return job
            if job["status"] == "FAILED":
                error = job.get("error") or {}
                raise ReviewError(
                    f"job {job_id} failed ({error.get('code')}): {error.get('message')}"
                )
            if time.monotonic() > deadline:
                raise ReviewError(f"job {job_id} did not finish within {timeout:.0f} s")
            time.sleep(0.5)


def draw_progress(job: dict[str, Any], out: TextIO, width: int = 30) -> None:
    """Draw ``[#####-----] done/total phase`` on one line (a new line when not a terminal)."""
    progress = job.get("progress") or {}
    total, done = progress.get("total"), progress.get("done", 0)
    phase = progress.get("phase") or str(job["status"]).lower()
    if total:
        filled = int(width * min(done, total) / total)
        bar = f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} {phase}"
    else:
        bar = f"[{'.' * width}] {phase}"
    if out.isatty():
        out.write(f"\r{bar:<70}")
        if job["status"] in ("READY", "FAILED"):
            out.write("\n")
    else:
        out.write(bar + "\n")
    out.flush()


def at_or_above(findings: list[dict[str, Any]], threshold: str) -> int:
    """How many findings are at least as severe as ``threshold`` ("never": none count)."""
    if threshold == "never":
        return 0
    limit = Severity(threshold).rank
    return sum(1 for f in findings if Severity(f["severity"]).rank <= limit)


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _review_job(client: Client, job_id: str, args: argparse.Namespace) -> int:
    client.wait(job_id, args.timeout, sys.stderr)
    report = client.call("GET", f"/analyze/jobs/{job_id}/report").json()
    if args.format == "json":
        _emit(json.dumps(report, indent=2), args.output)
    else:
        rendered = client.call(
            "GET", f"/analyze/jobs/{job_id}/report", params={"format": args.format}
        )
        _emit(rendered.text, args.output)
    failing = at_or_above(report["findings"], args.fail_on)
    if failing:
        print(f"{failing} findings at or above {args.fail_on}", file=sys.stderr)
    return EXIT_FINDINGS if failing else EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the chosen command; return the exit status."""
    with Client(args.server, timeout=args.request_timeout) as client:
        if args.command == "pr":
            body: dict[str, Any] = {"repo_url": args.repo_url, "pr_number": args.number}
            if args.base_ref:
                body["base_ref"] = args.base_ref
            job_id = client.call("POST", "/analyze/pr", json=body).json()["job_id"]
            return _review_job(client, job_id, args)
        fetched = client.call("POST", "/analyze/start", json={"repo_url": args.repo_url})
        source_id = fetched.json()["job_id"]
        client.wait(source_id, args.timeout, sys.stderr)
        if args.command == "repo":
            body = {"job_id": source_id, "include": args.include, "exclude": args.exclude}
            if args.max:
                body["max_functions"] = args.max
            job_id = client.call("POST", "/analyze/repo", json=body).json()["job_id"]
            return _review_job(client, job_id, args)
        suggestions: list[str] = client.call(
            "POST", "/analyze/function", json={"job_id": source_id, "function_name": args.name}
        ).json()["suggestions"]
        findings = [
            {"severity": CATEGORY_SEVERITY.get(parse_suggestion(s)[0], Severity.NOTE).value}
            for s in suggestions
        ]
        if args.format == "json":
            _emit(json.dumps({"suggestions": suggestions}, indent=2), args.output)
        else:
            _emit("\n".join(f"- {s}" for s in suggestions) or "No suggestions.", args.output)
        return EXIT_FINDINGS if at_or_above(findings, args.fail_on) else EXIT_OK


def parser() -> argparse.ArgumentParser:
    """The command line."""
    main_parser = argparse.ArgumentParser(
        prog="codereview", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    main_parser.add_argument(
        "--server", default=ClientSettings().codereview_url, help="analysis service URL"
    )
    main_parser.add_argument("--timeout", type=float, default=1800.0, help="wait for the job, s")
    main_parser.add_argument("--request-timeout", type=float, default=120.0, help="per request, s")
    commands = main_parser.add_subparsers(dest="command", required=True)

    def outputs(sub: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
        sub.add_argument("--format", choices=formats, default="markdown")
        sub.add_argument("--output", help="write the report here instead of stdout")
        sub.add_argument(
            "--fail-on",
            choices=FAIL_ON,
            default="never",
            help="exit 1 when a finding is at least this severe",
        )

    pr = commands.add_parser("pr", help="review the functions a pull request changed")
    pr.add_argument("repo_url")
    pr.add_argument("number", type=int)
    pr.add_argument("--base-ref", help="branch to compare with (default: the test merge)")
    outputs(pr, ("markdown", "json", "sarif"))
    repo = commands.add_parser("repo", help="review every function of a repository")
    repo.add_argument("repo_url")
    repo.add_argument("--include", action="append", default=[], help="path glob (repeatable)")
    repo.add_argument("--exclude", action="append", default=[], help="path glob (repeatable)")
    repo.add_argument("--max", type=int, help="most functions to review")
    outputs(repo, ("markdown", "json", "sarif"))
    function = commands.add_parser("function", help="review one function")
    function.add_argument("repo_url")
    function.add_argument("name", help="dotted name, e.g. package.module.Class.method")
    outputs(function, ("markdown", "json"))
    return main_parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``codereview`` command."""
    args = parser().parse_args(argv)
    try:
        return run(args)
    except ReviewError as exc:
        print(f"codereview: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
