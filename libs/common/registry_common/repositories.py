"""Repository lifecycle rules: deleting a repository with everything in it.

Rows go first, in one transaction (db.repositories.delete_repository_rows); then the blob
objects the repository linked, through the blob GC's own routine (jobs.gc), which deletes an
object only under its row lock and only when no repository links it any more: a blob shared
with another repository or project stays. Last, the temporary data of its upload sessions.
"""

from __future__ import annotations

import asyncpg
import structlog

from registry_common.db import repositories as repository_rows
from registry_common.jobs.gc import delete_unlinked_objects
from registry_common.oci.names import RepositoryName
from registry_common.storage.base import ObjectStore, StorageUnavailable
from registry_common.storage.layout import upload_prefix

log = structlog.get_logger("registry.repositories")


async def delete_repository(pool: asyncpg.Pool, store: ObjectStore, name: RepositoryName) -> bool:
    """Delete `name`: manifests, tags, links, upload sessions, and the blob objects no other
    repository links. False when the repository does not exist.

    Once the rows are gone the repository is deleted: storage that cannot be reached then only
    delays the cleanup, since an object nothing links and upload data no session owns are
    what the blob GC collects anyway.
    """
    async with pool.acquire() as connection, connection.transaction():
        deleted = await repository_rows.delete_repository_rows(connection, name)
    if deleted is None:
        return False
    objects_deleted = 0
    try:
        report = await delete_unlinked_objects(pool, store, deleted.digests)
        objects_deleted = report.counts.get("objects_deleted", 0)
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
    return True
