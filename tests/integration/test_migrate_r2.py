"""registry-migrate-r2: the Worker's R2 objects into content-addressed storage and PostgreSQL,
from a real S3 implementation (moto's server) on loopback, into every storage backend."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from rich.console import Console

from registry_common.storage.base import ChunkHook, ObjectStore
from registry_common.storage.filesystem import FilesystemStore
from registry_common.storage.layout import blob_key
from registry_tools.migrate.progress import MigrationProgress, Outcome
from registry_tools.migrate.r2 import STREAM_CHUNK_SIZE
from tests.fixtures.distribution import OCI_INDEX, OCI_MANIFEST, make_image, sha256
from tests.fixtures.migration import (
    DOCKER_MANIFEST,
    SIGNATURE_TYPE,
    FakeR2Bucket,
    LegacyRegistry,
    SmallRegistry,
    run_command,
    run_d1_migration,
    run_r2_migration,
)


async def _keys(store: ObjectStore, prefix: str = "") -> set[str]:
    return {info.key async for info in store.list(prefix)}


def _distinct_digests(legacy: LegacyRegistry) -> set[str]:
    return {digest for _, digest in legacy.blobs}


async def test_r2_blobs_land_once_per_digest_and_manifests_go_to_the_database(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    object_store: ObjectStore,
    db: asyncpg.Connection,
    legacy_registry: SmallRegistry,
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_r2(r2_bucket)

    summary = await run_r2_migration(r2_bucket, migration_pool, object_store)

    assert summary.failed == 0, summary.render()
    digests = _distinct_digests(legacy)
    assert summary.kinds["blobs"] == {
        Outcome.COPIED: len(digests),
        # The layer proj/tools shares with proj/app is stored once and linked twice.
        Outcome.LINKED: len(legacy.blobs) - len(digests),
    }
    # A manifest pushed by tag is stored by whichever of its two objects comes first; the
    # other one finds it there.
    manifests = summary.kinds["manifests"]
    assert manifests[Outcome.COPIED] + manifests[Outcome.SKIPPED] == len(legacy.manifests)
    assert manifests[Outcome.COPIED] >= len(legacy.manifests) - len(legacy.tags)
    assert summary.kinds["tags"] == {Outcome.COPIED: len(legacy.tags)}
    assert summary.ignored == 1  # the _uploads/ object
    assert summary.bytes_copied == sum(
        len(legacy.blobs[next(k for k in legacy.blobs if k[1] == d)]) for d in digests
    ) + sum(len(body) for body, _ in legacy.manifests.values())

    assert await _keys(object_store) == {blob_key(digest) for digest in digests}
    for (_, digest), body in legacy.blobs.items():
        assert await object_store.read_all(blob_key(digest)) == body
    assert await db.fetchval("SELECT count(*) FROM blob_objects") == len(digests)
    assert {tuple(row) for row in await db.fetch("SELECT repository, digest, size FROM blobs")} == {
        (repository, digest, len(body)) for (repository, digest), body in legacy.blobs.items()
    }
    stored = {
        (row["repository"], row["digest"]): (bytes(row["content"]), row["media_type"])
        for row in await db.fetch("SELECT repository, digest, content, media_type FROM manifests")
    }
    assert stored == legacy.manifests
    assert {tuple(row) for row in await db.fetch("SELECT repository, tag, digest FROM tags")} == {
        (repository, tag, digest) for (repository, tag), digest in legacy.tags.items()
    }
    assert await db.fetchval(
        "SELECT media_type FROM manifests WHERE repository = 'proj/tools'"
    ) == (DOCKER_MANIFEST)
    referrer = await db.fetchrow(
        "SELECT subject, artifact_type, annotations FROM manifests WHERE digest = $1",
        legacy_registry.signature.digest,
    )
    assert referrer is not None
    assert referrer["subject"] == legacy_registry.children[0].digest
    assert referrer["artifact_type"] == SIGNATURE_TYPE
    assert json.loads(referrer["annotations"]) == {"a": "b"}


async def test_r2_rerun_copies_nothing(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    object_store: ObjectStore,
    legacy_registry: SmallRegistry,
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_r2(r2_bucket)
    await run_r2_migration(r2_bucket, migration_pool, object_store)

    summary = await run_r2_migration(r2_bucket, migration_pool, object_store)

    assert summary.failed == 0
    assert summary.total(Outcome.COPIED) == summary.total(Outcome.LINKED) == 0
    assert summary.total(Outcome.SKIPPED) == len(legacy.objects) - 1
    assert summary.bytes_copied == 0


async def test_r2_fills_rows_imported_from_d1_and_corrects_their_blob_sizes(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    object_store: ObjectStore,
    db: asyncpg.Connection,
    db_url: str,
    d1_api: Any,
    legacy_registry: SmallRegistry,
) -> None:
    legacy = legacy_registry.legacy
    wrong = legacy.rows["blobs"][0]
    legacy.rows["blobs"][0] = {**wrong, "size": 0}
    legacy.load_d1(d1_api)
    legacy.load_r2(r2_bucket)
    await run_d1_migration(d1_api, db_url)
    imported_at = dict(
        ((row["repository"], row["digest"]), row["created_at"])
        for row in await db.fetch("SELECT repository, digest, created_at FROM manifests")
    )

    summary = await run_r2_migration(r2_bucket, migration_pool, object_store)

    assert summary.failed == 0, summary.render()
    # Every manifest row had no bytes: all are filled; tags were there already.
    assert summary.kinds["manifests"] == {Outcome.COPIED: len(legacy.manifests)}
    assert summary.kinds["tags"] == {Outcome.SKIPPED: len(legacy.tags)}
    assert await db.fetchval("SELECT count(*) FROM manifests WHERE content IS NULL") == 0
    assert imported_at == dict(
        ((row["repository"], row["digest"]), row["created_at"])
        for row in await db.fetch("SELECT repository, digest, created_at FROM manifests")
    )
    size = await db.fetchval(
        "SELECT size FROM blobs WHERE repository = $1 AND digest = $2",
        wrong["repository"],
        wrong["digest"],
    )
    assert size == wrong["size"]


async def test_r2_digest_mismatch_is_reported_and_nothing_is_kept(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    object_store: ObjectStore,
    db: asyncpg.Connection,
) -> None:
    claimed = sha256(b"what the key says")
    r2_bucket.put(f"proj/app/blobs/{claimed}", b"other bytes" * 1000)
    r2_bucket.put(f"proj/app/manifests/{claimed}", b'{"schemaVersion":2}', OCI_MANIFEST)
    good = b"good bytes"
    r2_bucket.put(f"proj/app/blobs/{sha256(good)}", good)

    summary = await run_r2_migration(r2_bucket, migration_pool, object_store)

    assert summary.kinds["blobs"] == {Outcome.COPIED: 1, Outcome.FAILED: 1}
    assert summary.kinds["manifests"] == {Outcome.FAILED: 1}
    assert all("digest mismatch" in failure for failure in summary.failures)
    # Only the good blob is stored; the staging copy of the bad one is gone.
    assert await _keys(object_store) == {blob_key(sha256(good))}
    assert await db.fetchval("SELECT array_agg(digest) FROM blob_objects") == [sha256(good)]
    assert await db.fetchval("SELECT count(*) FROM manifests") == 0


async def test_r2_keys_the_worker_never_wrote_fail_and_uploads_are_ignored(
    r2_bucket: FakeR2Bucket, migration_pool: asyncpg.Pool, filesystem_store: FilesystemStore
) -> None:
    r2_bucket.put("_uploads/0f3c/part", b"temporary")
    r2_bucket.put("README", b"hello")
    r2_bucket.put("proj/app/blobs/latest", b"not a digest")
    r2_bucket.put("Proj/App/blobs/" + sha256(b"x"), b"x")
    r2_bucket.put("proj/app/manifests/-bad-tag", b"{}")

    summary = await run_r2_migration(r2_bucket, migration_pool, filesystem_store)

    assert summary.ignored == 1
    assert summary.kinds["other"] == {Outcome.FAILED: 4}
    assert await _keys(filesystem_store) == set()


async def test_r2_manifest_media_type_comes_from_content_type_else_from_the_document(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    filesystem_store: FilesystemStore,
    db: asyncpg.Connection,
) -> None:
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    image = make_image("untyped")
    # A manifest this registry would refuse on push is kept as the old registry served it.
    odd = json.dumps({"schemaVersion": 2, "layers": "not a list", "artifactType": "a/b"}).encode()
    r2_bucket.put(f"proj/app/manifests/{sha256(index)}", index, f"{OCI_INDEX}; charset=utf-8")
    r2_bucket.put(f"proj/app/manifests/{sha256(image.manifest)}", image.manifest)
    r2_bucket.put(f"proj/app/manifests/{sha256(odd)}", odd, "application/octet-stream")

    summary = await run_r2_migration(r2_bucket, migration_pool, filesystem_store)

    assert summary.kinds["manifests"] == {Outcome.COPIED: 3}
    types = {row[0]: row[1] for row in await db.fetch("SELECT digest, media_type FROM manifests")}
    assert types == {
        sha256(index): OCI_INDEX,
        sha256(image.manifest): OCI_MANIFEST,
        sha256(odd): OCI_MANIFEST,
    }
    assert await db.fetchval(
        "SELECT artifact_type FROM manifests WHERE digest = $1", sha256(odd)
    ) == ("a/b")


async def test_r2_never_moves_a_tag_that_exists(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    filesystem_store: FilesystemStore,
    db: asyncpg.Connection,
) -> None:
    old, new = make_image("old"), make_image("new")
    legacy = LegacyRegistry()
    legacy.push_image("proj/app", old, "v1")
    legacy.load_r2(r2_bucket)
    # Since the import began, v1 was pushed again to this registry.
    await db.execute("INSERT INTO repositories (name, namespace) VALUES ('proj/app', 'proj')")
    await db.execute(
        "INSERT INTO manifests (repository, digest, content) VALUES ('proj/app', $1, $2)",
        new.digest,
        new.manifest,
    )
    await db.execute(
        "INSERT INTO tags (repository, tag, digest) VALUES ('proj/app', 'v1', $1)", new.digest
    )

    summary = await run_r2_migration(r2_bucket, migration_pool, filesystem_store)

    assert summary.kinds["tags"] == {Outcome.SKIPPED: 1}
    assert await db.fetchval("SELECT digest FROM tags WHERE tag = 'v1'") == new.digest


async def test_r2_dry_run_reports_what_it_would_copy_and_writes_nothing(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    filesystem_store: FilesystemStore,
    db: asyncpg.Connection,
    legacy_registry: SmallRegistry,
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_r2(r2_bucket)

    summary = await run_r2_migration(r2_bucket, migration_pool, filesystem_store, dry_run=True)

    assert summary.failed == 0
    assert summary.kinds["blobs"][Outcome.COPIED] == len(legacy.blobs)
    assert summary.kinds["manifests"][Outcome.COPIED] == len(legacy.manifests)
    assert summary.kinds["tags"][Outcome.COPIED] == len(legacy.tags)
    assert await _keys(filesystem_store) == set()
    for table in ("repositories", "manifests", "tags", "blobs", "blob_objects"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0


class _WatchedStore(FilesystemStore):
    """A filesystem store that records the chunks written and how many writes run at once,
    holding every write until `gate_at` of them run together (when set)."""

    def __init__(self, root: Path, gate_at: int | None = None) -> None:
        super().__init__(root)
        self.chunk_sizes: list[int] = []
        self.active = 0
        self.most_active = 0
        self._gate_at = gate_at
        self._gate = asyncio.Event()

    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        on_chunk: ChunkHook | None = None,
        max_size: int | None = None,
    ) -> int:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self._gate_at is not None:
                if self.active >= self._gate_at:
                    self._gate.set()
                await asyncio.wait_for(self._gate.wait(), timeout=30)
            return await super().write(
                key, self._recorded(chunks), on_chunk=on_chunk, max_size=max_size
            )
        finally:
            self.active -= 1

    async def _recorded(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.chunk_sizes.append(len(chunk))
            yield chunk


async def test_r2_streams_a_large_blob_in_bounded_chunks(
    r2_bucket: FakeR2Bucket, migration_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    body = bytes(range(256)) * (7 * 4096 + 11)  # ~7 MiB
    r2_bucket.put(f"proj/app/blobs/{sha256(body)}", body)
    (tmp_path / "watched").mkdir()
    store = _WatchedStore(tmp_path / "watched")

    summary = await run_r2_migration(r2_bucket, migration_pool, store, workers=1)

    assert summary.kinds["blobs"] == {Outcome.COPIED: 1}
    assert sum(store.chunk_sizes) == len(body)
    assert len(store.chunk_sizes) > 1
    assert max(store.chunk_sizes) <= STREAM_CHUNK_SIZE
    assert await store.read_all(blob_key(sha256(body))) == body


async def test_r2_copies_with_workers_in_parallel_and_never_more(
    r2_bucket: FakeR2Bucket, migration_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    workers = 3
    for index in range(12):
        body = f"blob {index}".encode() * 100
        r2_bucket.put(f"proj/app/blobs/{sha256(body)}", body)
    (tmp_path / "watched").mkdir()
    # Every write waits until `workers` writes run at once: this only finishes in parallel.
    store = _WatchedStore(tmp_path / "watched", gate_at=workers)

    summary = await run_r2_migration(r2_bucket, migration_pool, store, workers=workers)

    assert summary.kinds["blobs"] == {Outcome.COPIED: 12}
    assert store.most_active == workers


async def test_r2_progress_bar_shows_objects_bytes_rate_and_eta_on_a_terminal(
    r2_bucket: FakeR2Bucket,
    migration_pool: asyncpg.Pool,
    filesystem_store: FilesystemStore,
    legacy_registry: SmallRegistry,
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_r2(r2_bucket)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150, color_system=None)

    await run_r2_migration(
        r2_bucket, migration_pool, filesystem_store, progress=MigrationProgress(console)
    )

    shown = screen.getvalue()
    objects = len(legacy.objects) - 1
    assert f"{objects}/{objects} objects" in shown
    assert "objects/s" in shown
    assert "B/s" in shown
    assert "ETA" in shown


async def test_registry_migrate_r2_command_migrates_reruns_and_exits_by_outcome(
    r2_bucket: FakeR2Bucket, db_url: str, tmp_path: Path, legacy_registry: SmallRegistry
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_r2(r2_bucket)
    storage = tmp_path / "storage"
    env = {"DB_URL": db_url, "STORAGE_PATH": str(storage), **r2_bucket.env(workers=2)}
    objects = len(legacy.objects) - 1

    dry = await run_command("registry-migrate-r2", env, "--dry-run")
    assert dry.code == 0, dry.stderr
    assert dry.total("copied") == objects
    assert not list(storage.rglob("*.*")) and not (storage / "blobs").exists()

    first = await run_command("registry-migrate-r2", env)
    assert first.code == 0, first.stderr
    assert first.total("failed") == 0
    assert first.total("copied") + first.total("linked") + first.total("skipped") == objects
    assert first.total("copied") >= objects - len(legacy.tags) - 1
    assert "ignored: 1" in first.stdout

    r2_bucket.put(f"proj/app/blobs/{sha256(b'claimed')}", b"different")
    second = await run_command("registry-migrate-r2", env)
    assert second.code == 1
    assert (second.total("copied"), second.total("skipped"), second.total("failed")) == (
        0,
        objects,
        1,
    )
    assert "digest mismatch" in second.stdout


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"R2_ACCESS_KEY_ID": None}, "R2_ACCESS_KEY_ID"),
        ({"R2_ENDPOINT_URL": None, "R2_ACCOUNT_ID": None}, "R2_ACCOUNT_ID"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"STORAGE_PATH": None}, "STORAGE_PATH"),
    ],
)
async def test_registry_migrate_r2_command_names_a_bad_variable(
    r2_bucket: FakeR2Bucket, db_url: str, tmp_path: Path, change: dict[str, Any], variable: str
) -> None:
    env = {"DB_URL": db_url, "STORAGE_PATH": str(tmp_path / "storage"), **r2_bucket.env()}
    for name, value in change.items():
        if value is None:
            del env[name]
        else:
            env[name] = value

    result = await run_command("registry-migrate-r2", env)

    assert result.code == 2
    assert f"configuration error: {variable}" in result.stderr


async def test_registry_migrate_r2_command_stops_when_the_bucket_cannot_be_listed(
    r2_bucket: FakeR2Bucket, db_url: str, tmp_path: Path
) -> None:
    env = {
        "DB_URL": db_url,
        "STORAGE_PATH": str(tmp_path / "storage"),
        **r2_bucket.env(),
        "R2_BUCKET": "no-such-bucket",
    }

    result = await run_command("registry-migrate-r2", env)

    assert result.code == 1
    assert "stopped" in result.stderr
    assert "NoSuchBucket" in result.stderr
    assert "stopped before the end" in result.stdout
