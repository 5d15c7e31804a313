"""SQL of manifests, their blob references (`manifest_blobs`) and index children
(`manifest_children`).

A push of an index share-locks its children's rows (lock_manifests) until it commits its
`manifest_children` rows; a delete locks the manifest's row FOR UPDATE
(lock_manifest_for_delete) before looking for indexes that list it, so a child is never
deleted under an index being pushed (invariant 6 of docs/consistency.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from registry_common.db import Connection, Executor


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """A stored manifest; `content` is None when it was not asked for."""

    digest: str
    media_type: str
    size: int
    content: bytes | None


@dataclass(frozen=True, slots=True)
class ReferrerRow:
    """A manifest whose subject is the digest asked about."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    # The manifest's `annotations` as JSON text, or None when it has none.
    annotations_json: str | None


# Rows whose bytes never arrived (migrated from the old service) cannot be served. $3 says
# whether to return the bytes (a HEAD needs only their size).
_BY_DIGEST = """
    SELECT digest, media_type, size, CASE WHEN $3 THEN content END AS content FROM manifests
    WHERE repository = $1 AND digest = $2 AND content IS NOT NULL
"""
_BY_TAG = """
    SELECT m.digest, m.media_type, m.size, CASE WHEN $3 THEN m.content END AS content
    FROM tags t JOIN manifests m ON m.repository = t.repository AND m.digest = t.digest
    WHERE t.repository = $1 AND t.tag = $2 AND m.content IS NOT NULL
"""


def _manifest_row(record: asyncpg.Record | None) -> ManifestRow | None:
    if record is None:
        return None
    return ManifestRow(
        digest=record["digest"],
        media_type=record["media_type"],
        size=record["size"],
        content=record["content"],
    )


async def manifest_by_digest(
    db: Executor, repository: str, digest: str, *, with_content: bool = True
) -> ManifestRow | None:
    """The servable manifest `digest` of `repository`, or None."""
    return _manifest_row(await db.fetchrow(_BY_DIGEST, repository, digest, with_content))


async def manifest_by_tag(
    db: Executor, repository: str, tag: str, *, with_content: bool = True
) -> ManifestRow | None:
    """The servable manifest `tag` points to in `repository`, or None."""
    return _manifest_row(await db.fetchrow(_BY_TAG, repository, tag, with_content))


async def lock_manifests(
    connection: Connection, repository: str, digests: Sequence[str]
) -> set[str]:
    """Share-lock the rows of `digests` in `repository` (in a transaction); those that exist."""
    rows = await connection.fetch(
        """
        SELECT digest FROM manifests
        WHERE repository = $1 AND digest = ANY($2::text[])
        ORDER BY digest
        FOR SHARE
        """,
        repository,
        list(digests),
    )
    return {row["digest"] for row in rows}


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest's row as a push or an import writes it."""

    repository: str
    digest: str
    media_type: str
    content: bytes
    subject: str | None
    artifact_type: str | None
    # The manifest's `annotations` as JSON text, or None when it has none.
    annotations_json: str | None
    # None: now.
    created_at: datetime | None = None


async def save_manifest(connection: Connection, manifest: StoredManifest) -> bool:
    """Insert a manifest, or fill in the bytes of a row imported without them; True when this
    call stored the bytes. A row that has its bytes is left as it is: the same digest is the
    same bytes, and so the same media type, subject and annotations."""
    stored = await connection.fetchval(
        """
        INSERT INTO manifests (repository, digest, media_type, content, size, subject,
                               artifact_type, annotations, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()))
        ON CONFLICT (repository, digest) DO UPDATE SET
            media_type = EXCLUDED.media_type,
            content = EXCLUDED.content,
            size = EXCLUDED.size,
            subject = EXCLUDED.subject,
            artifact_type = EXCLUDED.artifact_type,
            annotations = EXCLUDED.annotations
        WHERE manifests.content IS NULL
        RETURNING 1
        """,
        manifest.repository,
        manifest.digest,
        manifest.media_type,
        manifest.content,
        len(manifest.content),
        manifest.subject,
        manifest.artifact_type,
        manifest.annotations_json,
        manifest.created_at,
    )
    return stored is not None


