"""Blob reads, ranges, deletes, the grace clock, CDN redirects and tenancy of links."""

from __future__ import annotations

import os
import shutil
from typing import Any

import asyncpg
import pytest
from yarl import URL

from registry_common import metrics
from registry_common.settings import Settings
from registry_distribution.app import create_app
from tests.fixtures.distribution import RegistryClient, sha256
from tests.fixtures.services import ServiceClient

NAME = "proj/app"
DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
async def pushed(registry: RegistryClient) -> str:
    return await registry.push_blob(NAME, DATA)


async def test_get_returns_bytes_with_digest_headers(
    registry_client: ServiceClient, pushed: str
) -> None:
    response = await registry_client.get(f"/v2/{NAME}/blobs/{pushed}")
    assert response.status == 200
    assert await response.read() == DATA
    assert response.headers["Docker-Content-Digest"] == pushed
    assert response.headers["Content-Length"] == str(len(DATA))
    assert "immutable" in response.headers["Cache-Control"]


async def test_head_returns_size_without_body(registry_client: ServiceClient, pushed: str) -> None:
    response = await registry_client.head(f"/v2/{NAME}/blobs/{pushed}")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Docker-Content-Digest"] == pushed
    assert await response.read() == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=10200-99999", 10200, 10239),
    ],
)
async def test_range_request_returns_206_with_the_slice(
    registry_client: ServiceClient, pushed: str, header: str, start: int, end: int
) -> None:
    response = await registry_client.get(f"/v2/{NAME}/blobs/{pushed}", headers={"Range": header})
    assert response.status == 206
    assert await response.read() == DATA[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"


async def test_unsatisfiable_range_returns_416(registry_client: ServiceClient, pushed: str) -> None:
    response = await registry_client.get(
        f"/v2/{NAME}/blobs/{pushed}", headers={"Range": "bytes=20000-20010"}
    )
    assert response.status == 416


async def test_unknown_blob_is_blob_unknown(registry_client: ServiceClient) -> None:
    response = await registry_client.get(f"/v2/{NAME}/blobs/{sha256(b'never pushed')}")
    assert response.status == 404
    body = await response.json()
    assert body["errors"][0]["code"] == "BLOB_UNKNOWN"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/proj/app/blobs/sha256:" + "A" * 64,
        "/v2/proj/app/blobs/sha256:abc",
        "/v2/proj/app/blobs/md5:" + "a" * 32,
        "/v2/proj/app/blobs/sha256%3A" + "a" * 64,
    ],
)
async def test_malformed_digest_is_rejected(registry_client: ServiceClient, path: str) -> None:
    response = await registry_client.get(URL(path, encoded=True))
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] in ("DIGEST_INVALID", "NAME_INVALID")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/app/blobs/sha256:" + "a" * 64,  # one component: no project
        "/v2/Proj/app/blobs/sha256:" + "a" * 64,
        "/v2/proj/../app/blobs/sha256:" + "a" * 64,
        "/v2/proj%2Fapp/x/blobs/sha256:" + "a" * 64,
        "/v2/proj/app%2e%2e/blobs/sha256:" + "a" * 64,
        "/v2/" + "a" * 200 + "/" + "b" * 100 + "/blobs/sha256:" + "a" * 64,
    ],
)
async def test_invalid_repository_name_is_name_invalid(
    registry_client: ServiceClient, path: str
) -> None:
    response = await registry_client.get(URL(path, encoded=True))
    assert response.status in (400, 404)
    if response.status == 400:
        assert (await response.json())["errors"][0]["code"] == "NAME_INVALID"


async def test_blob_of_one_repository_is_invisible_in_others(
    registry_client: ServiceClient, pushed: str
) -> None:
    for name in ("proj/other", "stranger/app"):
        response = await registry_client.get(f"/v2/{name}/blobs/{pushed}")
        assert response.status == 404


async def test_delete_unlinks_from_the_repository_only(
    registry: RegistryClient, pushed: str
) -> None:
    await registry.push_blob("proj/other", DATA)
    deleted = await registry.client.delete(f"/v2/{NAME}/blobs/{pushed}")
    assert deleted.status == 202
    assert (await registry.client.get(f"/v2/{NAME}/blobs/{pushed}")).status == 404
    still = await registry.client.get(f"/v2/proj/other/blobs/{pushed}")
    assert await still.read() == DATA
    again = await registry.client.delete(f"/v2/{NAME}/blobs/{pushed}")
    assert again.status == 404


