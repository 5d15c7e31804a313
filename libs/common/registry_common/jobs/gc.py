"""runBlobGC: unlink unreferenced blobs, delete unlinked objects, expire abandoned uploads.

Online and safe against concurrent pushes: the unlink and the object delete take the row locks
of docs/consistency.md ("GC unlink", "Object delete"; invariants 1 to 5), and the job holds an
advisory lock (runner.run_locked) with every step idempotent. Work goes in batches in key
order, so memory stays bounded whatever the table sizes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import structlog

from registry_common.db import blobs, uploads
from registry_common.jobs.base import JobContext, JobReport
from registry_common.registry.blob_store import ObjectDeletion, delete_unlinked_objects
from registry_common.registry.upload_store import discard_session
from registry_common.storage.base import ObjectStore
from registry_common.storage.layout import UPLOADS_PREFIX

BATCH_SIZE = 1000

log = structlog.get_logger("registry.jobs.gc")


async def run_blob_gc(context: JobContext, report: JobReport) -> None:
    """Phase 1 unlink, phase 2 delete objects, phase 3 expire uploads."""
    now = datetime.now(UTC)
    cutoff = now - context.settings.gc_grace_period
    await unlink_unreferenced_blobs(context.pool, cutoff, report)
    await adopt_objects(context.pool, report)
    deletion = ObjectDeletion()
    try:
        await delete_unlinked_objects(
            context.pool, context.store, created_before=cutoff, deletion=deletion
        )
    finally:
        for kind, amount in deletion.counts.items():
            report.add(kind, amount)
    await expire_uploads(
        context.pool,
        context.store,
        now - context.settings.upload_expiry,
        now - context.settings.upload_max_age,
        report,
    )


async def unlink_unreferenced_blobs(
    pool: asyncpg.Pool, idle_before: datetime, report: JobReport
) -> None:
    """Remove links idle since `idle_before` that no manifest of their repository references."""
    after = ("", "")
    while True:
        candidates = await blobs.unlink_candidates(pool, idle_before, after, BATCH_SIZE)
        if not candidates:
            return
        report.add("links_scanned", len(candidates))
        async with pool.acquire() as connection, connection.transaction():
            removed = await blobs.unlink_idle_unreferenced(connection, candidates, idle_before)
        report.add("unlinked", len(removed))
        after = candidates[-1]


async def adopt_objects(pool: asyncpg.Pool, report: JobReport) -> None:
    """Give every linked digest an object row, so imported blobs are collected like others."""
    while adopted := await blobs.adopt_linked_objects(pool, BATCH_SIZE):
        report.add("objects_adopted", adopted)


async def expire_uploads(
    pool: asyncpg.Pool,
    store: ObjectStore,
    updated_before: datetime,
    created_before: datetime,
    report: JobReport,
) -> None:
    """Remove upload sessions untouched since `updated_before` or opened before
    `created_before` (UPLOAD_MAX_AGE, however busy), and upload data that no session owns any
    more (a crash between writing and recording)."""
    while True:
        sessions = await uploads.expired_uploads(pool, updated_before, created_before, BATCH_SIZE)
        if not sessions:
            break
        for session in sessions:
            await discard_session(pool, store, session)
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
    owned = await uploads.existing_upload_ids(pool, ids) if ids else set()
    for folder, upload_id in folders.items():
        if upload_id is not None and upload_id in owned:
            continue
        report.add("stray_upload_objects", await store.delete_prefix(f"{UPLOADS_PREFIX}{folder}/"))
