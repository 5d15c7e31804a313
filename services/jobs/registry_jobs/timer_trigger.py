"""Local mode's trigger: run `runAll` every JOBS_INTERVAL.

It runs only when PUBSUB_SUBSCRIPTION is unset and JOBS_INTERVAL is above zero (production
uses Pub/Sub or Cloud Scheduler; `JOBS_INTERVAL=0` turns the timer off). The first run comes one
interval after start, each next one an interval after the previous run ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from registry_common.http import SETTINGS
from registry_common.jobs.base import JobFailed, JobName
from registry_common.settings import Settings
from registry_jobs.runs import JOB_RUNS, JobInterrupted, JobsClosing, job_context

log = structlog.get_logger("registry.jobs")


def timer_enabled(settings: Settings) -> bool:
    """Whether this process runs `runAll` on a timer."""
    return not settings.pubsub_subscription and settings.jobs_interval.total_seconds() > 0


async def run_all_periodically(app: web.Application) -> None:
    """Sleep an interval, run `runAll`, repeat until shutdown; failures are logged, not fatal."""
    interval = app[SETTINGS].jobs_interval.total_seconds()
    runs = app[JOB_RUNS]
    log.info("jobs_timer_started", interval_s=interval)
    while True:
        await asyncio.sleep(interval)
        try:
            await runs.run(job_context(app), JobName.RUN_ALL, trigger="timer")
        except (JobsClosing, JobInterrupted):
            return
        except JobFailed:
            pass  # the runner logged it with its traceback; try again next interval
        except Exception:
            # For example PostgreSQL unreachable: the next interval tries again.
            log.exception("jobs_timer_run_failed")


async def timer_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the timer task for the app's lifetime."""
    task = asyncio.create_task(run_all_periodically(app), name="jobs-timer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
