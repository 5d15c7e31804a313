"""The jobs by name, and `runAll`: the only module that imports every job."""

from __future__ import annotations

from registry_common.jobs.base import JobContext, JobFunction, JobName, JobOutcome, JobReport
from registry_common.jobs.gc import run_blob_gc
from registry_common.jobs.index import index_manifests
from registry_common.jobs.runner import run_locked
from registry_common.jobs.storage_usage import calculate_project_storage

# The steps of runAll, in the order it runs them.
JOBS: dict[JobName, JobFunction] = {
    JobName.INDEX_MANIFESTS: index_manifests,
    JobName.RUN_BLOB_GC: run_blob_gc,
    JobName.CALCULATE_PROJECT_STORAGE: calculate_project_storage,
}


async def _run_all(context: JobContext, report: JobReport) -> None:
    for step, work in JOBS.items():
        outcome = await run_locked(context, step, work)
        report.add(f"{step.value}_{outcome.name.lower()}")


async def run_job(context: JobContext, job: JobName) -> JobOutcome:
    """Run one job by name (runAll: every job in order; the first failure stops the rest)."""
    if job is JobName.RUN_ALL:
        return await run_locked(context, JobName.RUN_ALL, _run_all)
    return await run_locked(context, job, JOBS[job])
