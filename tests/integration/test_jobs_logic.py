"""The job logic: indexManifests, runBlobGC (three phases), calculateProjectStorage, runAll."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from registry_common.db import blobs as blob_rows
from registry_common.jobs import catalog
from registry_common.jobs import gc as gc_module
from registry_common.jobs.base import JobContext, JobFailed, JobName, JobOutcome, JobReport
from registry_common.jobs.catalog import run_job
from registry_common.jobs.gc import expire_uploads
from registry_common.jobs.runner import advisory_key
from registry_common.registry.blob_store import delete_unlinked_objects
from registry_common.storage.base import ObjectStore, StorageUnavailable
from registry_common.storage.layout import blob_key
from tests.fixtures.distribution import OCI_INDEX, RegistryClient, make_image, sha256
from tests.fixtures.services import ServiceClient

NAME = "proj/app"
OLD = "now() - interval '2 days'"


async def _index_rows(db: asyncpg.Connection) -> set[tuple[str, ...]]:
    blobs = await db.fetch("SELECT repository, manifest_digest, blob_digest FROM manifest_blobs")
    children = await db.fetch(
        "SELECT repository, parent_digest, child_digest FROM manifest_children"
    )
    return {("blob", *row.values()) for row in blobs} | {
        ("child", *row.values()) for row in children
    }


async def _object_exists(context: JobContext, digest: str) -> bool:
    return await context.store.stat(blob_key(digest)) is not None


async def _push_index(registry: RegistryClient, name: str, seeds: list[str]) -> str:
    children = []
    for seed in seeds:
        image = make_image(seed)
        await registry.push_image(name, image)
        children.append(
            {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)}
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    response = await registry.client.put(
        f"/v2/{name}/manifests/multi",
        data=index.encode(),
        headers={"Content-Type": OCI_INDEX},
    )
    assert response.status == 201, await response.text()
    return sha256(index.encode())


# --- indexManifests ---


async def test_index_restores_references_of_unindexed_manifests(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    await registry.push_image(NAME, make_image("one"), "v1")
    await _push_index(registry, NAME, ["two", "three"])
    expected = await _index_rows(db)
    assert len(expected) == 3 * 3 + 2
    await db.execute("DELETE FROM manifest_blobs")
    await db.execute("DELETE FROM manifest_children")
    assert await run_job(job_context, JobName.INDEX_MANIFESTS) is JobOutcome.COMPLETED
    assert await _index_rows(db) == expected


async def test_index_skips_unparseable_manifests_and_indexes_the_rest(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    image = make_image("good")
    await registry.push_image(NAME, image)
    await db.execute("DELETE FROM manifest_blobs")
    await db.execute(
        "INSERT INTO manifests (repository, digest, media_type, content, size) "
        "VALUES ($1, $2, $3, 'not json'::bytea, 8)",
        NAME,
        sha256(b"not json"),
        image.media_type,
    )
    await run_job(job_context, JobName.INDEX_MANIFESTS)
    rows = await db.fetch("SELECT manifest_digest FROM manifest_blobs")
    assert {row["manifest_digest"] for row in rows} == {image.digest}


async def test_index_fills_missing_bytes_from_the_old_layout(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    image = make_image("imported")
    await registry.push_image(NAME, image)
    await db.execute("DELETE FROM manifest_blobs")
    await db.execute("UPDATE manifests SET content = NULL, media_type = ''")

    async def body() -> AsyncIterator[bytes]:
        yield image.manifest

    await job_context.store.write(f"{NAME}/manifests/{image.digest}", body())
    await run_job(job_context, JobName.INDEX_MANIFESTS)
    row = await db.fetchrow("SELECT content, media_type FROM manifests")
    assert row is not None
    assert row["content"] == image.manifest
    assert row["media_type"] == image.media_type
    assert await db.fetchval("SELECT count(*) FROM manifest_blobs") == 3
    pulled = await registry.client.get(f"/v2/{NAME}/manifests/{image.digest}")
    assert await pulled.read() == image.manifest


# --- runBlobGC phase 1 and 2 ---


async def test_gc_unlinks_and_deletes_old_unreferenced_blobs_only(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    image = make_image("kept")
    await registry.push_image(NAME, image)
    orphan = await registry.push_blob(NAME, b"orphan layer")
    fresh = await registry.push_blob(NAME, b"fresh orphan")
    await db.execute(f"UPDATE blobs SET accessed_at = {OLD} WHERE digest <> $1", fresh)
    await db.execute(f"UPDATE blob_objects SET created_at = {OLD}")

    await run_job(job_context, JobName.RUN_BLOB_GC)

    linked = {row["digest"] for row in await db.fetch("SELECT digest FROM blobs")}
    assert linked == set(image.blobs) | {fresh}
    assert not await _object_exists(job_context, orphan)
    assert await _object_exists(job_context, fresh)
    for digest in image.blobs:
        assert await _object_exists(job_context, digest)
    assert await db.fetchval("SELECT count(*) FROM blob_objects WHERE digest = $1", orphan) == 0


async def test_gc_keeps_an_object_another_repository_still_links(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    shared = await registry.push_blob(NAME, b"shared bytes")
    await registry.push_blob("other/app", b"shared bytes")
    await db.execute(f"UPDATE blobs SET accessed_at = {OLD} WHERE repository = $1", NAME)
    await db.execute(f"UPDATE blob_objects SET created_at = {OLD}")
    await run_job(job_context, JobName.RUN_BLOB_GC)
    assert await db.fetchval("SELECT count(*) FROM blobs") == 1
    fetched = await registry.client.get(f"/v2/other/app/blobs/{shared}")
    assert await fetched.read() == b"shared bytes"


async def test_gc_leaves_repositories_with_unindexed_manifests_alone(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    image = make_image("imported")
    await registry.push_image(NAME, image)
    await db.execute("DELETE FROM manifest_blobs")  # as if imported without its index rows
    await db.execute(f"UPDATE blobs SET accessed_at = {OLD}")
    await db.execute(f"UPDATE blob_objects SET created_at = {OLD}")
    await gc_module.run_blob_gc(job_context, JobReport())
    assert await db.fetchval("SELECT count(*) FROM blobs") == 3


async def test_blob_uploaded_for_an_inflight_push_survives_gc(
    registry: RegistryClient, job_context: JobContext
) -> None:
    image = make_image("in flight")
    for data in image.blobs.values():
        await registry.push_blob(NAME, data)
    await run_job(job_context, JobName.RUN_BLOB_GC)
    response = await registry.client.put(
        f"/v2/{NAME}/manifests/latest",
        data=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert response.status == 201


async def test_layer_found_by_head_survives_gc_before_the_manifest_put(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    image = make_image("existing layers")
    for data in image.blobs.values():
        await registry.push_blob(NAME, data)
    await db.execute(f"UPDATE blobs SET accessed_at = {OLD}")
    await db.execute(f"UPDATE blob_objects SET created_at = {OLD}")
    for digest in image.blobs:  # the client checks the layers exist, so it skips uploading
        assert (await registry.client.head(f"/v2/{NAME}/blobs/{digest}")).status == 200
    await run_job(job_context, JobName.RUN_BLOB_GC)
    response = await registry.client.put(
        f"/v2/{NAME}/manifests/latest",
        data=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert response.status == 201, await response.text()
    for digest, data in image.blobs.items():
        assert await (await registry.client.get(f"/v2/{NAME}/blobs/{digest}")).read() == data


async def test_gc_adopts_imported_links_without_object_rows(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    digest = await registry.push_blob(NAME, b"imported")
    await db.execute("DELETE FROM blob_objects")
    await run_job(job_context, JobName.RUN_BLOB_GC)
    assert await db.fetchval("SELECT size FROM blob_objects WHERE digest = $1", digest) == 8


def _fail_deletes_of(monkeypatch: pytest.MonkeyPatch, store: ObjectStore, keys: set[str]) -> None:
    """Make deletes of `keys` fail as if storage were unavailable; others go through."""
    real_delete = store.delete

    async def delete(key: str) -> bool:
        if key in keys:
            raise StorageUnavailable(key)
        return await real_delete(key)

    monkeypatch.setattr(store, "delete", delete)


async def test_one_failed_object_delete_is_retried_on_the_next_run(
    registry: RegistryClient,
    db: asyncpg.Connection,
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await registry.push_blob(NAME, b"first orphan")
    second = await registry.push_blob(NAME, b"second orphan")
    await db.execute("DELETE FROM blobs")
    with monkeypatch.context() as patch:
        _fail_deletes_of(patch, job_context.store, {blob_key(first)})
        report = await delete_unlinked_objects(job_context.pool, job_context.store)
    assert report.counts["objects_deleted"] == 1
    assert report.counts["delete_failures"] == 1
    assert await _object_exists(job_context, first)
    assert not await _object_exists(job_context, second)
    await delete_unlinked_objects(job_context.pool, job_context.store)
    assert not await _object_exists(job_context, first)
    assert await db.fetchval("SELECT count(*) FROM blob_objects") == 0


async def test_gc_fails_when_storage_cannot_delete_anything(
    registry: RegistryClient,
    db: asyncpg.Connection,
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = await registry.push_blob(NAME, b"orphan")
    await db.execute("DELETE FROM blobs")
    _fail_deletes_of(monkeypatch, job_context.store, {blob_key(digest)})
    with pytest.raises(StorageUnavailable):
        await delete_unlinked_objects(job_context.pool, job_context.store)
    assert await db.fetchval("SELECT count(*) FROM blob_objects") == 1


async def test_deleting_given_digests_ignores_age_but_not_links(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    mine = await registry.push_blob(NAME, b"only mine")
    shared = await registry.push_blob(NAME, b"shared")
    await registry.push_blob("other/app", b"shared")
    await db.execute("DELETE FROM blobs WHERE repository = $1", NAME)
    await delete_unlinked_objects(job_context.pool, job_context.store, [mine, shared])
    assert not await _object_exists(job_context, mine)
    assert await _object_exists(job_context, shared)


# --- runBlobGC phase 3: uploads ---


async def test_expired_upload_sessions_and_their_data_are_removed(
    registry_client: ServiceClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    stale = (await registry_client.post(f"/v2/{NAME}/blobs/uploads/")).headers["Location"]
    await registry_client.patch(stale, data=b"abandoned", headers={"Content-Range": "0-8"})
    live = (await registry_client.post(f"/v2/{NAME}/blobs/uploads/")).headers["Location"]
    stale_id = stale.rsplit("/", 1)[1]
    await db.execute(f"UPDATE upload_sessions SET updated_at = {OLD} WHERE id = $1", stale_id)
    report = JobReport()
    now = datetime.now(UTC)
    await expire_uploads(
        job_context.pool,
        job_context.store,
        now - timedelta(days=1),
        now - timedelta(days=7),
        report,
    )
    assert report.counts["uploads_expired"] == 1
    assert (await registry_client.get(stale)).status == 404
    assert (await registry_client.get(live)).status == 204
    assert [info.key async for info in job_context.store.list(f"uploads/{stale_id}/")] == []


async def test_upload_data_without_a_session_is_removed(job_context: JobContext) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"left by a crash"

    await job_context.store.write("uploads/0123abcd/blob-whole", body())
    report = JobReport()
    soon = datetime.now(UTC) + timedelta(minutes=1)
    await expire_uploads(job_context.pool, job_context.store, soon, soon, report)
    assert report.counts["stray_upload_objects"] == 1
    assert [info.key async for info in job_context.store.list("uploads/")] == []


# --- calculateProjectStorage ---


async def test_project_storage_equals_a_brute_force_sum(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    shared = make_image("shared base", layers=3, layer_size=5000)
    await registry.push_image("alpha/one", shared)
    await registry.push_image("alpha/two", shared)  # same blobs in the same project: once
    await registry.push_image("beta/one", shared)
    await registry.push_image("beta/two", make_image("beta own", layers=2, layer_size=777))
    await registry.push_blob("gamma/solo", b"x" * 12345)
    await db.execute("INSERT INTO project_storage_usage (namespace, size) VALUES ('deleted', 999)")

    await run_job(job_context, JobName.CALCULATE_PROJECT_STORAGE)

    links = await db.fetch("SELECT repository, digest, size FROM blobs")
    expected: dict[str, dict[str, int]] = {}
    for row in links:
        expected.setdefault(row["repository"].split("/")[0], {})[row["digest"]] = row["size"]
    totals = {project: sum(sizes.values()) for project, sizes in expected.items()}
    totals["deleted"] = 0
    rows = await db.fetch("SELECT namespace, size, updated_at FROM project_storage_usage")
    assert {row["namespace"]: row["size"] for row in rows} == totals
    assert all(row["updated_at"] is not None for row in rows)


# --- runner ---


async def test_run_all_stops_at_the_first_failing_step(
    job_context: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    async def failing_gc(context: JobContext, report: JobReport) -> None:
        ran.append("gc")
        raise RuntimeError("storage exploded")

    async def storage(context: JobContext, report: JobReport) -> None:
        ran.append("storage")

    monkeypatch.setitem(catalog.JOBS, JobName.RUN_BLOB_GC, failing_gc)
    monkeypatch.setitem(catalog.JOBS, JobName.CALCULATE_PROJECT_STORAGE, storage)
    with pytest.raises(JobFailed) as failed:
        await run_job(job_context, JobName.RUN_ALL)
    assert failed.value.job is JobName.RUN_BLOB_GC
    assert ran == ["gc"]


async def test_a_job_already_running_elsewhere_is_not_run_again(
    job_context: JobContext, db_url: str
) -> None:
    holder = await asyncpg.connect(db_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", advisory_key(JobName.RUN_BLOB_GC))
        outcome = await asyncio.wait_for(run_job(job_context, JobName.RUN_BLOB_GC), 10)
        assert outcome is JobOutcome.ALREADY_RUNNING
    finally:
        await holder.close()
    assert await run_job(job_context, JobName.RUN_BLOB_GC) is JobOutcome.COMPLETED


# --- the row-lock rules GC relies on, raced deterministically ---


async def _aged_orphan(registry: RegistryClient, db: asyncpg.Connection, data: bytes) -> str:
    digest = await registry.push_blob(NAME, data)
    await db.execute(f"UPDATE blobs SET accessed_at = {OLD}")
    await db.execute(f"UPDATE blob_objects SET created_at = {OLD}")
    return digest


async def test_unlink_rechecks_references_after_locking(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    image = make_image("late manifest", layers=1)
    for data in image.blobs.values():
        await _aged_orphan(registry, db, data)
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    candidates = await blob_rows.unlink_candidates(job_context.pool, cutoff, ("", ""), 100)
    assert {digest for _, digest in candidates} == set(image.blobs)
    # The manifest commits between the candidate scan and the lock (its layers are present,
    # so the client uploads nothing and the links stay old).
    response = await registry.client.put(
        f"/v2/{NAME}/manifests/latest",
        data=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert response.status == 201
    async with job_context.pool.acquire() as connection, connection.transaction():
        removed = await blob_rows.unlink_idle_unreferenced(connection, candidates, cutoff)
    assert removed == []
    assert await db.fetchval("SELECT count(*) FROM blobs") == len(image.blobs)


async def test_unlink_skips_links_a_manifest_push_holds(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext, db_url: str
) -> None:
    digest = await _aged_orphan(registry, db, b"layer of a push in progress")
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    pusher = await asyncpg.connect(db_url)
    try:
        async with pusher.transaction():
            assert await blob_rows.lock_links(pusher, NAME, [digest])  # the PUT's FOR SHARE
            async with job_context.pool.acquire() as connection, connection.transaction():
                removed = await blob_rows.unlink_idle_unreferenced(
                    connection, [(NAME, digest)], cutoff
                )
            assert removed == []
    finally:
        await pusher.close()
    assert await db.fetchval("SELECT count(*) FROM blobs") == 1


async def test_object_delete_rechecks_links_after_locking(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext
) -> None:
    digest = await _aged_orphan(registry, db, b"relinked bytes")
    await db.execute("DELETE FROM blobs")
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    assert await blob_rows.orphan_object_candidates(job_context.pool, cutoff, "", 10) == [digest]
    await registry.push_blob("other/app", b"relinked bytes")  # links it again meanwhile
    async with job_context.pool.acquire() as connection, connection.transaction():
        assert await blob_rows.lock_orphan_object(connection, digest, cutoff) is None
    await delete_unlinked_objects(job_context.pool, job_context.store, [digest])
    assert await _object_exists(job_context, digest)


async def test_object_delete_skips_objects_a_push_is_committing(
    registry: RegistryClient, db: asyncpg.Connection, job_context: JobContext, db_url: str
) -> None:
    digest = await _aged_orphan(registry, db, b"bytes being pushed again")
    await db.execute("DELETE FROM blobs")
    pusher = await asyncpg.connect(db_url)
    try:
        async with pusher.transaction():
            assert not await blob_rows.claim_object(pusher, digest, 24)  # commit_blob's lock
            await delete_unlinked_objects(job_context.pool, job_context.store, [digest])
            assert await _object_exists(job_context, digest)
    finally:
        await pusher.close()
    assert await db.fetchval("SELECT count(*) FROM blob_objects") == 1