async def test_delete_of_blob_referenced_by_a_manifest_is_refused(
    registry_client: ServiceClient, pushed: str, db: asyncpg.Connection
) -> None:
    digest = sha256(b"{}")
    await db.execute(
        "INSERT INTO manifests (repository, digest, media_type, content, size) "
        "VALUES ($1, $2, 'application/vnd.oci.image.manifest.v1+json', '{}'::bytea, 2)",
        NAME,
        digest,
    )
    await db.execute(
        "INSERT INTO manifest_blobs (repository, manifest_digest, blob_digest) VALUES ($1, $2, $3)",
        NAME,
        digest,
        pushed,
    )
    response = await registry_client.delete(f"/v2/{NAME}/blobs/{pushed}")
    assert response.status == 409
    assert (await registry_client.head(f"/v2/{NAME}/blobs/{pushed}")).status == 200


async def test_read_refreshes_an_old_grace_clock_only(
    registry_client: ServiceClient, pushed: str, db: asyncpg.Connection
) -> None:
    async def accessed_age() -> float:
        age: float = await db.fetchval(
            "SELECT extract(epoch FROM now() - accessed_at) FROM blobs "
            "WHERE repository = $1 AND digest = $2",
            NAME,
            pushed,
        )
        return age

    await db.execute("UPDATE blobs SET accessed_at = now() - interval '10 minutes'")
    await registry_client.head(f"/v2/{NAME}/blobs/{pushed}")
    assert await accessed_age() > 500  # recent enough: left alone
    await db.execute("UPDATE blobs SET accessed_at = now() - interval '2 hours'")
    await registry_client.head(f"/v2/{NAME}/blobs/{pushed}")
    assert await accessed_age() < 60


async def test_download_counts_billing_bytes_sent(
    registry_client: ServiceClient, pushed: str
) -> None:
    def counted() -> tuple[float, float]:
        return (
            metrics.EGRESS_BYTES.labels("proj")._value.get(),
            metrics.DOWNLOAD_COUNT.labels("proj")._value.get(),
        )

    before = counted()
    await (await registry_client.get(f"/v2/{NAME}/blobs/{pushed}")).read()
    ranged = await registry_client.get(
        f"/v2/{NAME}/blobs/{pushed}", headers={"Range": "bytes=0-99"}
    )
    await ranged.read()
    await registry_client.head(f"/v2/{NAME}/blobs/{pushed}")
    after = counted()
    assert after[0] - before[0] == len(DATA) + 100
    assert after[1] - before[1] == 2


async def test_unreachable_database_answers_503_with_retry_after(
    aiohttp_client: Any, make_settings: Any, unused_tcp_port: int
) -> None:
    settings = make_settings(db_url=f"postgres://u:p@127.0.0.1:{unused_tcp_port}/none")
    client = await aiohttp_client(create_app(settings))
    response = await client.get(f"/v2/{NAME}/blobs/{sha256(b'x')}")
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert (await response.json())["errors"][0]["code"] == "UNAVAILABLE"
    upload = await client.post(
        f"/v2/{NAME}/blobs/uploads/", params={"digest": sha256(b"x")}, data=b"x"
    )
    assert upload.status == 503


async def test_unusable_storage_answers_503_and_stores_nothing(
    aiohttp_client: Any, settings: Settings, db: asyncpg.Connection
) -> None:
    client = await aiohttp_client(create_app(settings))
    assert settings.storage_path is not None
    shutil.rmtree(settings.storage_path)
    settings.storage_path.write_bytes(b"the volume is gone")
    data = os.urandom(100)
    response = await client.post(
        f"/v2/{NAME}/blobs/uploads/", params={"digest": sha256(data)}, data=data
    )
    assert response.status == 503
    assert (await response.json())["errors"][0]["code"] == "UNAVAILABLE"
    assert await db.fetchval("SELECT count(*) FROM blobs") == 0


async def test_filesystem_blobs_are_sent_with_sendfile(
    aiohttp_client: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:

    client = await aiohttp_client(create_app(settings))
    digest = await RegistryClient(client).push_blob(NAME, DATA)
    calls: list[tuple[int, int]] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append((offset, count))
        return real_sendfile(out_fd, in_fd, offset, count)

    # The handlers call os.sendfile through the os module, which this patches.
    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    whole = await client.get(f"/v2/{NAME}/blobs/{digest}")
    assert await whole.read() == DATA
    ranged = await client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert await ranged.read() == DATA[100:200]
    assert calls[0] == (0, len(DATA))
    assert calls[-1] == (100, 100)
