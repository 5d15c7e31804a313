"""Blob rules: which repository may read a digest, committing verified bytes, mounting across
repositories, unlinking, and deleting the objects no repository links any more.

Every function here follows the locking protocol of docs/consistency.md (its invariants are
cited by number), so a concurrent blob GC either finds a blob linked and keeps it, or has
deleted it before this code creates it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import structlog

from registry_common.db import blobs
from registry_common.db.repositories import ensure_repository
from registry_common.errors import BlobInUse, BlobUnknown
from registry_common.oci.names import RepositoryName
from registry_common.storage.base import ObjectNotFound, ObjectStore, StorageUnavailable
from registry_common.storage.layout import blob_key

# Object rows looked at per transaction batch when deleting unlinked objects.
DELETE_BATCH_SIZE = 1000

log = structlog.get_logger("registry.blobs")


async def linked_blob_size(
    pool: asyncpg.Pool,
    repository: RepositoryName,
    digest: str,
    grace_period: timedelta,
    *,
    refresh: bool = True,
) -> int:
    """The size of `digest` if `repository` links it, else BlobUnknown.

    A client's read keeps the blob alive: the link's grace clock is refreshed when it is older
    than blobs.touch_interval(grace_period) (invariant 4). The CDN's reads (`refresh=False`)
    do not: they are not a client of the repository.
    """
    touch_after = blobs.touch_interval(grace_period) if refresh else None
    size = await blobs.linked_blob_size(pool, repository.full, digest, touch_after)
    if size is None:
        raise BlobUnknown(digest=digest)
    return size


@dataclass(frozen=True, slots=True)
class BlobBytes:
    """Where a blob's bytes come from: a local file (for sendfile), or a stream whose first
    piece was already read, so a missing object is found before anything is sent."""

    path: Path | None = None
    first: bytes = b""
    rest: AsyncIterator[bytes] | None = None


async def open_blob(store: ObjectStore, digest: str, offset: int, length: int) -> BlobBytes:
    """The bytes `offset` to `offset + length` of the stored blob `digest`; BlobUnknown when
    its object is missing (a link without bytes: logged, it should never happen)."""
    key = blob_key(digest)
    path = store.local_path(key)
    if path is not None:
        return BlobBytes(path=path)
    chunks = store.read(key, offset=offset, length=length)
    try:
        first = await anext(chunks, b"")
    except ObjectNotFound:
        log.error("blob_object_missing", digest=digest)
        raise BlobUnknown(digest=digest) from None
    return BlobBytes(first=first, rest=chunks)


async def unlink_blob(pool: asyncpg.Pool, repository: RepositoryName, digest: str) -> None:
    """Remove `digest` from `repository` (its bytes go later, through the GC); BlobUnknown when
    it is not linked, BlobInUse while a manifest of the repository references it."""
    async with pool.acquire() as connection, connection.transaction():
        outcome = await blobs.unlink_unreferenced(connection, repository.full, digest)
    if outcome is blobs.UnlinkOutcome.MISSING:
        raise BlobUnknown(digest=digest)
    if outcome is blobs.UnlinkOutcome.REFERENCED:
        raise BlobInUse(digest=digest)


async def commit_blob(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    digest: str,
    size: int,
    verified_key: str,
) -> None:
    """Make the verified bytes at `verified_key` the blob `digest` and link it to `repository`.

    Stored once per digest: when the object already exists the new copy is dropped. The object
    row is locked first (invariant 3), so a GC deleting the same digest either finished before
    (and the bytes are stored again) or waits until the link exists.
    """
    async with pool.acquire() as connection, connection.transaction():
        await ensure_repository(connection, repository)
        created = await blobs.claim_object(connection, digest, size)
        final_key = blob_key(digest)
        # The row says the object exists; stat anyway, so an object lost by a crash between a
        # GC's storage delete and its commit is restored by the next push of the same bytes.
        moved = created or await store.stat(final_key) is None
        if moved:
            await store.move(verified_key, final_key)
        await blobs.link_blob(connection, repository.full, digest, size)
    if not moved:
        await store.delete(verified_key)


async def mount_blob(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    digest: str,
    source: RepositoryName | None,
) -> int | None:
    """Link `digest` into `repository` from `source`, or, without one, from any repository of
    the same project that links it. The caller checked that `source` may be read.

    Returns the blob size, or None when no such link exists (or its bytes are gone): the client
    then uploads the blob instead.
    """
    source_name = source.full if source is not None else None
    if source_name is None:
        source_name = await blobs.repository_in_project_linking(pool, repository.project, digest)
        if source_name is None:
            return None
    async with pool.acquire() as connection, connection.transaction():
        # Share locks on the object row and the source link until the new link commits
        # (invariant 3): a GC cannot delete the bytes in between.
        size = await blobs.lock_object(connection, digest)
        if size is None:
            return None
        linked = await blobs.lock_links(connection, source_name, [digest])
        if not linked or await store.stat(blob_key(digest)) is None:
            return None
        await ensure_repository(connection, repository)
        await blobs.link_blob(connection, repository.full, digest, size)
        return size


@dataclass
class ObjectDeletion:
    """What delete_unlinked_objects did."""

    scanned: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    failures: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """The figures under the names job reports use."""
        return {
            "objects_scanned": self.scanned,
            "objects_deleted": self.deleted,
            "bytes_freed": self.bytes_freed,
            "delete_failures": self.failures,
        }


async def delete_unlinked_objects(
    pool: asyncpg.Pool,
    store: ObjectStore,
    digests: Sequence[str] | None = None,
    *,
    created_before: datetime | None = None,
    deletion: ObjectDeletion | None = None,
) -> ObjectDeletion:
    """Delete the objects (bytes and row) that no repository links.

    Either every such object older than `created_before`, or, with `digests` (a deleted
    repository's blobs), just those, whatever their age (invariant 2 is kept by the lock: a
    push linking the digest meanwhile keeps it). A failed storage delete is logged and left
    for the next run; when every delete of a batch fails because storage is unavailable,
    StorageUnavailable is raised, since nothing can make progress. The figures go into
    `deletion` when given (so a caller keeps them even when this raises), and are returned.
    """
    deletion = deletion if deletion is not None else ObjectDeletion()
    if digests is not None:
        for start in range(0, len(digests), DELETE_BATCH_SIZE):
            batch = list(digests[start : start + DELETE_BATCH_SIZE])
            await _delete_objects(pool, store, batch, None, deletion)
        return deletion
    after = ""
    while True:
        batch = await blobs.orphan_object_candidates(pool, created_before, after, DELETE_BATCH_SIZE)
        if not batch:
            return deletion
        await _delete_objects(pool, store, batch, created_before, deletion)
        after = batch[-1]


async def _delete_objects(
    pool: asyncpg.Pool,
    store: ObjectStore,
    digests: list[str],
    created_before: datetime | None,
    deletion: ObjectDeletion,
) -> None:
    attempted = failed = 0
    for digest in digests:
        deletion.scanned += 1
        async with pool.acquire() as connection, connection.transaction():
            size = await blobs.lock_orphan_object(connection, digest, created_before)
            if size is None:
                continue
            attempted += 1
            try:
                # Bytes first, row second, both under the row lock: a crash in between leaves
                # a row without bytes, which the next push of the digest repairs (commit_blob).
                await store.delete(blob_key(digest))
            except StorageUnavailable:
                failed += 1
                deletion.failures += 1
                log.warning("object_delete_failed", digest=digest)
                continue
            await blobs.delete_object_row(connection, digest)
        deletion.deleted += 1
        deletion.bytes_freed += size
    if attempted and failed == attempted:
        raise StorageUnavailable(f"could not delete any of {attempted} objects")
