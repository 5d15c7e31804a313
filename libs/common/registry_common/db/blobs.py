"""SQL of blob links (`blobs`: which repository may read a digest) and blob objects.

Locking contract, shared with the GC (jobs/gc.py):
- a `blob_objects` row exists while its object is in storage; whoever creates, deletes or
  relies on an object first locks that row (claim_object: FOR UPDATE via upsert;
  lock_object: FOR SHARE), so GC and a push of the same digest never interleave;
- a manifest PUT locks the links it references FOR SHARE (lock_links) until it commits its
  manifest_blobs rows, and GC locks a link FOR UPDATE before checking it is unreferenced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from registry_common.db import Connection, Executor

# A link's grace clock is refreshed at most this often by reads (keeps the hot path cheap).
TOUCH_INTERVAL = "1 hour"


async def claim_object(connection: Connection, digest: str, size: int) -> bool:
    """Lock the object row of `digest` (creating it); True when it was just created.

    Must run inside a transaction; the row stays locked until it ends.
    """
    inserted: bool = await connection.fetchval(
        """
        INSERT INTO blob_objects (digest, size) VALUES ($1, $2)
        ON CONFLICT (digest) DO UPDATE SET size = blob_objects.size
        RETURNING (xmax = 0)
        """,
        digest,
        size,
    )
    return inserted


async def lock_object(connection: Connection, digest: str) -> int | None:
    """Share-lock the object row of `digest` (in a transaction); its size, or None if absent."""
    size: int | None = await connection.fetchval(
        "SELECT size FROM blob_objects WHERE digest = $1 FOR SHARE", digest
    )
    return size


async def link_blob(db: Executor, repository: str, digest: str, size: int) -> None:
    """Link `digest` to `repository`, or restart the grace clock of an existing link."""
    await db.execute(
        """
        INSERT INTO blobs (repository, digest, size) VALUES ($1, $2, $3)
        ON CONFLICT (repository, digest) DO UPDATE SET accessed_at = now()
        """,
        repository,
        digest,
        size,
    )


async def linked_blob_size(db: Executor, repository: str, digest: str) -> int | None:
    """Size of a blob linked to `repository`, or None; refreshes the link's grace clock
    when it is older than TOUCH_INTERVAL (DESIGN.md invariant 4)."""
    size: int | None = await db.fetchval(
        f"""
        WITH touched AS (
            UPDATE blobs SET accessed_at = now()
            WHERE repository = $1 AND digest = $2
              AND accessed_at < now() - interval '{TOUCH_INTERVAL}'
        )
        SELECT size FROM blobs WHERE repository = $1 AND digest = $2
        """,  # noqa: S608 - a constant, not input
        repository,
        digest,
    )
    return size


async def lock_links(
    connection: Connection, repository: str, digests: Sequence[str]
) -> dict[str, int]:
    """Share-lock the links of `digests` in `repository` (in a transaction); size by digest of
    those that exist."""
    rows = await connection.fetch(
        """
        SELECT digest, size FROM blobs
        WHERE repository = $1 AND digest = ANY($2::text[])
        ORDER BY digest
        FOR SHARE
        """,
        repository,
        list(digests),
    )
    return {row["digest"]: row["size"] for row in rows}


class UnlinkOutcome(StrEnum):
    UNLINKED = "unlinked"
    REFERENCED = "referenced"
    MISSING = "missing"


async def unlink_unreferenced(
    connection: Connection, repository: str, digest: str, *, idle_before: datetime | None = None
) -> UnlinkOutcome:
    """Remove the link of `digest` from `repository` unless a manifest of it references the blob
    (or, with `idle_before`, unless the link was used since). Run inside a transaction.

    The link row is locked FOR UPDATE first and the reference check is a separate statement,
    so it sees every manifest committed before the lock was granted: a manifest PUT holding the
    link FOR SHARE either commits first (and the link stays) or finds the link gone.
    """
    locked = await connection.fetchval(
        """
        SELECT accessed_at FROM blobs WHERE repository = $1 AND digest = $2 FOR UPDATE
        """,
        repository,
        digest,
    )
    if locked is None:
        return UnlinkOutcome.MISSING
    if idle_before is not None and locked >= idle_before:
        return UnlinkOutcome.REFERENCED
    referenced = await connection.fetchval(
        "SELECT 1 FROM manifest_blobs WHERE repository = $1 AND blob_digest = $2 LIMIT 1",
        repository,
        digest,
    )
    if referenced:
        return UnlinkOutcome.REFERENCED
    await connection.execute(
        "DELETE FROM blobs WHERE repository = $1 AND digest = $2", repository, digest
    )
    return UnlinkOutcome.UNLINKED


async def repository_in_project_linking(db: Executor, project: str, digest: str) -> str | None:
    """A repository of `project` that links `digest` (for mounts without `from`), or None."""
    repository: str | None = await db.fetchval(
        """
        SELECT b.repository FROM blobs b JOIN repositories r ON r.name = b.repository
        WHERE b.digest = $1 AND r.namespace = $2
        LIMIT 1
        """,
        digest,
        project,
    )
    return repository
