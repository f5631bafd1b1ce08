"""The composition root: the only place that chooses adapters, from Settings.

Entry points (the FastAPI apps, the Lambda handlers, the demo) call ``analysis_container`` or
``gateway_container``; nothing is built at import time, and each container is built once per
process (a warm Lambda container reuses it). Adapter modules are imported here, lazily, so the
embedded mode never imports boto3 and the domain never imports any adapter.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from functions.core.analyze import AnalysisContext, ManifestCache
from functions.core.jobs import FetchContext
from functions.core.ports import BlobStore, Clock, Dispatcher, JobStore, ReviewCache, Reviewer
from functions.core.review_jobs import ReviewContext, run_job
from functions.core.reviewer import CodeReviewer, RetryPolicy
from functions.core.settings import Dispatch, Mode, Provider, Settings

if TYPE_CHECKING:
    from functions.adapters.openai_chat import OpenAIChatModel

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class AnalysisContainer:
    """Everything the analysis service and the fetch worker use, built for one mode."""

    settings: Settings
    jobs: JobStore
    blobs: BlobStore
    reviewer: Reviewer
    clock: Clock = utc_now
    dispatcher: Dispatcher | None = None
    manifests: ManifestCache = field(init=False)
    _closers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.manifests = ManifestCache(self.blobs)

    def fetch_context(self, **overrides: Any) -> FetchContext:
        """The fetch use case's context (the Lambda adds its remaining time)."""
        from functions.adapters.git_pr import GitPullRequestFetcher

        scratch = None
        if self.settings.mode is Mode.EMBEDDED:
            scratch = self.settings.data_dir / "tmp"
            scratch.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "jobs": self.jobs,
            "blobs": self.blobs,
            "fetcher": GitPullRequestFetcher(),
            "clock": self.clock,
            "limits": self.settings.fetch_limits,
            "lease": self.settings.fetch_lease,
            "allowed_hosts": self.settings.allowed_repo_hosts,
            "scratch_dir": scratch,
        }
        values.update(overrides)
        return FetchContext(**values)

    def analysis_context(self) -> AnalysisContext:
        """The review-function use case's context."""
        return AnalysisContext(
            jobs=self.jobs,
            blobs=self.blobs,
            manifests=self.manifests,
            reviewer=self.reviewer,
            clock=self.clock,
            wait_seconds=self.settings.function_wait_seconds,
        )

    def require_dispatcher(self) -> Dispatcher:
        """The dispatcher; every container the composition root builds has one."""
        if self.dispatcher is None:
            raise RuntimeError("the analysis container has no dispatcher")
        return self.dispatcher

    def review_context(self, **overrides: Any) -> ReviewContext:
        """The review jobs' context: the fetch context plus a reviewer per job."""
        from functions.adapters.gateway_client import GatewayReviewer
        from functions.adapters.git_pr import GitPullRequestFetcher

        fetcher = GitPullRequestFetcher()
        fetch = self.fetch_context(fetcher=fetcher, **overrides)
        settings = self.settings

        def reviewer() -> GatewayReviewer:
            return GatewayReviewer(
                base_url=settings.llm_gateway_url,
                api_key=settings.llm_gateway_api_key.get_secret_value(),
                timeout=settings.llm_timeout_seconds + 3.0,
            )

        return ReviewContext(
            fetch=fetch,
            pull_requests=fetcher,
            reviewer_factory=reviewer,
            dispatcher=self.require_dispatcher(),
            concurrency=settings.review_concurrency,
            batch_size=settings.review_batch_size,
            timeout_seconds=settings.review_timeout_seconds,
        )

    def run_job(self, job_id: str, batch: int | None = None) -> None:
        """Run one job, or one review batch of it, here (the in-process worker's task)."""
        run_job(job_id, self.review_context(), batch)

    def recover(self, limit: int = 100) -> int:
        """Re-dispatch jobs a previous process left queued or fetching; return how many."""
        if self.dispatcher is None:
            return 0
        count = 0
        for job in self.jobs.list_unfinished(limit):
            if job.can_start(self.clock()):
                self.dispatcher.dispatch(job.job_id)
                count += 1
        return count

    async def aclose(self) -> None:
        """Stop the worker and close connections."""
        for closer in self._closers:
            result = closer()
            if hasattr(result, "__await__"):
                await result


