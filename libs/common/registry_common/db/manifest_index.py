"""SQL of indexManifests: manifests whose references (manifest_blobs, manifest_children) are
not recorded yet, their bytes, and bytes found for rows imported without them. The references
themselves are written by db.manifests.add_references, as a push writes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry_common.db import Executor


@dataclass(frozen=True, slots=True)
class UnindexedManifest:
    """A manifest without index rows; `size` is None when its bytes are not stored yet."""

    repository: str
    digest: str
    media_type: str
    size: int | None


async def unindexed_manifests(
    db: Executor, after: tuple[str, str], limit: int
) -> list[UnindexedManifest]:
    """Manifests without manifest_blobs or manifest_children rows, in key order after `after`."""
    rows = await db.fetch(
        """
        SELECT m.repository, m.digest, m.media_type, octet_length(m.content) AS size
        FROM manifests m
        WHERE (m.repository, m.digest) > ($1, $2)
          AND NOT EXISTS (
              SELECT 1 FROM manifest_blobs mb
              WHERE mb.repository = m.repository AND mb.manifest_digest = m.digest)
          AND NOT EXISTS (
              SELECT 1 FROM manifest_children mc
              WHERE mc.repository = m.repository AND mc.parent_digest = m.digest)
        ORDER BY m.repository, m.digest
        LIMIT $3
        """,
        after[0],
        after[1],
        limit,
    )
    return [
        UnindexedManifest(row["repository"], row["digest"], row["media_type"], row["size"])
        for row in rows
    ]


async def manifest_contents(
    db: Executor, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], bytes]:
    """Stored bytes of the given (repository, digest) manifests."""
    rows = await db.fetch(
        """
        SELECT m.repository, m.digest, m.content FROM manifests m
        JOIN unnest($1::text[], $2::text[]) AS k(repository, digest)
          ON m.repository = k.repository AND m.digest = k.digest
        WHERE m.content IS NOT NULL
        """,
        [repository for repository, _ in keys],
        [digest for _, digest in keys],
    )
    return {(row["repository"], row["digest"]): row["content"] for row in rows}


async def fill_missing_content(
    db: Executor, repository: str, digest: str, content: bytes, media_type: str
) -> None:
    """Store the bytes of a manifest imported without them (never overwrites stored bytes)."""
    await db.execute(
        """
        UPDATE manifests SET content = $3, media_type = $4, size = $5
        WHERE repository = $1 AND digest = $2 AND content IS NULL
        """,
        repository,
        digest,
        content,
        media_type,
        len(content),
    )
