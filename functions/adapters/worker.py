"""The embedded mode's background worker: fetch jobs run on a small thread pool."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class InProcessDispatcher:
    """Runs ``run(job_id, batch)`` on a thread pool of this process; returns at once."""

    def __init__(self, run: Callable[[str, int | None], object], workers: int = 2) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
        self._futures: set[Future[object]] = set()

    def dispatch(self, job_id: str, batch: int | None = None) -> None:
        """Queue the job (or one review batch of it) for a worker thread."""
        future = self._pool.submit(self._safe_run, job_id, batch)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _safe_run(self, job_id: str, batch: int | None) -> object:
        try:
            return self._run(job_id, batch)
        except Exception:  # the use case records failures; this is the last resort
            log.exception("fetch worker crashed on job %s", job_id)
            return None

    def pending(self) -> int:
        """How many dispatched jobs have not finished."""
        return len(self._futures)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait``, let running ones finish."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
