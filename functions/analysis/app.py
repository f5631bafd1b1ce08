"""The code-analysis service: fetch a repository in the background, review its functions.

``functions.analysis.app:app`` for uvicorn; ``create_app(container)`` for tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.core.analyze import locate_function, review_function
from functions.core.bootstrap import AnalysisContainer, analysis_container
from functions.core.jobs import get_job, start_fetch, wait_until_ready
from functions.core.models import Job, JobProgress, JobStats, ReviewOptions
from functions.core.report import to_markdown, to_sarif
from functions.core.review_jobs import (
    load_report,
    start_pull_request_review,
    start_repository_review,
)
from functions.core.settings import Mode
from functions.web import Lazy, build_app


class StartRequest(BaseModel):
    """Body of POST /analyze/start."""

    repo_url: str = Field(min_length=1, max_length=2048, examples=["https://github.com/owner/repo"])


class StartResponse(BaseModel):
    """The id to poll and to review functions with."""

    job_id: str


class FunctionRequest(BaseModel):
    """Body of POST /analyze/function."""

    job_id: str = Field(min_length=1, max_length=200)
    function_name: str = Field(min_length=1, max_length=512, examples=["module_name.add"])


class FunctionResponse(BaseModel):
    """Review suggestions for one function."""

    suggestions: list[str]


class SourceResponse(BaseModel):
    """A located function's source."""

    function_name: str
    path: str
    qualname: str
    start_line: int
    end_line: int
    source: str


class JobError(BaseModel):
    """Why a job failed."""

    code: str
    message: str


