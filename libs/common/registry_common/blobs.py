"""Blob lifecycle rules: committing verified upload bytes and mounting across repositories.

Both follow the locking contract of db/blobs.py, so a concurrent GC either finds the blob
linked (and keeps it) or has deleted it before this code creates it again.
"""

from __future__ import annotations

import asyncpg

from registry_common.db.blobs import claim_object, link_blob, lock_links, lock_object
from registry_common.db.repositories import ensure_repository
from registry_common.oci.names import RepositoryName
from registry_common.storage.base import ObjectStore
from registry_common.storage.layout import blob_key


async def commit_blob(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    digest: str,
    size: int,
    verified_key: str,
) -> None:
    """Make the verified bytes at `verified_key` the blob `digest` and link it to `repository`.

    Stored once per digest: when the object already exists the new copy is dropped.
    """
    async with pool.acquire() as connection, connection.transaction():
        await ensure_repository(connection, repository)
        created = await claim_object(connection, digest, size)
        final_key = blob_key(digest)
        # The row says the object exists; stat anyway, so an object lost by a crash between a
        # GC's storage delete and its commit is restored by the next push of the same bytes.
        moved = created or await store.stat(final_key) is None
        if moved:
            await store.move(verified_key, final_key)
        await link_blob(connection, repository.full, digest, size)
    if not moved:
        await store.delete(verified_key)


async def mount_blob(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    digest: str,
    source: str,
) -> int | None:
    """Link `digest` into `repository` from the repository `source` that links it.

    Returns the blob size, or None when `source` does not link it (or its bytes are gone):
    the caller then falls back to an upload. The caller checked that `source` may be read.
    """
    async with pool.acquire() as connection, connection.transaction():
        size = await lock_object(connection, digest)
        if size is None:
            return None
        linked = await lock_links(connection, source, [digest])
        if not linked or await store.stat(blob_key(digest)) is None:
            return None
        await ensure_repository(connection, repository)
        await link_blob(connection, repository.full, digest, size)
        return size
