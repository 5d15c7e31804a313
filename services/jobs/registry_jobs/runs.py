"""Where every trigger (HTTP, Pub/Sub, timer) runs a job, so that shutdown can drain them all.

A run is a task of its own: shutdown stops new runs, lets the running ones finish within
SHUTDOWN_TIMEOUT and cancels what is left (jobs are idempotent and transactional, so a cancelled
run is simply done again by the next trigger).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from registry_common.http import DB_POOL, OBJECT_STORE, SETTINGS
from registry_common.jobs.base import JobContext, JobName, JobOutcome
from registry_common.jobs.catalog import run_job

JobRunner = Callable[[JobContext, JobName], Awaitable[JobOutcome]]

log = structlog.get_logger("registry.jobs")


class JobsClosing(Exception):
    """The service is shutting down and starts no new job."""


class JobInterrupted(Exception):
    """A run was cancelled because the service shut down before it finished."""

    def __init__(self, job: JobName) -> None:
        super().__init__(f"{job} interrupted by shutdown")
        self.job = job


class JobRuns:
    """The job runs in progress in this process, whatever triggered them."""

    def __init__(self, runner: JobRunner = run_job) -> None:
        self._runner = runner
        self._running: set[asyncio.Task[JobOutcome]] = set()
        self._closing = False

    @property
    def closing(self) -> bool:
        """True once shutdown began: no new run starts."""
        return self._closing

    async def run(self, context: JobContext, job: JobName, trigger: str) -> JobOutcome:
        """Run `job` for `trigger` and return its outcome; JobFailed when it fails,
        JobsClosing or JobInterrupted when shutdown refuses or cancels it."""
        if self._closing:
            raise JobsClosing
        task = asyncio.create_task(self._run(context, job, trigger), name=f"job-{job}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            # Cancelling the caller cancels the run too (awaiting a task propagates it).
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise JobInterrupted(job) from None
            raise

    async def _run(self, context: JobContext, job: JobName, trigger: str) -> JobOutcome:
        structlog.contextvars.bind_contextvars(trigger=trigger)
        return await self._runner(context, job)

    def refuse_new_runs(self) -> None:
        """From now on `run` raises JobsClosing."""
        self._closing = True

    async def close(self, grace_seconds: float) -> None:
        """Refuse new runs, wait up to `grace_seconds` for the running ones, cancel the rest."""
        self.refuse_new_runs()
        running = set(self._running)
        if not running:
            return
        log.info("jobs_draining", running=len(running), grace_s=grace_seconds)
        _, pending = await asyncio.wait(running, timeout=grace_seconds)
        for task in pending:
            log.warning("job_cancelled_by_shutdown", task=task.get_name())
            task.cancel()
        if pending:
            await asyncio.wait(pending)


JOB_RUNS = web.AppKey("job_runs", JobRuns)


def job_context(app: web.Application) -> JobContext:
    """The resources a job works with, from the running app."""
    return JobContext(pool=app[DB_POOL], store=app[OBJECT_STORE], settings=app[SETTINGS])
