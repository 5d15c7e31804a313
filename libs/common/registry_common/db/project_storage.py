"""SQL of project_storage_usage: the daily per-project storage totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from registry_common.db import Executor


async def recalculate_project_storage(db: Executor) -> int:
    """Recompute every project's total in one statement; returns how many projects it wrote.

    A project's total counts each distinct blob it links once, however many of its
    repositories link it. Projects that no longer link anything drop to 0.
    """
    status: str = await db.execute(
        """
        WITH totals AS (
            SELECT namespace, sum(size)::bigint AS size
            FROM (
                SELECT DISTINCT r.namespace, b.digest, b.size
                FROM blobs b JOIN repositories r ON r.name = b.repository
            ) AS per_project_blobs
            GROUP BY namespace
        ),
        everything AS (
            SELECT namespace, size FROM totals
            UNION ALL
            SELECT u.namespace, 0 FROM project_storage_usage u
            WHERE NOT EXISTS (SELECT 1 FROM totals t WHERE t.namespace = u.namespace)
        )
        INSERT INTO project_storage_usage (namespace, size, updated_at)
        SELECT namespace, size, now() FROM everything
        ON CONFLICT (namespace) DO UPDATE SET size = EXCLUDED.size, updated_at = EXCLUDED.updated_at
        """
    )
    return int(status.rsplit(" ", 1)[1])


@dataclass(frozen=True, slots=True)
class ProjectStorage:
    """A project's total from the last calculateProjectStorage run."""

    size: int
    updated_at: datetime


async def project_total(db: Executor, project: str) -> ProjectStorage | None:
    """The stored total of `project`; None when the job has not counted it yet."""
    row = await db.fetchrow(
        "SELECT size, updated_at FROM project_storage_usage WHERE namespace = $1", project
    )
    if row is None:
        return None
    return ProjectStorage(size=row["size"], updated_at=row["updated_at"])
