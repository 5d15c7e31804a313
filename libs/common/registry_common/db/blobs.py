"""SQL of blob links (`blobs`: which repository may read a digest) and blob objects
(`blob_objects`: one row per stored object, present while its bytes are).

The row locks these statements take, and the order callers take them in, are the protocol of
docs/consistency.md: claim_object and lock_object guard an object against the GC's object
delete (lock_orphan_object), lock_links guards links against the GC's unlink
(unlink_idle_unreferenced) and against unlink_unreferenced (invariants 1 to 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from registry_common.db import Connection, Executor

# A link's grace clock is refreshed at most this often by reads (keeps the hot path cheap)...
MAX_TOUCH_INTERVAL = timedelta(hours=1)


def touch_interval(grace_period: timedelta) -> timedelta:
    """How stale a link's grace clock may get before a read refreshes it: hourly, or more often
    when the grace period is short, so a read always keeps a blob for most of a grace period."""
    return min(MAX_TOUCH_INTERVAL, grace_period / 2)


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


async def linked_blob_size(
    db: Executor, repository: str, digest: str, touch_after: timedelta | None
) -> int | None:
    """Size of a blob linked to `repository`, or None; refreshes the link's grace clock when it
    is older than `touch_after` (invariant 4 of docs/consistency.md; see touch_interval), never
    when `touch_after` is None."""
    if touch_after is None:
        untouched: int | None = await db.fetchval(
            "SELECT size FROM blobs WHERE repository = $1 AND digest = $2", repository, digest
        )
        return untouched
    size: int | None = await db.fetchval(
        """
        WITH touched AS (
            UPDATE blobs SET accessed_at = now()
            WHERE repository = $1 AND digest = $2 AND accessed_at < now() - $3::interval
        )
        SELECT size FROM blobs WHERE repository = $1 AND digest = $2
        """,
        repository,
        digest,
        touch_after,
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


# --- Blob GC (jobs/gc.py, registry/blob_store.py): docs/consistency.md, "GC unlink" and
# "Object delete". ---


async def unlink_candidates(
    db: Executor, idle_before: datetime, after: tuple[str, str], limit: int
) -> list[tuple[str, str]]:
    """Links idle since `idle_before` that no manifest of their repository references, in key
    order after `after`; only candidates: unlink_idle_unreferenced decides under locks."""
    rows = await db.fetch(
        """
        SELECT b.repository, b.digest FROM blobs b
        WHERE (b.repository, b.digest) > ($2, $3) AND b.accessed_at < $1
          AND NOT EXISTS (
              SELECT 1 FROM manifest_blobs mb
              WHERE mb.repository = b.repository AND mb.blob_digest = b.digest)
        ORDER BY b.repository, b.digest
        LIMIT $4
        """,
        idle_before,
        after[0],
        after[1],
        limit,
    )
    return [(row["repository"], row["digest"]) for row in rows]


async def unlink_idle_unreferenced(
    connection: Connection, candidates: Sequence[tuple[str, str]], idle_before: datetime
) -> list[tuple[str, str, int]]:
    """Delete those candidate links that are still idle and unreferenced; in a transaction.

    First the links are locked FOR UPDATE (SKIP LOCKED: a link a manifest PUT holds FOR SHARE
    is in use, so it is skipped). Then a second statement, whose snapshot is taken after the
    locks were granted, deletes those no manifest of the repository references, unless the
    repository still has manifests that indexManifests has not indexed (their references are
    unknown). Returns (repository, digest, size) of each removed link.
    """
    repositories = [repository for repository, _ in candidates]
    digests = [digest for _, digest in candidates]
    locked = await connection.fetch(
        """
        SELECT b.repository, b.digest FROM blobs b
        JOIN unnest($1::text[], $2::text[]) AS c(repository, digest)
          ON b.repository = c.repository AND b.digest = c.digest
        WHERE b.accessed_at < $3
        ORDER BY b.repository, b.digest
        FOR UPDATE OF b SKIP LOCKED
        """,
        repositories,
        digests,
        idle_before,
    )
    if not locked:
        return []
    rows = await connection.fetch(
        """
        DELETE FROM blobs b
        USING unnest($1::text[], $2::text[]) AS c(repository, digest)
        WHERE b.repository = c.repository AND b.digest = c.digest
          AND NOT EXISTS (
              SELECT 1 FROM manifest_blobs mb
              WHERE mb.repository = b.repository AND mb.blob_digest = b.digest)
          AND NOT EXISTS (
              SELECT 1 FROM manifests m
              WHERE m.repository = b.repository
                AND NOT EXISTS (
                    SELECT 1 FROM manifest_blobs mb
                    WHERE mb.repository = m.repository AND mb.manifest_digest = m.digest)
                AND NOT EXISTS (
                    SELECT 1 FROM manifest_children mc
                    WHERE mc.repository = m.repository AND mc.parent_digest = m.digest))
        RETURNING b.repository, b.digest, b.size
        """,
        [row["repository"] for row in locked],
        [row["digest"] for row in locked],
    )
    return [(row["repository"], row["digest"], row["size"]) for row in rows]


async def adopt_linked_objects(db: Executor, limit: int) -> int:
    """Create missing object rows for linked digests (rows imported from the Go service have
    links but no object row); returns how many were created."""
    status: str = await db.execute(
        """
        INSERT INTO blob_objects (digest, size)
        SELECT DISTINCT ON (b.digest) b.digest, b.size FROM blobs b
        WHERE NOT EXISTS (SELECT 1 FROM blob_objects o WHERE o.digest = b.digest)
        LIMIT $1
        ON CONFLICT (digest) DO NOTHING
        """,
        limit,
    )
    return int(status.rsplit(" ", 1)[1])


async def orphan_object_candidates(
    db: Executor, created_before: datetime | None, after: str, limit: int
) -> list[str]:
    """Digests of object rows no repository links (older than `created_before` when given)."""
    rows = await db.fetch(
        """
        SELECT o.digest FROM blob_objects o
        WHERE o.digest > $2 AND ($1::timestamptz IS NULL OR o.created_at < $1)
          AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = o.digest)
        ORDER BY o.digest
        LIMIT $3
        """,
        created_before,
        after,
        limit,
    )
    return [row["digest"] for row in rows]


async def lock_orphan_object(
    connection: Connection, digest: str, created_before: datetime | None
) -> int | None:
    """Lock the object row of `digest` FOR UPDATE if it is still unlinked (and old enough);
    its size, or None when it is linked, young, gone or locked by a push. In a transaction.

    The link check is a statement of its own after the lock: a push that linked the digest
    committed before the lock was granted, and a later push waits for this transaction.
    """
    size: int | None = await connection.fetchval(
        """
        SELECT size FROM blob_objects
        WHERE digest = $1 AND ($2::timestamptz IS NULL OR created_at < $2)
        FOR UPDATE SKIP LOCKED
        """,
        digest,
        created_before,
    )
    if size is None:
        return None
    linked = await connection.fetchval("SELECT 1 FROM blobs WHERE digest = $1 LIMIT 1", digest)
    return None if linked else size


async def delete_object_row(connection: Connection, digest: str) -> None:
    """Remove the object row of `digest` (after its object was deleted from storage)."""
    await connection.execute("DELETE FROM blob_objects WHERE digest = $1", digest)
