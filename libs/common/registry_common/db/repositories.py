"""SQL of repositories (`<project>/<path>`; namespace is the project)."""

from __future__ import annotations

from registry_common.db import Executor
from registry_common.oci.names import RepositoryName


async def ensure_repository(db: Executor, name: RepositoryName) -> None:
    """Create the repository row if it does not exist yet."""
    await db.execute(
        "INSERT INTO repositories (name, namespace) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name.full,
        name.project,
    )


async def repository_exists(db: Executor, name: RepositoryName) -> bool:
    """True when the repository has a row."""
    return bool(await db.fetchval("SELECT 1 FROM repositories WHERE name = $1", name.full))