async def add_references(
    connection: Connection,
    blob_refs: Sequence[tuple[str, str, str]],
    child_refs: Sequence[tuple[str, str, str]],
) -> None:
    """Record (repository, manifest, blob) references in manifest_blobs and (repository,
    index, child) ones in manifest_children; rows that exist, and rows of manifests deleted
    meanwhile, are skipped. A push records one manifest's, indexManifests a batch's."""
    if blob_refs:
        await connection.execute(
            """
            INSERT INTO manifest_blobs (repository, manifest_digest, blob_digest)
            SELECT r.repository, r.manifest_digest, r.blob_digest
            FROM unnest($1::text[], $2::text[], $3::text[])
                AS r(repository, manifest_digest, blob_digest)
            WHERE EXISTS (
                SELECT 1 FROM manifests m
                WHERE m.repository = r.repository AND m.digest = r.manifest_digest)
            ON CONFLICT DO NOTHING
            """,
            [ref[0] for ref in blob_refs],
            [ref[1] for ref in blob_refs],
            [ref[2] for ref in blob_refs],
        )
    if child_refs:
        await connection.execute(
            """
            INSERT INTO manifest_children (repository, parent_digest, child_digest)
            SELECT r.repository, r.parent_digest, r.child_digest
            FROM unnest($1::text[], $2::text[], $3::text[])
                AS r(repository, parent_digest, child_digest)
            WHERE EXISTS (
                SELECT 1 FROM manifests m
                WHERE m.repository = r.repository AND m.digest = r.parent_digest)
            ON CONFLICT DO NOTHING
            """,
            [ref[0] for ref in child_refs],
            [ref[1] for ref in child_refs],
            [ref[2] for ref in child_refs],
        )


async def lock_manifest_for_delete(connection: Connection, repository: str, digest: str) -> bool:
    """Lock the manifest's row FOR UPDATE (in a transaction); False when there is none."""
    return bool(
        await connection.fetchval(
            "SELECT 1 FROM manifests WHERE repository = $1 AND digest = $2 FOR UPDATE",
            repository,
            digest,
        )
    )


async def parents_of(db: Executor, repository: str, digest: str, limit: int) -> list[str]:
    """Up to `limit` indexes of `repository` that list the manifest `digest`."""
    rows = await db.fetch(
        """
        SELECT parent_digest FROM manifest_children
        WHERE repository = $1 AND child_digest = $2
        ORDER BY parent_digest
        LIMIT $3
        """,
        repository,
        digest,
        limit,
    )
    return [row["parent_digest"] for row in rows]


async def delete_manifest_row(db: Executor, repository: str, digest: str) -> bool:
    """Delete a manifest; its tags, manifest_blobs and manifest_children rows go with it
    (foreign keys cascade). True when there was one."""
    status: str = await db.execute(
        "DELETE FROM manifests WHERE repository = $1 AND digest = $2", repository, digest
    )
    return status != "DELETE 0"


async def referrers(
    db: Executor,
    repository: str,
    subject: str,
    *,
    artifact_type: str | None,
    after: str | None,
    limit: int,
    annotations_budget: int,
) -> tuple[list[ReferrerRow], int]:
    """Manifests of `repository` whose subject is `subject`, in digest order after `after`.

    Returns at most `limit` rows, fewer once their annotations add up to more than
    `annotations_budget` bytes (the first row always comes), and how many of the `limit`
    candidates there were, so the caller can tell whether more follow.
    """
    # The budget keeps one page bounded however large the annotations a tenant pushed.
    rows = await db.fetch(
        """
        SELECT digest, media_type, size, artifact_type, annotations, candidates FROM (
            SELECT *,
                   sum(coalesce(octet_length(annotations), 0))
                       OVER (ORDER BY digest COLLATE "C") AS running,
                   row_number() OVER (ORDER BY digest COLLATE "C") AS position,
                   count(*) OVER () AS candidates
            FROM (
                SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                WHERE repository = $1 AND subject = $2
                  AND ($3::text IS NULL OR artifact_type = $3)
                  AND ($4::text IS NULL OR digest COLLATE "C" > $4)
                ORDER BY digest COLLATE "C"
                LIMIT $5
            ) page
        ) ranked
        WHERE position = 1 OR running <= $6
        ORDER BY digest COLLATE "C"
        """,
        repository,
        subject,
        artifact_type,
        after,
        limit,
        annotations_budget,
    )
    candidates = rows[0]["candidates"] if rows else 0
    return [
        ReferrerRow(
            digest=row["digest"],
            media_type=row["media_type"],
            size=row["size"],
            artifact_type=row["artifact_type"],
            annotations_json=row["annotations"],
        )
        for row in rows
    ], candidates


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """A manifest of a repository, as the management API lists it."""

    digest: str
    created_at: datetime


async def manifests_newest_first(db: Executor, repository: str) -> list[ManifestEntry]:
    """The repository's manifests, newest first."""
    rows = await db.fetch(
        """
        SELECT digest, created_at FROM manifests
        WHERE repository = $1
        ORDER BY created_at DESC, digest COLLATE "C"
        """,
        repository,
    )
    return [ManifestEntry(row["digest"], row["created_at"]) for row in rows]