def _boto3_client(service: str, settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    # boto3 reads AWS_ENDPOINT_URL (LocalStack, moto_server) and credentials itself.
    # 16 pooled connections: the function index reads files on several threads.
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=3,
        read_timeout=10,
        max_pool_connections=16,
    )
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def build_analysis_container(settings: Settings) -> AnalysisContainer:
    """Build the analysis service's adapters for ``settings.mode``."""
    from functions.adapters.gateway_client import GatewayReviewer

    reviewer = GatewayReviewer(
        base_url=settings.llm_gateway_url,
        api_key=settings.llm_gateway_api_key.get_secret_value(),
        timeout=settings.llm_timeout_seconds + 3.0,
    )
    if settings.mode is Mode.AWS:
        from functions.adapters.aws import DynamoJobStore, LambdaDispatcher, S3BlobStore

        in_process = settings.fetch_dispatch is Dispatch.INPROCESS
        if not (
            settings.jobs_table
            and settings.repos_bucket
            and (settings.fetch_function_name or in_process)
        ):
            raise RuntimeError(
                "APP_MODE=aws needs JOBS_TABLE, REPOS_BUCKET and FETCH_FUNCTION_NAME "
                "(template.yaml sets them; with FETCH_DISPATCH=inprocess no function is needed)"
            )
        container = AnalysisContainer(
            settings=settings,
            jobs=DynamoJobStore(
                _boto3_client("dynamodb", settings), settings.jobs_table, settings.job_ttl_days
            ),
            blobs=S3BlobStore(_boto3_client("s3", settings), settings.repos_bucket),
            reviewer=reviewer,
        )
        if in_process or not settings.fetch_function_name:
            _add_worker(container)
        else:
            container.dispatcher = LambdaDispatcher(
                _boto3_client("lambda", settings), settings.fetch_function_name
            )
    else:
        from functions.adapters.local import LocalFolderBlobStore, SqliteJobStore

        if settings.fetch_dispatch is Dispatch.LAMBDA:
            raise RuntimeError("FETCH_DISPATCH=lambda needs APP_MODE=aws")
        data = settings.data_dir
        container = AnalysisContainer(
            settings=settings,
            jobs=SqliteJobStore(data / "jobs.sqlite3"),
            blobs=LocalFolderBlobStore(data / "blobs"),
            reviewer=reviewer,
        )
        _add_worker(container)
    container._closers.append(reviewer.aclose)
    return container


def _add_worker(container: AnalysisContainer) -> None:
    """Run the container's jobs on worker threads in this process."""
    from functions.adapters.worker import InProcessDispatcher

    worker = InProcessDispatcher(container.run_job, workers=container.settings.fetch_workers)
    container.dispatcher = worker
    container._closers.append(lambda: worker.shutdown(wait=False))


@dataclass
class GatewayContainer:
    """Everything the gateway uses."""

    settings: Settings
    reviewer: CodeReviewer
    passthrough: OpenAIChatModel | None
    """The primary remote provider, for plain chat completions (None when offline)."""

    async def aclose(self) -> None:
        """Close provider connections."""
        for model in self.reviewer.chain:
            if model is not None and hasattr(model, "aclose"):
                await model.aclose()


def build_chat_model(provider: Provider, settings: Settings) -> OpenAIChatModel | None:
    """Build one provider's chat model; None for the offline static reviewer."""
    from functions.adapters.openai_chat import OpenAIChatModel, StructuredOutput

    if provider is Provider.OFFLINE:
        return None
    # provider -> (model, base URL, key, the key's setting, how it is asked for JSON)
    specs = {
        Provider.OPENAI: (
            settings.openai_model,
            settings.openai_base_url,
            settings.openai_api_key,
            "OPENAI_API_KEY",
            StructuredOutput.JSON_SCHEMA,
        ),
        Provider.DEEPSEEK: (
            settings.deepseek_model,
            settings.deepseek_base_url,
            settings.deepseek_api_key,
            "DEEPSEEK_API_KEY",
            StructuredOutput.JSON_OBJECT,
        ),
        Provider.LOCAL: (
            settings.local_llm_model,
            settings.local_llm_base_url,
            settings.local_llm_api_key,
            "LOCAL_LLM_API_KEY",
            StructuredOutput.JSON_SCHEMA,
        ),
    }
    model, base_url, key, key_setting, structured = specs[provider]
    return OpenAIChatModel(
        provider=provider.value,
        model=model,
        base_url=base_url,
        api_key=key.get_secret_value() if key else None,
        api_key_setting=key_setting,
        structured=structured,
        timeout=settings.llm_timeout_seconds,
    )


def build_review_cache(settings: Settings) -> ReviewCache | None:
    """The review cache for the mode: SQLite embedded, DynamoDB on AWS (if REVIEW_CACHE_TABLE)."""
    if settings.mode is Mode.EMBEDDED:
        from functions.adapters.cache import SqliteReviewCache

        return SqliteReviewCache(settings.data_dir / "review-cache.sqlite3")
    if settings.review_cache_table:
        from functions.adapters.aws import DynamoReviewCache

        return DynamoReviewCache(
            _boto3_client("dynamodb", settings),
            settings.review_cache_table,
            ttl_seconds=settings.job_ttl_days * 24 * 3600,
        )
    return None


def build_gateway_container(settings: Settings) -> GatewayContainer:
    """Build the gateway's provider chain, static reviewer and cache."""
    from functions.adapters.ruff_linter import StaticReviewer

    order = [settings.llm_provider]
    order += [p for p in settings.llm_fallback_providers if p not in order]
    chain = [build_chat_model(provider, settings) for provider in order]
    reviewer = CodeReviewer(
        chain=chain,
        static=StaticReviewer(),
        cache=build_review_cache(settings),
        timeout_seconds=settings.llm_timeout_seconds,
        context_tokens=settings.llm_context_tokens,
        max_output_tokens=settings.llm_max_output_tokens,
        temperature=settings.llm_temperature,
        retry=RetryPolicy(max_retries=settings.llm_max_retries),
    )
    return GatewayContainer(settings=settings, reviewer=reviewer, passthrough=chain[0])


@functools.cache
def settings_from_env() -> Settings:
    """Read the environment once per process."""
    return Settings()


@functools.cache
def analysis_container() -> AnalysisContainer:
    """The process's analysis container, built on first use."""
    return build_analysis_container(settings_from_env())


@functools.cache
def gateway_container() -> GatewayContainer:
    """The process's gateway container, built on first use."""
    return build_gateway_container(settings_from_env())
