"""Blob uploads: monolithic, chunked, resumable, cancelled, mounted; digests verified first."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import asyncpg
import pytest

from registry_common import metrics
from registry_common.http import OBJECT_STORE
from registry_distribution.app import create_app
from tests.fixtures.distribution import RegistryClient, sha256
from tests.fixtures.services import ServiceClient

NAME = "proj/app"


async def _start(client: ServiceClient, name: str = NAME) -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status == 202, await response.text()
    assert response.headers["Range"] == "0-0"
    assert response.headers["Docker-Upload-UUID"] in response.headers["Location"]
    assert int(response.headers["OCI-Chunk-Min-Length"]) > 0
    return response.headers["Location"]


async def _patch(client: ServiceClient, location: str, data: bytes, start: int) -> Any:
    return await client.patch(
        location,
        data=data,
        headers={
            "Content-Range": f"{start}-{start + len(data) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )


async def _stored_keys(db: asyncpg.Connection, client: ServiceClient) -> dict[str, int]:
    """What exists anywhere for the test: link rows, object rows, upload sessions."""
    return {
        "blobs": await db.fetchval("SELECT count(*) FROM blobs"),
        "blob_objects": await db.fetchval("SELECT count(*) FROM blob_objects"),
        "upload_sessions": await db.fetchval("SELECT count(*) FROM upload_sessions"),
    }


async def _storage_keys(client: ServiceClient) -> list[str]:

    store = client.app[OBJECT_STORE]
    return [info.key async for info in store.list("blobs/")] + [
        info.key async for info in store.list("uploads/")
    ]


async def test_monolithic_post_with_digest_creates_blob(registry_client: ServiceClient) -> None:
    data = os.urandom(5000)
    response = await registry_client.post(
        f"/v2/{NAME}/blobs/uploads/", params={"digest": sha256(data)}, data=data
    )
    assert response.status == 201
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert response.headers["Location"] == f"/v2/{NAME}/blobs/{sha256(data)}"
    fetched = await registry_client.get(response.headers["Location"])
    assert await fetched.read() == data


async def test_post_then_put_with_body_creates_blob(registry: RegistryClient) -> None:
    data = b"layer bytes" * 1000
    digest = await registry.push_blob(NAME, data)
    fetched = await registry.client.get(f"/v2/{NAME}/blobs/{digest}")
    assert fetched.status == 200
    assert await fetched.read() == data


async def test_chunked_upload_assembles_chunks_in_order(registry_client: ServiceClient) -> None:
    chunks = [os.urandom(70_000), os.urandom(1), os.urandom(300_000)]
    data = b"".join(chunks)
    location = await _start(registry_client)
    offset = 0
    for chunk in chunks:
        response = await _patch(registry_client, location, chunk, offset)
        assert response.status == 202, await response.text()
        offset += len(chunk)
        assert response.headers["Range"] == f"0-{offset - 1}"
        location = response.headers["Location"]
    done = await registry_client.put(location, params={"digest": sha256(data)})
    assert done.status == 201, await done.text()
    fetched = await registry_client.get(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert await fetched.read() == data


async def test_streamed_patch_without_content_range_is_accepted(
    registry_client: ServiceClient,
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    location = await _start(registry_client)
    response = await registry_client.patch(location, data=data)
    assert response.status == 202
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    done = await registry_client.put(location, params={"digest": sha256(data)})
    assert done.status == 201


async def test_upload_status_reports_received_range(registry_client: ServiceClient) -> None:
    location = await _start(registry_client)
    await _patch(registry_client, location, b"x" * 100, 0)
    status = await registry_client.get(location)
    assert status.status == 204
    assert status.headers["Range"] == "0-99"
    assert status.headers["Location"] == location


async def test_out_of_order_patch_returns_416_with_current_range(
    registry_client: ServiceClient,
) -> None:
    location = await _start(registry_client)
    await _patch(registry_client, location, b"a" * 10, 0)
    gap = await _patch(registry_client, location, b"b" * 10, 20)
    assert gap.status == 416
    assert gap.headers["Range"] == "0-9"
    overlap = await _patch(registry_client, location, b"b" * 10, 5)
    assert overlap.status == 416
    status = await registry_client.get(location)
    assert status.headers["Range"] == "0-9"


@pytest.mark.parametrize("header", ["abc", "5", "10-2", "bytes=0-4", "-1-4"])
async def test_malformed_content_range_is_rejected(
    registry_client: ServiceClient, header: str
) -> None:
    location = await _start(registry_client)
    response = await registry_client.patch(
        location, data=b"hello", headers={"Content-Range": header}
    )
    assert response.status == 416
    assert (await response.json())["errors"][0]["code"] == "RANGE_INVALID"


async def test_content_length_disagreeing_with_content_range_is_size_invalid(
    registry_client: ServiceClient,
) -> None:
    location = await _start(registry_client)
    response = await registry_client.patch(
        location, data=b"hello", headers={"Content-Range": "0-9"}
    )
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] == "SIZE_INVALID"


async def test_digest_mismatch_leaves_nothing_behind(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    wrong = sha256(b"something else")
    monolithic = await registry_client.post(
        f"/v2/{NAME}/blobs/uploads/", params={"digest": wrong}, data=b"actual bytes"
    )
    assert monolithic.status == 400
    assert (await monolithic.json())["errors"][0]["code"] == "DIGEST_INVALID"

    location = await _start(registry_client)
    await _patch(registry_client, location, b"chunk one", 0)
    chunked = await registry_client.put(location, params={"digest": wrong}, data=b" and two")
    assert chunked.status == 400
    assert (await chunked.json())["errors"][0]["code"] == "DIGEST_INVALID"

    assert await _stored_keys(db, registry_client) == {
        "blobs": 0,
        "blob_objects": 0,
        "upload_sessions": 0,
    }
    assert await _storage_keys(registry_client) == []
    missing = await registry_client.head(f"/v2/{NAME}/blobs/{wrong}")
    assert missing.status == 404


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "sha256:..%2F..%2Fetc",
        "",
    ],
)
async def test_put_with_malformed_digest_is_digest_invalid(
    registry_client: ServiceClient, digest: str
) -> None:
    location = await _start(registry_client)
    response = await registry_client.put(location, params={"digest": digest}, data=b"x")
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] == "DIGEST_INVALID"


async def test_put_without_digest_is_digest_invalid(registry_client: ServiceClient) -> None:
    location = await _start(registry_client)
    response = await registry_client.put(location, data=b"x")
    assert response.status == 400


async def test_cancel_removes_session_and_data(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    location = await _start(registry_client)
    await _patch(registry_client, location, b"x" * 1000, 0)
    cancelled = await registry_client.delete(location)
    assert cancelled.status == 204
    status = await registry_client.get(location)
    assert status.status == 404
    assert (await status.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert await db.fetchval("SELECT count(*) FROM upload_sessions") == 0
    assert await _storage_keys(registry_client) == []


async def test_session_of_another_repository_is_unknown(registry_client: ServiceClient) -> None:
    location = await _start(registry_client, "proj/app")
    upload_id = location.rsplit("/", 1)[1]
    for name in ("proj/other", "otherproj/app"):
        stolen = f"/v2/{name}/blobs/uploads/{upload_id}"
        assert (await registry_client.get(stolen)).status == 404
        assert (await _patch(registry_client, stolen, b"evil", 0)).status == 404
        put = await registry_client.put(stolen, params={"digest": sha256(b"evil")}, data=b"evil")
        assert put.status == 404
    assert (await registry_client.get(location)).headers["Range"] == "0-0"


@pytest.mark.parametrize("upload_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
async def test_unknown_upload_id_is_blob_upload_unknown(
    registry_client: ServiceClient, upload_id: str
) -> None:
    response = await registry_client.get(f"/v2/{NAME}/blobs/uploads/{upload_id}")
    assert response.status == 404
    assert (await response.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


async def test_empty_blob_can_be_uploaded(registry: RegistryClient) -> None:
    digest = await registry.push_blob(NAME, b"")
    response = await registry.client.get(f"/v2/{NAME}/blobs/{digest}")
    assert response.status == 200
    assert await response.read() == b""


async def test_sha512_digest_is_verified(registry_client: ServiceClient) -> None:
    data = os.urandom(10_000)
    digest = f"sha512:{hashlib.sha512(data).hexdigest()}"
    location = await _start(registry_client)
    await _patch(registry_client, location, data[:4000], 0)
    done = await registry_client.put(location, params={"digest": digest}, data=data[4000:])
    assert done.status == 201, await done.text()
    fetched = await registry_client.get(f"/v2/{NAME}/blobs/{digest}")
    assert await fetched.read() == data


async def test_same_bytes_in_two_repositories_are_stored_once(
    registry: RegistryClient, db: asyncpg.Connection
) -> None:
    data = os.urandom(4096)
    await registry.push_blob("proj/one", data)
    await registry.push_blob("other/two", data)
    assert await db.fetchval("SELECT count(*) FROM blobs") == 2
    assert await db.fetchval("SELECT count(*) FROM blob_objects") == 1
    assert await _storage_keys(registry.client) == [
        f"blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}"
    ]


async def test_mount_from_a_readable_repository_links_without_upload(
    registry: RegistryClient,
) -> None:
    data = os.urandom(1000)
    digest = await registry.push_blob("proj/source", data)
    mounted = await registry.client.post(
        "/v2/proj/target/blobs/uploads/", params={"mount": digest, "from": "proj/source"}
    )
    assert mounted.status == 201
    assert mounted.headers["Location"] == f"/v2/proj/target/blobs/{digest}"
    fetched = await registry.client.get(f"/v2/proj/target/blobs/{digest}")
    assert await fetched.read() == data


async def test_mount_of_unlinked_blob_falls_back_to_upload(registry: RegistryClient) -> None:
    data = os.urandom(1000)
    digest = await registry.push_blob("proj/source", data)
    response = await registry.client.post(
        "/v2/proj/target/blobs/uploads/", params={"mount": digest, "from": "proj/elsewhere"}
    )
    assert response.status == 202
    assert (await registry.client.head(f"/v2/proj/target/blobs/{digest}")).status == 404


async def test_mount_without_from_only_considers_the_same_project(
    registry: RegistryClient,
) -> None:
    data = os.urandom(1000)
    digest = await registry.push_blob("proj/source", data)
    same_project = await registry.client.post(
        "/v2/proj/target/blobs/uploads/", params={"mount": digest}
    )
    assert same_project.status == 201
    other_project = await registry.client.post(
        "/v2/stranger/target/blobs/uploads/", params={"mount": digest}
    )
    assert other_project.status == 202
    assert (await registry.client.head(f"/v2/stranger/target/blobs/{digest}")).status == 404


async def test_chunks_may_alternate_between_two_app_instances(
    aiohttp_client: Any, make_settings: Any, storage_overrides: dict[str, Any]
) -> None:
    settings = make_settings(**storage_overrides)
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    chunks = [os.urandom(100_000 + index) for index in range(6)]
    data = b"".join(chunks)
    location = await _start(first)
    offset = 0
    for index, chunk in enumerate(chunks):
        client = (first, second)[index % 2]
        response = await _patch(client, location, chunk, offset)
        assert response.status == 202
        offset += len(chunk)
    done = await second.put(location, params={"digest": sha256(data)})
    assert done.status == 201, await done.text()
    fetched = await first.get(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert await fetched.read() == data


async def test_upload_counts_billing_bytes_for_the_project(registry: RegistryClient) -> None:

    def counted() -> tuple[float, float]:
        return (
            metrics.UPLOAD_BYTES.labels("billing-proj")._value.get(),
            metrics.UPLOAD_COUNT.labels("billing-proj")._value.get(),
        )

    before = counted()
    await registry.push_blob("billing-proj/app", b"z" * 12345)
    after = counted()
    assert after[0] - before[0] == 12345
    assert after[1] - before[1] == 1


@pytest.mark.parametrize("chunks", [0, 1, 3], ids=["put-body-only", "one-patch", "three-patches"])
async def test_finished_upload_leaves_no_temporary_data(
    registry_client: ServiceClient, db: asyncpg.Connection, chunks: int
) -> None:
    data = os.urandom(300_000)
    location = await _start(registry_client)
    pieces = [data[i * 1000 : (i + 1) * 1000] for i in range(chunks)]
    for index, piece in enumerate(pieces):
        response = await _patch(registry_client, location, piece, index * 1000)
        location = response.headers["Location"]
    rest = data[chunks * 1000 :]
    done = await registry_client.put(location, params={"digest": sha256(data)}, data=rest)
    assert done.status == 201, await done.text()
    assert await (await registry_client.get(f"/v2/{NAME}/blobs/{sha256(data)}")).read() == data
    assert await db.fetchval("SELECT count(*) FROM upload_sessions") == 0
    keys = await _storage_keys(registry_client)
    assert keys == [f"blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}"]


async def test_put_with_whole_body_and_wrong_digest_leaves_nothing(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    location = await _start(registry_client)
    response = await registry_client.put(
        location, params={"digest": sha256(b"other")}, data=b"the real bytes"
    )
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] == "DIGEST_INVALID"
    assert await _stored_keys(db, registry_client) == {
        "blobs": 0,
        "blob_objects": 0,
        "upload_sessions": 0,
    }
    assert await _storage_keys(registry_client) == []


async def test_put_body_longer_than_its_content_range_is_size_invalid(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    location = await _start(registry_client)
    response = await registry_client.put(
        location,
        params={"digest": sha256(b"0123456789")},
        data=b"0123456789",
        headers={"Content-Range": "0-9", "Content-Length": "10"},
    )
    assert response.status == 201
    second = await _start(registry_client)
    mismatch = await registry_client.put(
        second,
        params={"digest": sha256(b"0123456789")},
        data=b"0123456789",
        headers={"Content-Range": "0-4"},
    )
    assert mismatch.status == 400
    assert (await mismatch.json())["errors"][0]["code"] == "SIZE_INVALID"
