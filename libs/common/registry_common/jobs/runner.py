"""Running a job: one at a time across all replicas (advisory lock), timed, counted, logged."""

from __future__ import annotations

import time
import zlib

import structlog

from registry_common import metrics
from registry_common.db.pool import UNAVAILABLE_ERRORS
from registry_common.jobs.base import (
    JobContext,
    JobFailed,
    JobFunction,
    JobName,
    JobOutcome,
    JobReport,
)

log = structlog.get_logger("registry.jobs")


def advisory_key(job: JobName) -> int:
    """A stable 63-bit advisory-lock key per job, shared by every replica."""
    return 0x4A0B_0000_0000 + zlib.crc32(job.value.encode())


async def run_locked(context: JobContext, job: JobName, work: JobFunction) -> JobOutcome:
    """Run `work` holding the job's advisory lock; ALREADY_RUNNING at once if another holds it.

    The lock is session-level on a connection kept for the whole run, so it is released even
    when the process dies (PostgreSQL drops the session).
    """
    async with context.pool.acquire() as connection:
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key(job)):
            log.info("job_already_running", job=job.value)
            return JobOutcome.ALREADY_RUNNING
        try:
            await _timed(context, job, work)
        finally:
            try:
                await connection.execute("SELECT pg_advisory_unlock($1)", advisory_key(job))
            except UNAVAILABLE_ERRORS:
                # Closing the session releases the lock; never hand a connection that may
                # still hold it back to the pool (whose reset leaves locks alone).
                connection.terminate()
    return JobOutcome.COMPLETED


async def _timed(context: JobContext, job: JobName, work: JobFunction) -> None:
    report = JobReport()
    started = time.perf_counter()
    log.info("job_started", job=job.value)
    try:
        await work(context, report)
    except Exception as exc:
        duration = time.perf_counter() - started
        metrics.JOB_DURATION.labels(job.value, "failure").observe(duration)
        log.exception("job_failed", job=job.value, duration_s=round(duration, 3), **report.counts)
        if isinstance(exc, JobFailed):
            raise  # a step of runAll: keep the step's name
        raise JobFailed(job, exc) from exc
    duration = time.perf_counter() - started
    metrics.JOB_DURATION.labels(job.value, "success").observe(duration)
    metrics.JOB_LAST_SUCCESS.labels(job.value).set_to_current_time()
    for kind, amount in report.counts.items():
        metrics.JOB_ITEMS.labels(job.value, kind).inc(amount)
    log.info("job_finished", job=job.value, duration_s=round(duration, 3), **report.counts)
