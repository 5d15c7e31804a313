"""SQL of imported rows: batches from D1, manifests and tags from R2, blob link sizes.

Every insert skips rows that exist (ON CONFLICT DO NOTHING, or a fill that only touches a
manifest without bytes), so an import never overwrites what the registry has since changed,
and running it again adds nothing. A row whose parent is missing (a tag without its manifest,
a link without its repository) is not inserted; the `missing_*` queries name those rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from registry_common.db import Connection, Executor


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    namespace: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class ManifestStub:
    """A manifest row from D1: no bytes yet (R2 or indexManifests fills them in)."""

    repository: str
    digest: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class TagRow:
    repository: str
    tag: str
    digest: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class BlobLinkRow:
    repository: str
    digest: str
    size: int
    created_at: datetime | None


# --- D1 batches. Each returns the keys it inserted. A NULL time means "now". ---


async def insert_repositories(db: Executor, rows: Sequence[RepositoryRow]) -> set[str]:
    """Insert repositories that do not exist yet; the names inserted."""
    records = await db.fetch(
        """
        INSERT INTO repositories (name, namespace, created_at)
        SELECT r.name, r.namespace, coalesce(r.created_at, now())
        FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS r(name, namespace, created_at)
        ON CONFLICT (name) DO NOTHING
        RETURNING name
        """,
        [row.name for row in rows],
        [row.namespace for row in rows],
        [row.created_at for row in rows],
    )
    return {record["name"] for record in records}


async def existing_repositories(db: Executor, names: Sequence[str]) -> set[str]:
    """Those of `names` that have a row."""
    records = await db.fetch(
        "SELECT name FROM repositories WHERE name = ANY($1::text[])", list(names)
    )
    return {record["name"] for record in records}


async def insert_manifests(db: Executor, rows: Sequence[ManifestStub]) -> set[tuple[str, str]]:
    """Insert manifest rows without bytes (R2 or indexManifests fills them) where the repository
    exists and the manifest does not; the (repository, digest) keys inserted."""
    records = await db.fetch(
        """
        INSERT INTO manifests (repository, digest, created_at)
        SELECT r.repository, r.digest, coalesce(r.created_at, now())
        FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS r(repository, digest, created_at)
        WHERE EXISTS (SELECT 1 FROM repositories p WHERE p.name = r.repository)
        ON CONFLICT (repository, digest) DO NOTHING
        RETURNING repository, digest
        """,
        [row.repository for row in rows],
        [row.digest for row in rows],
        [row.created_at for row in rows],
    )
    return {(record["repository"], record["digest"]) for record in records}


async def existing_manifests(db: Executor, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of the (repository, digest) keys that have a manifest row."""
    records = await db.fetch(
        """
        SELECT m.repository, m.digest FROM manifests m
        JOIN unnest($1::text[], $2::text[]) AS k(repository, digest)
          ON m.repository = k.repository AND m.digest = k.digest
        """,
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {(record["repository"], record["digest"]) for record in records}


async def insert_tags(db: Executor, rows: Sequence[TagRow]) -> set[tuple[str, str]]:
    """Insert tags that do not exist yet and whose manifest does; the (repository, tag) keys
    inserted. D1's time is when the tag last moved: it becomes both created_at and updated_at."""
    records = await db.fetch(
        """
        INSERT INTO tags (repository, tag, digest, created_at, updated_at)
        SELECT r.repository, r.tag, r.digest,
               coalesce(r.created_at, now()), coalesce(r.created_at, now())
        FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
            AS r(repository, tag, digest, created_at)
        WHERE EXISTS (
            SELECT 1 FROM manifests m WHERE m.repository = r.repository AND m.digest = r.digest)
        ON CONFLICT (repository, tag) DO NOTHING
        RETURNING repository, tag
        """,
        [row.repository for row in rows],
        [row.tag for row in rows],
        [row.digest for row in rows],
        [row.created_at for row in rows],
    )
    return {(record["repository"], record["tag"]) for record in records}


async def existing_tags(db: Executor, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of the (repository, tag) keys that have a tag row."""
    records = await db.fetch(
        """
        SELECT t.repository, t.tag FROM tags t
        JOIN unnest($1::text[], $2::text[]) AS k(repository, tag)
          ON t.repository = k.repository AND t.tag = k.tag
        """,
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {(record["repository"], record["tag"]) for record in records}


async def insert_blob_links(db: Executor, rows: Sequence[BlobLinkRow]) -> set[tuple[str, str]]:
    """Insert blob links that do not exist yet where the repository exists; the (repository,
    digest) keys inserted. Their grace clock (accessed_at) starts now, so GC leaves them a full
    grace period for their manifests to be indexed."""
    records = await db.fetch(
        """
        INSERT INTO blobs (repository, digest, size, created_at)
        SELECT r.repository, r.digest, r.size, coalesce(r.created_at, now())
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[])
            AS r(repository, digest, size, created_at)
        WHERE EXISTS (SELECT 1 FROM repositories p WHERE p.name = r.repository)
        ON CONFLICT (repository, digest) DO NOTHING
        RETURNING repository, digest
        """,
        [row.repository for row in rows],
        [row.digest for row in rows],
        [row.size for row in rows],
        [row.created_at for row in rows],
    )
    return {(record["repository"], record["digest"]) for record in records}


async def existing_blob_links(
    db: Executor, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Those of the (repository, digest) keys that have a link."""
    records = await db.fetch(
        """
        SELECT b.repository, b.digest FROM blobs b
        JOIN unnest($1::text[], $2::text[]) AS k(repository, digest)
          ON b.repository = k.repository AND b.digest = k.digest
        """,
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {(record["repository"], record["digest"]) for record in records}


# --- R2 objects. ---


async def blob_link_size(db: Executor, repository: str, digest: str) -> int | None:
    """Size recorded on the link of `digest` in `repository`, or None without a link."""
    size: int | None = await db.fetchval(
        "SELECT size FROM blobs WHERE repository = $1 AND digest = $2", repository, digest
    )
    return size


async def blob_object_recorded(db: Executor, digest: str) -> bool:
    """True when `digest` has an object row (its bytes are stored under the digest)."""
    return bool(await db.fetchval("SELECT 1 FROM blob_objects WHERE digest = $1", digest))


async def correct_blob_link_size(db: Executor, repository: str, digest: str, size: int) -> None:
    """Set the link's size to the size of the bytes (D1 could hold a wrong one, and HEAD and
    manifest pushes trust the link)."""
    await db.execute(
        "UPDATE blobs SET size = $3 WHERE repository = $1 AND digest = $2 AND size <> $3",
        repository,
        digest,
        size,
    )


async def manifest_has_content(db: Executor, repository: str, digest: str) -> bool | None:
    """Whether the manifest's bytes are stored; None when there is no row."""
    stored: bool | None = await db.fetchval(
        "SELECT content IS NOT NULL FROM manifests WHERE repository = $1 AND digest = $2",
        repository,
        digest,
    )
    return stored


async def tag_exists(db: Executor, repository: str, tag: str) -> bool:
    """True when `tag` exists in `repository`, whatever it points to."""
    return bool(
        await db.fetchval("SELECT 1 FROM tags WHERE repository = $1 AND tag = $2", repository, tag)
    )


async def insert_tag(
    connection: Connection, repository: str, tag: str, digest: str, created_at: datetime | None
) -> bool:
    """Create `tag` pointing at `digest` unless the tag exists (it is never moved: it may have
    been re-pushed since); True when created."""
    created = await connection.fetchval(
        """
        INSERT INTO tags (repository, tag, digest, created_at, updated_at)
        VALUES ($1, $2, $3, coalesce($4, now()), coalesce($4, now()))
        ON CONFLICT (repository, tag) DO NOTHING
        RETURNING 1
        """,
        repository,
        tag,
        digest,
        created_at,
    )
    return created is not None