class JobView(BaseModel):
    """A job's status, timestamps, error reason and statistics."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    repo_url: str
    kind: str
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: JobError | None
    progress: JobProgress | None
    stats: JobStats | None
    review: ReviewOptions | None = None

    @classmethod
    def of(cls, job: Job) -> JobView:
        """Present a job."""
        error = (
            JobError(code=job.error_code or "failed", message=job.error_message or "")
            if job.error_code or job.error_message
            else None
        )
        return cls(
            job_id=job.job_id,
            repo_url=job.repo_url,
            kind=job.kind.value,
            status=job.status.value,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            error=error,
            progress=job.progress,
            stats=job.stats,
            review=job.review,
        )


class PullRequestRequest(BaseModel):
    """Body of POST /analyze/pr."""

    repo_url: str = Field(min_length=1, max_length=2048, examples=["https://github.com/owner/repo"])
    pr_number: int = Field(ge=1, le=10_000_000, examples=[42])
    base_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$",
        description="Branch to compare with; default: GitHub's test merge or the default branch.",
    )


class RepoReviewRequest(BaseModel):
    """Body of POST /analyze/repo."""

    job_id: str = Field(min_length=1, max_length=200)
    include: list[str] = Field(default_factory=list, max_length=50, examples=[["src/**.py"]])
    exclude: list[str] = Field(default_factory=list, max_length=50, examples=[["tests/*"]])
    max_functions: int | None = Field(default=None, ge=1, le=5000)


class FunctionList(BaseModel):
    """Function names of a fetched repository, as /analyze/function takes them."""

    job_id: str
    total: int
    functions: list[str]


def _container(request: Request) -> AnalysisContainer:
    lazy: Lazy[AnalysisContainer] = request.app.state.container
    return lazy.get()


ContainerDep = Annotated[AnalysisContainer, Depends(_container)]


def create_app(container: AnalysisContainer | None = None) -> FastAPI:
    """Build the analysis app; without ``container`` it is built from the environment on use."""
    lazy = Lazy(lambda: container) if container is not None else Lazy(analysis_container)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Under uvicorn: build now and re-queue what a previous process left unfinished.
        # (Mangum runs with lifespan off; there the container is built on first request.)
        built = lazy.get()
        if built.settings.mode is Mode.EMBEDDED:
            await anyio.to_thread.run_sync(built.recover)
        yield
        await built.aclose()

    app = build_app(
        title="Code analysis service",
        description="Fetch a repository in the background and review its Python functions.",
        lifespan=lifespan,
        container=lazy,
    )

    @app.get("/healthz")
    async def healthz(c: ContainerDep) -> dict[str, Any]:
        """Say the service is up and how it is configured."""
        return {"status": "ok", "service": "analysis", "mode": c.settings.mode.value}

    @app.post("/analyze/start")
    async def start(body: StartRequest, c: ContainerDep) -> StartResponse:
        """Validate the repository URL, start fetching it in the background, return the job id."""
        dispatcher = c.require_dispatcher()
        job = await anyio.to_thread.run_sync(
            lambda: start_fetch(
                body.repo_url,
                allowed_hosts=c.settings.allowed_repo_hosts,
                jobs=c.jobs,
                dispatcher=dispatcher,
                clock=c.clock,
            )
        )
        return StartResponse(job_id=job.job_id)

    @app.post("/analyze/function")
    async def function(body: FunctionRequest, c: ContainerDep) -> FunctionResponse:
        """Review one function; waits (bounded) for a job that is still fetching."""
        suggestions = await review_function(body.job_id, body.function_name, c.analysis_context())
        return FunctionResponse(suggestions=suggestions)

    @app.post("/analyze/function/source")
    async def function_source(body: FunctionRequest, c: ContainerDep) -> SourceResponse:
        """Return the exact source the review would send, without calling a model."""
        found = await locate_function(body.job_id, body.function_name, c.analysis_context())
        return SourceResponse(
            function_name=found.name,
            path=found.path,
            qualname=found.qualname,
            start_line=found.start_line,
            end_line=found.end_line,
            source=found.source,
        )

    @app.get("/analyze/jobs/{job_id}")
    async def job_status(job_id: str, c: ContainerDep) -> JobView:
        """Return the job's status, timestamps, error reason and statistics."""
        job = await anyio.to_thread.run_sync(get_job, job_id, c.jobs, c.clock)
        return JobView.of(job)

    @app.post("/analyze/pr")
    async def pull_request(body: PullRequestRequest, c: ContainerDep) -> StartResponse:
        """Start reviewing the functions a pull request changed; poll the job, then its report."""
        dispatcher = c.require_dispatcher()
        job = await anyio.to_thread.run_sync(
            lambda: start_pull_request_review(
                body.repo_url,
                body.pr_number,
                body.base_ref,
                allowed_hosts=c.settings.allowed_repo_hosts,
                jobs=c.jobs,
                dispatcher=dispatcher,
                clock=c.clock,
            )
        )
        return StartResponse(job_id=job.job_id)

    @app.post("/analyze/repo")
    async def repository(body: RepoReviewRequest, c: ContainerDep) -> StartResponse:
        """Start reviewing every (selected) function of a fetched repository."""
        dispatcher = c.require_dispatcher()
        job = await anyio.to_thread.run_sync(
            lambda: start_repository_review(
                body.job_id,
                body.include,
                body.exclude,
                body.max_functions,
                jobs=c.jobs,
                dispatcher=dispatcher,
                clock=c.clock,
            )
        )
        return StartResponse(job_id=job.job_id)

    @app.get("/analyze/jobs/{job_id}/report", response_model=None)
    async def report(
        job_id: str,
        c: ContainerDep,
        format: Annotated[Literal["json", "markdown", "sarif"], Query()] = "json",
    ) -> Response:
        """The review job's findings: JSON (default), Markdown or SARIF 2.1.0."""
        found = await anyio.to_thread.run_sync(load_report, job_id, c.jobs, c.blobs, c.clock)
        if format == "markdown":
            return PlainTextResponse(to_markdown(found), media_type="text/markdown")
        if format == "sarif":
            return JSONResponse(to_sarif(found), media_type="application/sarif+json")
        return JSONResponse(found.model_dump(mode="json"))

    @app.get("/analyze/jobs/{job_id}/functions")
    async def job_functions(
        job_id: str,
        c: ContainerDep,
        prefix: Annotated[str, Query(max_length=512)] = "",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> FunctionList:
        """List the function names of a READY job (optionally those starting with ``prefix``)."""
        await wait_until_ready(job_id, c.jobs, c.clock, wait_seconds=0)
        names = [n for n in await c.manifests.dotted_names(job_id) if n.startswith(prefix)]
        return FunctionList(job_id=job_id, total=len(names), functions=names[:limit])

    return app


app = create_app()
