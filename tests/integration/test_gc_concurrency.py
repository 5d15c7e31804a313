"""GC never loses data: pushes, mounts, deletes and pulls while GC runs in a loop.

GC runs back to back while pushers work. Instead of waiting for a grace period to pass, half
of the pushes age their freshly uploaded links and objects past it (as a slow client would),
so GC races those pushes for real: a push may be refused (the client then uploads again, as
real clients do) but whatever manifest exists at the end must pull completely with the right
digests, and a final GC must leave no unlinked object behind.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from typing import Any

import asyncpg

from registry_common.jobs.base import JobContext, JobReport
from registry_common.jobs.gc import run_blob_gc
from registry_common.storage.layout import BLOBS_PREFIX, blob_key
from tests.fixtures.distribution import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256
from tests.fixtures.services import ServiceClient

REPOSITORIES = ["alpha/app", "alpha/tools", "beta/app"]
SHARED_LAYERS = [f"shared layer {index}".encode() * 300 for index in range(4)]
PUSHERS = 4
ROUNDS = 6
ATTEMPTS = 10


def _image(seed: str, rng: random.Random) -> tuple[bytes, dict[str, bytes]]:
    config = json.dumps({"seed": seed}).encode()
    layers = [*rng.sample(SHARED_LAYERS, 2), f"own layer {seed}".encode() * 200]
    blobs = {sha256(config): config} | {sha256(layer): layer for layer in layers}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    return json.dumps(manifest).encode(), blobs


async def _put_blob(
    client: ServiceClient, name: str, digest: str, data: bytes, mount: bool
) -> None:
    if mount:
        source = random.choice([repo for repo in REPOSITORIES if repo != name])
        mounted = await client.post(
            f"/v2/{name}/blobs/uploads/", params={"mount": digest, "from": source}
        )
        if mounted.status == 201:
            return
        location = mounted.headers["Location"]
    else:
        head = await client.head(f"/v2/{name}/blobs/{digest}")
        if head.status == 200:
            return  # present: skip the upload, as docker does
        location = (await client.post(f"/v2/{name}/blobs/uploads/")).headers["Location"]
    finished = await client.put(location, params={"digest": digest}, data=data)
    assert finished.status == 201, await finished.text()


async def _age_past_grace(pool: asyncpg.Pool, name: str, digests: list[str]) -> None:
    """What a client that pauses longer than the grace period before its manifest looks like."""
    await pool.execute(
        "UPDATE blobs SET accessed_at = now() - interval '1 day' "
        "WHERE repository = $1 AND digest = ANY($2::text[])",
        name,
        digests,
    )
    await pool.execute(
        "UPDATE blob_objects SET created_at = now() - interval '1 day' "
        "WHERE digest = ANY($1::text[])",
        digests,
    )


async def _push(
    client: ServiceClient,
    context: JobContext,
    name: str,
    tag: str,
    seed: str,
    rng: random.Random,
    refusals: list[str],
) -> None:
    manifest, blobs = _image(seed, rng)
    for attempt in range(ATTEMPTS):
        for digest, data in blobs.items():
            await _put_blob(client, name, digest, data, mount=rng.random() < 0.3)
        if attempt == 0 and rng.random() < 0.5:
            await _age_past_grace(context.pool, name, list(blobs))
            # A second collector, besides the loop, that surely runs in this window.
            await run_blob_gc(context, JobReport())
        response = await client.put(
            f"/v2/{name}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        if response.status == 201:
            return
        body = await response.json()
        # GC unlinked a layer between its upload and the manifest: upload again.
        assert body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", body
        refusals.append(f"{name}:{tag}")
    raise AssertionError(f"push of {name}:{tag} kept losing to GC")


async def _pusher(
    client: ServiceClient, context: JobContext, worker: int, refusals: list[str]
) -> None:
    rng = random.Random(worker)
    for round_ in range(ROUNDS):
        name = rng.choice(REPOSITORIES)
        tag = f"w{worker}-r{round_}"
        await _push(client, context, name, tag, f"{worker}-{round_}", rng, refusals)
        if rng.random() < 0.3:
            pulled = await client.get(f"/v2/{name}/manifests/{tag}")
            digest = pulled.headers["Docker-Content-Digest"]
            deleted = await client.delete(f"/v2/{name}/manifests/{digest}")
            assert deleted.status == 202
            await _push(client, context, name, tag, f"{worker}-{round_}", rng, refusals)


async def _gc_loop(context: JobContext, stop: asyncio.Event) -> int:
    runs = 0
    while not stop.is_set():
        await run_blob_gc(context, JobReport())
        runs += 1
        await asyncio.sleep(0)  # let pushers interleave between runs
    return runs


async def _assert_everything_pulls(client: ServiceClient, db: asyncpg.Connection) -> int:
    manifests = await db.fetch("SELECT repository, digest FROM manifests")
    for row in manifests:
        response = await client.get(f"/v2/{row['repository']}/manifests/{row['digest']}")
        assert response.status == 200
        body = await response.read()
        assert sha256(body) == row["digest"]
        document = json.loads(body)
        for descriptor in [document["config"], *document["layers"]]:
            blob = await client.get(f"/v2/{row['repository']}/blobs/{descriptor['digest']}")
            assert blob.status == 200, (row["repository"], descriptor["digest"])
            assert sha256(await blob.read()) == descriptor["digest"]
    return len(manifests)


async def test_gc_racing_pushes_mounts_and_deletes_loses_nothing(
    registry_client: ServiceClient, make_job_context: Any, db: asyncpg.Connection
) -> None:
    context: JobContext = make_job_context(
        gc_grace_period=timedelta(seconds=30), upload_expiry=timedelta(hours=1)
    )
    stop = asyncio.Event()
    refusals: list[str] = []
    gc_task = asyncio.create_task(_gc_loop(context, stop))
    try:
        await asyncio.gather(
            *(_pusher(registry_client, context, worker, refusals) for worker in range(PUSHERS))
        )
    finally:
        stop.set()
        gc_runs = await gc_task
    assert gc_runs > 1
    assert refusals, "no push ever raced a collection: the test exercised nothing"

    assert await _assert_everything_pulls(registry_client, db) >= PUSHERS * ROUNDS // 2

    await db.execute("UPDATE blobs SET accessed_at = now() - interval '1 day'")
    await db.execute("UPDATE blob_objects SET created_at = now() - interval '1 day'")
    await run_blob_gc(context, JobReport())
    unlinked = await db.fetchval(
        "SELECT count(*) FROM blob_objects o "
        "WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = o.digest)"
    )
    assert unlinked == 0
    rows = {row["digest"] for row in await db.fetch("SELECT digest FROM blob_objects")}
    stored = {info.key async for info in context.store.list(BLOBS_PREFIX)}
    assert stored == {blob_key(digest) for digest in rows}
    assert await _assert_everything_pulls(registry_client, db) >= PUSHERS * ROUNDS // 2
