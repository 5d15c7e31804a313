"""The object store contract, run against every backend (see tests/fixtures/storage.py)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from registry_common.settings import ConfigError, Settings
from registry_common.storage import create_object_store
from registry_common.storage.base import (
    READ_CHUNK_SIZE,
    ObjectNotFound,
    ObjectStore,
    SizeLimitExceeded,
    StorageUnavailable,
)
from registry_common.storage.filesystem import FilesystemStore
from registry_common.storage.gcs import GcsStore
from registry_common.storage.layout import blob_key, upload_part_key, upload_prefix

MIB = 1024 * 1024
RANGE_OBJECT_SIZE = 2 * MIB + 100


def payload(size: int, seed: int = 0) -> bytes:
    """`size` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


async def stream(data: bytes, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` as a request body would arrive: in chunks."""
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


async def read_bytes(store: ObjectStore, key: str, **kwargs: Any) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, **kwargs)])


async def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key async for info in store.list(prefix)]


class HookFailed(Exception):
    pass


# Round trips


async def test_write_then_read_returns_same_bytes(object_store: ObjectStore) -> None:
    data = payload(1000)

    written = await object_store.write("blobs/a", stream(data))

    assert written == len(data)
    assert await object_store.read_all("blobs/a") == data


async def test_streamed_write_of_several_mib_stores_every_byte(object_store: ObjectStore) -> None:
    data = payload(5 * MIB + 12345)
    key = blob_key("sha256:" + hashlib.sha256(data).hexdigest())

    written = await object_store.write(key, stream(data, chunk_size=100_000))
    pieces = [piece async for piece in object_store.read(key)]

    assert written == len(data)
    assert b"".join(pieces) == data
    assert max(len(piece) for piece in pieces) <= READ_CHUNK_SIZE


async def test_write_replaces_existing_content(object_store: ObjectStore) -> None:
    await object_store.write("blobs/a", stream(b"old content"))

    await object_store.write("blobs/a", stream(b"new"))

    assert await object_store.read_all("blobs/a") == b"new"


async def test_write_of_empty_stream_stores_empty_object(object_store: ObjectStore) -> None:
    assert await object_store.write("blobs/empty", stream(b"")) == 0

    assert await object_store.read_all("blobs/empty") == b""
    info = await object_store.stat("blobs/empty")
    assert info is not None and info.size == 0


async def test_write_shows_every_chunk_to_the_hook_in_order(object_store: ObjectStore) -> None:
    data = payload(MIB + 5)
    digest = hashlib.sha256()

    await object_store.write("blobs/a", stream(data, chunk_size=70_000), on_chunk=digest.update)

    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


# Ranges: slicing rules, `content[offset:offset + length]`


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        pytest.param(0, None, id="whole"),
        pytest.param(1000, None, id="offset-only"),
        pytest.param(1000, 5000, id="offset-and-length"),
        pytest.param(MIB - 7, MIB + 20, id="across-pieces-and-windows"),
        pytest.param(RANGE_OBJECT_SIZE - 10, 100, id="length-past-end-is-cut"),
        pytest.param(RANGE_OBJECT_SIZE, None, id="offset-at-end-is-empty"),
        pytest.param(RANGE_OBJECT_SIZE + 10, 5, id="offset-past-end-is-empty"),
        pytest.param(5, 0, id="zero-length-is-empty"),
    ],
)
async def test_read_of_range_returns_that_slice(
    object_store: ObjectStore, offset: int, length: int | None
) -> None:
    data = payload(RANGE_OBJECT_SIZE)
    await object_store.write("blobs/r", stream(data))

    content = await read_bytes(object_store, "blobs/r", offset=offset, length=length)

    assert content == (data[offset:] if length is None else data[offset : offset + length])


@pytest.mark.parametrize(
    "arguments",
    [{}, {"offset": 10}, {"offset": 0, "length": 0}],
    ids=["whole", "from-offset", "zero-length"],
)
async def test_read_of_missing_key_raises_object_not_found(
    object_store: ObjectStore, arguments: dict[str, int]
) -> None:
    with pytest.raises(ObjectNotFound):
        await read_bytes(object_store, "blobs/missing", **arguments)


async def test_read_with_negative_offset_raises_value_error(object_store: ObjectStore) -> None:
    await object_store.write("blobs/a", stream(b"abc"))

    with pytest.raises(ValueError, match="range"):
        await read_bytes(object_store, "blobs/a", offset=-1)


# Metadata, deletion, listing


async def test_stat_of_existing_key_reports_size_and_update_time(
    object_store: ObjectStore,
) -> None:
    await object_store.write("blobs/a", stream(payload(1234)))

    info = await object_store.stat("blobs/a")

    assert info is not None
    assert (info.key, info.size) == ("blobs/a", 1234)
    assert abs(datetime.now(UTC) - info.updated) < timedelta(minutes=5)


async def test_stat_of_missing_key_returns_none(object_store: ObjectStore) -> None:
    assert await object_store.stat("blobs/missing") is None


async def test_delete_of_existing_key_returns_true_and_removes_it(
    object_store: ObjectStore,
) -> None:
    await object_store.write("blobs/a", stream(b"abc"))

    assert await object_store.delete("blobs/a") is True
    assert await object_store.stat("blobs/a") is None


async def test_delete_of_missing_key_returns_false(object_store: ObjectStore) -> None:
    assert await object_store.delete("blobs/missing") is False


async def test_delete_prefix_removes_only_keys_under_it(object_store: ObjectStore) -> None:
    doomed = [upload_part_key("u1", 0), upload_part_key("u1", 1), f"{upload_prefix('u1')}x/y"]
    kept = ["blobs/x", upload_part_key("u10", 0), upload_part_key("u2", 0)]
    for key in doomed + kept:
        await object_store.write(key, stream(b"data"))

    removed = await object_store.delete_prefix(upload_prefix("u1"))

    assert removed == len(doomed)
    assert await keys(object_store) == sorted(kept)


async def test_list_yields_keys_under_prefix_in_key_order(object_store: ObjectStore) -> None:
    # "-" < "/" < "0": a folder's keys sort between its neighbours, not before them.
    under = {"p/a-c": 1, "p/a/b": 2, "p/a0": 3, "p/b/c/d": 4}
    others = {"p0": 5, "q/x": 6}
    for key, size in random.Random(1).sample(sorted({**under, **others}.items()), 6):
        await object_store.write(key, stream(b"x" * size))

    listed = [(info.key, info.size) async for info in object_store.list("p/")]

    assert listed == sorted(under.items())
    assert await keys(object_store, "p/a") == ["p/a-c", "p/a/b", "p/a0"]
    assert await keys(object_store, "") == sorted({**under, **others})
    assert await keys(object_store, "nothing/") == []


# Copy, move, compose


async def test_copy_duplicates_content_and_keeps_source(object_store: ObjectStore) -> None:
    data = payload(MIB + 3)
    await object_store.write("uploads/u/data", stream(data))
    await object_store.write("blobs/b", stream(b"old"))

    await object_store.copy("uploads/u/data", "blobs/b")

    assert await object_store.read_all("blobs/b") == data
    assert await object_store.read_all("uploads/u/data") == data


async def test_copy_of_missing_source_raises_object_not_found(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await object_store.copy("uploads/u/missing", "blobs/b")

    assert await keys(object_store) == []


async def test_move_relocates_content(object_store: ObjectStore) -> None:
    await object_store.write("uploads/u/data", stream(b"content"))

    await object_store.move("uploads/u/data", "blobs/sha256/ab/abc")

    assert await object_store.read_all("blobs/sha256/ab/abc") == b"content"
    assert await object_store.stat("uploads/u/data") is None


async def test_move_of_missing_source_raises_object_not_found(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await object_store.move("uploads/u/missing", "blobs/b")


@pytest.mark.parametrize("count", [1, 3, 70], ids=["1-part", "3-parts", "70-parts-staged"])
async def test_compose_stores_exact_concatenation_of_parts(
    object_store: ObjectStore, count: int
) -> None:
    parts = [payload(1000 + 37 * index, seed=index) for index in range(count)]
    if count > 1:
        parts[1] = b""
    sources = [upload_part_key("u", index) for index in range(count)]
    for key, part in zip(sources, parts, strict=True):
        await object_store.write(key, stream(part))

    size = await object_store.compose(sources, "blobs/composed")

    expected = b"".join(parts)
    assert size == len(expected)
    assert await object_store.read_all("blobs/composed") == expected
    # The sources stay, and no intermediate object is left behind.
    assert await keys(object_store) == ["blobs/composed", *sources]


async def test_compose_of_no_sources_stores_empty_object(object_store: ObjectStore) -> None:
    assert await object_store.compose([], "blobs/composed") == 0

    assert await object_store.read_all("blobs/composed") == b""


async def test_compose_with_missing_source_stores_nothing(object_store: ObjectStore) -> None:
    if isinstance(object_store, GcsStore):
        pytest.skip("fake-gcs-server answers 500 (retried) where GCS answers 404")
    sources = [upload_part_key("u", index) for index in range(40)]
    for key in sources[:20] + sources[21:]:
        await object_store.write(key, stream(b"part"))

    with pytest.raises(ObjectNotFound):
        await object_store.compose(sources, "blobs/composed")

    assert await object_store.stat("blobs/composed") is None
    assert "blobs/composed" not in await keys(object_store)


# Failed writes leave the key as it was


@pytest.mark.parametrize("existing", [True, False], ids=["existing-key", "new-key"])
async def test_write_whose_hook_raises_leaves_key_as_it_was(
    object_store: ObjectStore, existing: bool
) -> None:
    if existing:
        await object_store.write("blobs/a", stream(b"old content"))
    seen = 0

    def fail_after_a_mib(chunk: bytes) -> None:
        nonlocal seen
        seen += len(chunk)
        if seen > MIB + 300_000:  # several upload requests have gone out by now
            raise HookFailed

    with pytest.raises(HookFailed):
        await object_store.write(
            "blobs/a", stream(payload(2 * MIB), 100_000), on_chunk=fail_after_a_mib
        )

    if existing:
        assert await object_store.read_all("blobs/a") == b"old content"
    else:
        assert await object_store.stat("blobs/a") is None
    assert await keys(object_store) == (["blobs/a"] if existing else [])


async def test_write_over_max_size_raises_and_stores_nothing(object_store: ObjectStore) -> None:
    with pytest.raises(SizeLimitExceeded):
        await object_store.write("blobs/a", stream(payload(2 * MIB), 100_000), max_size=MIB + 1)

    assert await keys(object_store) == []


async def test_write_of_exactly_max_size_succeeds(object_store: ObjectStore) -> None:
    assert await object_store.write("blobs/a", stream(payload(MIB)), max_size=MIB) == MIB


async def test_write_whose_source_fails_mid_stream_stores_nothing(
    object_store: ObjectStore,
) -> None:
    async def breaking_body() -> AsyncIterator[bytes]:
        async for chunk in stream(payload(MIB + 500_000), 100_000):
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await object_store.write("blobs/a", breaking_body())

    assert await keys(object_store) == []


async def test_cancelled_write_stores_nothing(object_store: ObjectStore) -> None:
    half_sent = asyncio.Event()

    async def stalling_body() -> AsyncIterator[bytes]:
        yield payload(MIB + 1000)
        yield payload(1000)
        half_sent.set()
        await asyncio.Event().wait()  # the rest never comes
        yield b"never"

    task = asyncio.create_task(object_store.write("blobs/a", stalling_body()))
    await half_sent.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert await keys(object_store) == []


# Keys


@pytest.mark.parametrize(
    "key", ["../x", "/abs", "a//b", "a/../b", "a/./b", "a/", "", "a\\b", "a\x00b", ".tmp/x"]
)
async def test_invalid_key_raises_value_error(object_store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        await object_store.write(key, stream(b"x"))
    with pytest.raises(ValueError, match="object key"):
        await object_store.stat(key)
    with pytest.raises(ValueError, match="object key"):
        await object_store.read_all(key)
    with pytest.raises(ValueError, match="object key"):
        await object_store.compose([key], "blobs/a")
    assert await keys(object_store) == []


@pytest.mark.parametrize("prefix", ["../", "/abs/", "a//", ".tmp/"])
async def test_invalid_prefix_raises_value_error(object_store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        await keys(object_store, prefix)
    with pytest.raises(ValueError, match="object key"):
        await object_store.delete_prefix(prefix)


# Readiness


async def test_ping_succeeds_on_a_working_backend(object_store: ObjectStore) -> None:
    await object_store.ping()


async def test_ping_of_unreachable_backend_raises_storage_unavailable(
    unreachable_object_store: ObjectStore,
) -> None:
    with pytest.raises(StorageUnavailable):
        await unreachable_object_store.ping()


# Filesystem specifics


async def test_local_path_names_the_file_holding_the_key(
    filesystem_store: FilesystemStore,
) -> None:
    await filesystem_store.write("blobs/sha256/ab/abc", stream(b"content"))

    path = filesystem_store.local_path("blobs/sha256/ab/abc")

    assert path == filesystem_store.root / "blobs" / "sha256" / "ab" / "abc"
    assert path.read_bytes() == b"content"


async def test_local_path_of_missing_key_is_none(filesystem_store: FilesystemStore) -> None:
    assert filesystem_store.local_path("blobs/missing") is None


def test_local_path_rejects_keys_escaping_the_root(filesystem_store: FilesystemStore) -> None:
    for key in ["../x", "/etc/passwd", "a//b"]:
        with pytest.raises(ValueError, match="object key"):
            filesystem_store.local_path(key)


async def test_gcs_has_no_local_path(gcs_store: GcsStore) -> None:
    await gcs_store.write("blobs/a", stream(b"content"))

    assert gcs_store.local_path("blobs/a") is None


async def test_failed_writes_leave_no_temporary_files(filesystem_store: FilesystemStore) -> None:
    def fail(chunk: bytes) -> None:
        raise HookFailed

    with pytest.raises(HookFailed):
        await filesystem_store.write("blobs/a", stream(b"abc"), on_chunk=fail)
    with pytest.raises(SizeLimitExceeded):
        await filesystem_store.write("blobs/a", stream(b"abc"), max_size=2)
    with pytest.raises(ObjectNotFound):
        await filesystem_store.compose(["uploads/u/missing"], "blobs/a")

    assert list((filesystem_store.root / ".tmp").iterdir()) == []


async def test_delete_prefix_removes_the_emptied_folder(
    filesystem_store: FilesystemStore,
) -> None:
    await filesystem_store.write(upload_part_key("u1", 0), stream(b"data"))
    await filesystem_store.write(f"{upload_prefix('u1')}deeper/part", stream(b"data"))

    await filesystem_store.delete_prefix(upload_prefix("u1"))

    assert list((filesystem_store.root / "uploads").iterdir()) == []


async def test_write_into_missing_root_raises_and_does_not_create_it(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "unmounted")

    with pytest.raises(StorageUnavailable):
        await store.write("blobs/a", stream(b"abc"))

    assert not (tmp_path / "unmounted").exists()


# Choosing a backend


async def test_create_object_store_picks_filesystem_and_creates_its_folder(
    tmp_path: Path,
) -> None:
    settings = Settings(storage_path=tmp_path / "a" / "b", bucket_name=None)

    store = create_object_store(settings)

    assert isinstance(store, FilesystemStore)
    await store.ping()


async def test_create_object_store_picks_gcs_when_bucket_is_set(
    gcs_bucket: str, tmp_path: Path
) -> None:
    settings = Settings(storage_path=tmp_path, bucket_name=gcs_bucket)

    store = create_object_store(settings)

    try:
        assert isinstance(store, GcsStore)
        await store.ping()
    finally:
        await store.close()


def test_create_object_store_without_storage_raises_config_error() -> None:
    settings = Settings(storage_path=None, bucket_name=None)

    with pytest.raises(ConfigError) as caught:
        create_object_store(settings)

    assert caught.value.variable == "STORAGE_PATH"
