"""Running a job: one at a time across all replicas (advisory lock), timed, counted, logged."""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg
import structlog

from registry_common import metrics
from registry_common.db.pool import UNAVAILABLE_ERRORS
from registry_common.settings import Settings
from registry_common.storage.base import ObjectStore

log = structlog.get_logger("registry.jobs")


class JobName(StrEnum):
    """The jobs, named as the seed's `/internal/<job>` endpoints."""

    INDEX_MANIFESTS = "indexManifests"
    RUN_BLOB_GC = "runBlobGC"
    CALCULATE_PROJECT_STORAGE = "calculateProjectStorage"
    RUN_ALL = "runAll"


class JobOutcome(StrEnum):
    """How a trigger ended (a failure raises JobFailed instead)."""

    COMPLETED = "completed"
    ALREADY_RUNNING = "already running"


class JobFailed(Exception):
    """A job (or a step of runAll) failed; `job` names it."""

    def __init__(self, job: JobName, cause: BaseException) -> None:
        super().__init__(f"{job} failed: {type(cause).__name__}: {cause}")
        self.job = job


@dataclass
class JobContext:
    """What every job works with."""

    pool: asyncpg.Pool
    store: ObjectStore
    settings: Settings


@dataclass
class JobReport:
    """Counts a job run reports (scanned, unlinked, deleted, bytes_freed, ...)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, amount: int = 1) -> None:
        """Add to one count."""
        self.counts[kind] = self.counts.get(kind, 0) + amount


JobFunction = Callable[[JobContext, JobReport], Awaitable[None]]


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


async def run_job(context: JobContext, job: JobName) -> JobOutcome:
    """Run one job by name (runAll: the three in order; the first failure stops the rest)."""
    from registry_common.jobs.gc import run_blob_gc
    from registry_common.jobs.index import index_manifests
    from registry_common.jobs.storage_usage import calculate_project_storage

    steps: dict[JobName, JobFunction] = {
        JobName.INDEX_MANIFESTS: index_manifests,
        JobName.RUN_BLOB_GC: run_blob_gc,
        JobName.CALCULATE_PROJECT_STORAGE: calculate_project_storage,
    }
    if job is not JobName.RUN_ALL:
        return await run_locked(context, job, steps[job])

    async def run_all(context: JobContext, report: JobReport) -> None:
        for step, work in steps.items():
            outcome = await run_locked(context, step, work)
            report.add(f"{step.value}_{outcome.name.lower()}")

    return await run_locked(context, JobName.RUN_ALL, run_all)
