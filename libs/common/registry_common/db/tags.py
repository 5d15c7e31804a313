"""SQL of tags: a name in a repository pointing at one of its manifests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from registry_common.db import Executor


async def set_tag(db: Executor, repository: str, tag: str, digest: str) -> None:
    """Point `tag` at `digest`; `updated_at` moves only when the tag really moves."""
    await db.execute(
        """
        INSERT INTO tags (repository, tag, digest) VALUES ($1, $2, $3)
        ON CONFLICT (repository, tag) DO UPDATE SET digest = EXCLUDED.digest, updated_at = now()
        WHERE tags.digest IS DISTINCT FROM EXCLUDED.digest
        """,
        repository,
        tag,
        digest,
    )


async def delete_tag(db: Executor, repository: str, tag: str) -> bool:
    """Remove `tag` (never its manifest); True when there was one."""
    status: str = await db.execute(
        "DELETE FROM tags WHERE repository = $1 AND tag = $2", repository, tag
    )
    return status != "DELETE 0"


async def list_tags(db: Executor, repository: str, *, after: str | None, limit: int) -> list[str]:
    """Up to `limit` tags of `repository` in byte order ("ASCIIbetical"), after `after`."""
    # COLLATE "C": the spec's order is byte order, whatever the database's collation.
    rows = await db.fetch(
        """
        SELECT tag FROM tags
        WHERE repository = $1 AND ($2::text IS NULL OR tag COLLATE "C" > $2)
        ORDER BY tag COLLATE "C"
        LIMIT $3
        """,
        repository,
        after,
        limit,
    )
    return [row["tag"] for row in rows]


@dataclass(frozen=True, slots=True)
class TagEntry:
    """A tag, the manifest it points to, and since when it points there."""

    tag: str
    digest: str
    created_at: datetime


async def tags_newest_first(db: Executor, repository: str) -> list[TagEntry]:
    """The repository's tags, most recently (re)pointed first.

    A tag's time is `updated_at`: when it started pointing at its current manifest (its
    creation, for a tag that never moved), so a re-pushed `latest` comes first.
    """
    rows = await db.fetch(
        """
        SELECT tag, digest, updated_at FROM tags
        WHERE repository = $1
        ORDER BY updated_at DESC, tag COLLATE "C"
        """,
        repository,
    )
    return [TagEntry(row["tag"], row["digest"], row["updated_at"]) for row in rows]
