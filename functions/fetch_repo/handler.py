"""Lambda entry point of the repository fetcher, invoked asynchronously with {"job_id": ...}.

Async invocations are delivered at least once, so the use case is idempotent; the handler
watches the invocation's remaining time (the fetch fails the job cleanly before Lambda would
kill it) and leaves nothing behind in /tmp.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.core.bootstrap import analysis_container
from functions.core.correlation import correlation_id
from functions.core.review_jobs import run_job
from functions.lambda_runtime import LambdaEvent, observability

logger, tracer, metrics = observability("fetch_repo")


class FetchEvent(BaseModel):
    """The event the dispatcher sends: a job id, and a batch for review batches."""

    model_config = ConfigDict(extra="ignore")

    job_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    batch: int | None = Field(default=None, ge=0)
    """A review job's batch to run; absent for a fetch (and a review's planning)."""
    correlation_id: str | None = Field(default=None, max_length=128)
    """The id of the request that started the work, for logs."""


def _clear_scratch() -> None:
    # A previous invocation that was killed may have left a clone behind; /tmp is reused by
    # the next invocation of a warm container and is only 512 MB by default.
    for leftover in Path(tempfile.gettempdir()).glob("fetch-*"):
        shutil.rmtree(leftover, ignore_errors=True)


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(log_event=True, clear_state=True)
def handler(event: LambdaEvent, context: Any) -> dict[str, Any]:
    """Fetch the job's repository; return the job's resulting status."""
    try:
        fetch = FetchEvent.model_validate(event)
    except ValidationError as exc:
        # Retrying a malformed event cannot help: log it and finish.
        logger.error("invalid fetch event", extra={"errors": exc.errors(include_input=False)})
        metrics.add_metric(name="FetchInvalidEvent", unit="Count", value=1)
        return {"status": "invalid_event"}
    logger.append_keys(job_id=fetch.job_id)
    if fetch.correlation_id:
        logger.set_correlation_id(fetch.correlation_id)
    # Batches this invocation dispatches carry the same id on; reset after, so a warm
    # container's next invocation does not inherit it.
    token = correlation_id.set(fetch.correlation_id)
    _clear_scratch()
    try:
        ctx = analysis_container().review_context(
            remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0
        )
        job = run_job(fetch.job_id, ctx, fetch.batch)
    except Exception:
        # Raising makes Lambda retry the event (EventInvokeConfig); the job's conditional writes
        # make the retry safe. Counted so that an alarm can see workers failing.
        metrics.add_metric(name="FetchRaised", unit="Count", value=1)
        raise
    finally:
        correlation_id.reset(token)
    status = job.status.value if job is not None else "unknown_job"
    metrics.add_metric(name=f"Fetch{status.title().replace('_', '')}", unit="Count", value=1)
    return {"job_id": fetch.job_id, "status": status}
