"""Tag rules: listing a repository's tags (by page, or newest first) and removing one."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from registry_common.db import tags
from registry_common.db.repositories import repository_exists
from registry_common.db.tags import TagEntry
from registry_common.errors import RepositoryNotFound, TagNotFound
from registry_common.oci.names import RepositoryName
from registry_common.registry.repository_store import require_repository


async def delete_tag(pool: asyncpg.Pool, repository: RepositoryName, tag: str) -> None:
    """Remove a tag, never the manifest it points to; RepositoryNotFound or TagNotFound when
    there is no such tag."""
    if not await tags.delete_tag(pool, repository.full, tag):
        await require_repository(pool, repository)
        raise TagNotFound


@dataclass(frozen=True, slots=True)
class TagPage:
    """One page of a repository's tags; `next_after` is set when more follow."""

    tags: list[str]
    next_after: str | None


async def list_tags(
    pool: asyncpg.Pool, repository: RepositoryName, *, limit: int, after: str | None
) -> TagPage:
    """Tags in byte order after `after`, at most `limit`; RepositoryNotFound for a repository
    that does not exist."""
    names = (
        await tags.list_tags(pool, repository.full, after=after, limit=limit + 1)
        if limit > 0
        else []
    )
    if not names and not await repository_exists(pool, repository):
        raise RepositoryNotFound(name=repository.full)
    if len(names) > limit:
        return TagPage(names[:limit], names[limit - 1])
    return TagPage(names, None)


async def tags_newest_first(pool: asyncpg.Pool, repository: RepositoryName) -> list[TagEntry]:
    """The repository's tags, most recently (re)pointed first; RepositoryNotFound when it does
    not exist."""
    await require_repository(pool, repository)
    return await tags.tags_newest_first(pool, repository.full)
