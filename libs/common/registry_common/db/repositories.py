"""SQL of repositories (`<project>/<path>`; namespace is the project)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from registry_common.db import Connection, Executor
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


# --- What the management API shows about a project's repositories. ---


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """A repository of a project."""

    name: RepositoryName
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    """A repository and the total size of the blobs linked to it."""

    created_at: datetime
    size: int


async def repositories_of_project(db: Executor, project: str) -> list[RepositoryEntry]:
    """Every repository of `project`, in name (byte) order."""
    # Both conditions: the namespace column and the name prefix say the same thing, and a row
    # where they disagree must not show up under another project.
    rows = await db.fetch(
        """
        SELECT name, created_at FROM repositories
        WHERE namespace = $1 AND starts_with(name, $2)
        ORDER BY name COLLATE "C"
        """,
        project,
        f"{project}/",
    )
    return [RepositoryEntry(RepositoryName(row["name"]), row["created_at"]) for row in rows]


async def repository_summary(db: Executor, name: RepositoryName) -> RepositorySummary | None:
    """When the repository was created and the bytes of the blobs linked to it; None when it
    does not exist."""
    row = await db.fetchrow(
        """
        SELECT r.created_at,
               (SELECT coalesce(sum(b.size), 0) FROM blobs b WHERE b.repository = r.name)::bigint
                   AS size
        FROM repositories r WHERE r.name = $1
        """,
        name.full,
    )
    if row is None:
        return None
    return RepositorySummary(created_at=row["created_at"], size=row["size"])


@dataclass(frozen=True, slots=True)
class DeletedRepository:
    """What a repository delete removed that has data outside PostgreSQL."""

    # Digests the repository linked: their objects go unless another repository links them.
    digests: list[str]
    # Upload sessions whose temporary data (uploads/<id>/) is left to remove.
    upload_ids: list[uuid.UUID]


async def delete_repository_rows(
    connection: Connection, name: RepositoryName
) -> DeletedRepository | None:
    """Delete a repository's rows: links, upload sessions, then the repository, whose manifests,
    tags, manifest_blobs and manifest_children go with it (foreign keys cascade). In a
    transaction; None when the repository does not exist (nothing is deleted then).

    Locks are taken in the order a manifest PUT takes them, so the two never deadlock: first
    the links (FOR UPDATE, in digest order like db.blobs.lock_links), then the repository row
    (the DELETE). A PUT that share-locked links first commits before this goes on; one that
    comes later finds the links gone and is refused. A blob committed by a push racing this
    delete loses its link to the cascade; its object, unlinked, is left to the blob GC
    (docs/consistency.md, "Repository delete"; invariant 10).
    """
    exists = await connection.fetchval("SELECT 1 FROM repositories WHERE name = $1", name.full)
    if not exists:
        return None
    await connection.execute(
        "SELECT 1 FROM blobs WHERE repository = $1 ORDER BY digest FOR UPDATE", name.full
    )
    digests = await connection.fetch(
        "DELETE FROM blobs WHERE repository = $1 RETURNING digest", name.full
    )
    uploads = await connection.fetch(
        "DELETE FROM upload_sessions WHERE repository = $1 RETURNING id, size", name.full
    )
    if uploads:
        # The project's upload usage shrinks with its sessions (after their rows, the order
        # of db.uploads).
        await connection.execute(
            """
            UPDATE upload_usage
            SET sessions = greatest(sessions - $2, 0),
                staged_bytes = greatest(staged_bytes - $3, 0)
            WHERE project = $1
            """,
            name.project,
            len(uploads),
            sum(row["size"] for row in uploads),
        )
    status: str = await connection.execute("DELETE FROM repositories WHERE name = $1", name.full)
    if status == "DELETE 0":
        return None  # a concurrent delete got there first
    return DeletedRepository(
        digests=sorted(row["digest"] for row in digests),
        upload_ids=[row["id"] for row in uploads],
    )
