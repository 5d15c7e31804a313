"""calculateProjectStorage: total blob bytes per project, in one set-based statement."""

from __future__ import annotations

from registry_common.db.project_storage import recalculate_project_storage
from registry_common.jobs.base import JobContext, JobReport


async def calculate_project_storage(context: JobContext, report: JobReport) -> None:
    """Upsert project_storage_usage from the blob links; PostgreSQL does the summing."""
    report.add("projects", await recalculate_project_storage(context.pool))
