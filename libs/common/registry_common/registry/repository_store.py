"""Repository rules: listing a project's repositories, their sizes and storage totals, and
deleting a repository with everything in it.

A delete removes the rows first, in one transaction (docs/consistency.md, "Repository
delete"); then the blob objects the repository linked, through blob_store's locked routine,
which deletes an object only when no repository links it any more, so a blob shared with
another repository or project stays; last, the temporary data of its upload sessions.
"""

from __future__ import annotations

import asyncpg
import structlog

from registry_common.db import Executor, repositories
from registry_common.db.project_storage import ProjectStorage, project_total
from registry_common.db.repositories import RepositoryEntry, RepositorySummary
from registry_common.errors import RepositoryNotFound
from registry_common.oci.names import RepositoryName
from registry_common.registry.blob_store import delete_unlinked_objects
from registry_common.storage.base import ObjectStore, StorageUnavailable
from registry_common.storage.layout import upload_prefix

log = structlog.get_logger("registry.repositories")


async def require_repository(db: Executor, repository: RepositoryName) -> None:
    """RepositoryNotFound unless `repository` exists."""
    if not await repositories.repository_exists(db, repository):
        raise RepositoryNotFound(name=repository.full)


async def list_repositories(pool: asyncpg.Pool, project: str) -> list[RepositoryEntry]:
    """Every repository of `project`, in name (byte) order."""
    return await repositories.repositories_of_project(pool, project)


async def repository_summary(pool: asyncpg.Pool, name: RepositoryName) -> RepositorySummary:
    """When the repository was created and the bytes of the blobs it links;
    RepositoryNotFound when it does not exist."""
    summary = await repositories.repository_summary(pool, name)
    if summary is None:
        raise RepositoryNotFound(name=name.full)
    return summary


async def project_storage(pool: asyncpg.Pool, project: str) -> ProjectStorage | None:
    """The project's total from the last calculateProjectStorage run; None before the first."""
    return await project_total(pool, project)


async def delete_repository(pool: asyncpg.Pool, store: ObjectStore, name: RepositoryName) -> None:
    """Delete `name`: manifests, tags, links, upload sessions, and the blob objects no other
    repository links; RepositoryNotFound when it does not exist.

    Once the rows are gone the repository is deleted: storage that cannot be reached then only
    delays the cleanup, since an object nothing links and upload data no session owns are
    what the blob GC collects anyway.
    """
    async with pool.acquire() as connection, connection.transaction():
        deleted = await repositories.delete_repository_rows(connection, name)
    if deleted is None:
        raise RepositoryNotFound(name=name.full)
    objects_deleted = 0
    try:
        objects_deleted = (await delete_unlinked_objects(pool, store, deleted.digests)).deleted
        for upload_id in deleted.upload_ids:
            await store.delete_prefix(upload_prefix(str(upload_id)))
    except StorageUnavailable:
        log.warning("repository_storage_cleanup_deferred", repository=name.full)
    log.info(
        "repository_deleted",
        repository=name.full,
        blobs_unlinked=len(deleted.digests),
        objects_deleted=objects_deleted,
        uploads_removed=len(deleted.upload_ids),
    )
