"""runBlobGC: unlink unreferenced blobs, delete unlinked objects, expire abandoned uploads.

Online and safe against concurrent pushes (DESIGN.md "Garbage collection must never lose
data"); the row locks are those of db/blobs.py:
1. a link is removed only while locked FOR UPDATE and found, by a statement run after the lock,
   unreferenced by any manifest of its repository and idle longer than the grace period;
2. an object is deleted only while its blob_objects row is locked FOR UPDATE and found, after the
   lock, unlinked everywhere and older than the grace period; pushes and mounts of the same
   digest lock that row too, so they either wait and re-create the object or keep it linked;
3. reads refresh the link's grace clock (db.blobs.linked_blob_size);
4. the job holds an advisory lock (runner.run_locked), and every step is idempotent.
Work goes in batches in key order, so memory stays bounded whatever the table sizes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import structlog

from registry_common.db import blobs as blob_rows
from registry_common.db import uploads as upload_rows
from registry_common.jobs.runner import JobContext, JobReport
from registry_common.storage.base import ObjectStore, StorageUnavailable
from registry_common.storage.layout import UPLOADS_PREFIX, blob_key, upload_prefix

BATCH_SIZE = 1000

log = structlog.get_logger("registry.jobs.gc")


async def run_blob_gc(context: JobContext, report: JobReport) -> None:
    """Phase 1 unlink, phase 2 delete objects, phase 3 expire uploads."""
    now = datetime.now(UTC)
    cutoff = now - context.settings.gc_grace_period
    await unlink_unreferenced_blobs(context.pool, cutoff, report)
    await adopt_objects(context.pool, report)
    await delete_unlinked_objects(context.pool, context.store, created_before=cutoff, report=report)
    await expire_uploads(context.pool, context.store, now - context.settings.upload_expiry, report)


async def unlink_unreferenced_blobs(
    pool: asyncpg.Pool, idle_before: datetime, report: JobReport
) -> None:
    """Remove links idle since `idle_before` that no manifest of their repository references."""
    after = ("", "")
    while True:
        candidates = await blob_rows.unlink_candidates(pool, idle_before, after, BATCH_SIZE)
        if not candidates:
            return
        report.add("links_scanned", len(candidates))
        async with pool.acquire() as connection, connection.transaction():
            removed = await blob_rows.unlink_idle_unreferenced(connection, candidates, idle_before)
        report.add("unlinked", len(removed))
        after = candidates[-1]


async def adopt_objects(pool: asyncpg.Pool, report: JobReport) -> None:
    """Give every linked digest an object row, so imported blobs are collected like others."""
    while adopted := await blob_rows.adopt_linked_objects(pool, BATCH_SIZE):
        report.add("objects_adopted", adopted)


async def delete_unlinked_objects(
    pool: asyncpg.Pool,
    store: ObjectStore,
    digests: Sequence[str] | None = None,
    *,
    created_before: datetime | None = None,
    report: JobReport | None = None,
) -> JobReport:
    """Delete the objects (bytes and row) that no repository links.

    Either every such object older than `created_before`, or, with `digests` (a deleted
    repository's blobs), just those, whatever their age. A failed storage delete is logged and
    left for the next run; when every delete of a batch fails because storage is unavailable
    the run fails, since it cannot make progress.
    """
    report = report if report is not None else JobReport()
    if digests is not None:
        for start in range(0, len(digests), BATCH_SIZE):
            batch = list(digests[start : start + BATCH_SIZE])
            await _delete_objects(pool, store, batch, None, report)
        return report
    after = ""
    while True:
        batch = await blob_rows.orphan_object_candidates(pool, created_before, after, BATCH_SIZE)
        if not batch:
            return report
        await _delete_objects(pool, store, batch, created_before, report)
        after = batch[-1]


async def _delete_objects(
    pool: asyncpg.Pool,
    store: ObjectStore,
    digests: list[str],
    created_before: datetime | None,
    report: JobReport,
) -> None:
    attempted = failed = 0
    for digest in digests:
        report.add("objects_scanned")
        async with pool.acquire() as connection, connection.transaction():
            size = await blob_rows.lock_orphan_object(connection, digest, created_before)
            if size is None:
                continue
            attempted += 1
            try:
                # Bytes first, row second, both under the row lock: a crash in between leaves
                # a row without bytes, which the next push of the digest repairs (blobs.py).
                await store.delete(blob_key(digest))
            except StorageUnavailable:
                failed += 1
                log.warning("object_delete_failed", digest=digest)
                report.add("delete_failures")
                continue
            await blob_rows.delete_object_row(connection, digest)
        report.add("objects_deleted")
        report.add("bytes_freed", size)
    if attempted and failed == attempted:
        raise StorageUnavailable(f"could not delete any of {attempted} objects")


async def expire_uploads(
    pool: asyncpg.Pool, store: ObjectStore, updated_before: datetime, report: JobReport
) -> None:
    """Remove upload sessions untouched since `updated_before`, and upload data that no
    session owns any more (a crash between writing and recording)."""
    while True:
        sessions = await upload_rows.expired_uploads(pool, updated_before, BATCH_SIZE)
        if not sessions:
            break
        for session in sessions:
            await store.delete_prefix(upload_prefix(str(session.id)))
            await upload_rows.delete_upload(pool, session.id, session.repository)
            report.add("uploads_expired")
    await _delete_stray_upload_data(pool, store, updated_before, report)


async def _delete_stray_upload_data(
    pool: asyncpg.Pool, store: ObjectStore, updated_before: datetime, report: JobReport
) -> None:
    stale: dict[str, uuid.UUID | None] = {}
    async for info in store.list(UPLOADS_PREFIX):
        if info.updated >= updated_before:
            continue
        folder = info.key[len(UPLOADS_PREFIX) :].split("/", 1)[0]
        if folder in stale:
            continue
        try:
            stale[folder] = uuid.UUID(folder)
        except ValueError:
            stale[folder] = None  # monolithic uploads use a random hex folder: no session
        if len(stale) >= BATCH_SIZE:
            await _delete_unowned(pool, store, stale, report)
            stale.clear()
    await _delete_unowned(pool, store, stale, report)


async def _delete_unowned(
    pool: asyncpg.Pool,
    store: ObjectStore,
    folders: dict[str, uuid.UUID | None],
    report: JobReport,
) -> None:
    ids = [upload_id for upload_id in folders.values() if upload_id is not None]
    owned = await upload_rows.existing_upload_ids(pool, ids) if ids else set()
    for folder, upload_id in folders.items():
        if upload_id is not None and upload_id in owned:
            continue
        report.add("stray_upload_objects", await store.delete_prefix(f"{UPLOADS_PREFIX}{folder}/"))
