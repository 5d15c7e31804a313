"""Upload sessions are bounded per project: open sessions, staged bytes, and age."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from registry_common import metrics
from registry_common.http import DB_POOL, OBJECT_STORE
from registry_common.jobs.base import JobContext, JobReport
from registry_common.jobs.gc import expire_uploads
from registry_common.oci.names import RepositoryName
from registry_common.registry.repository_store import delete_repository
from registry_distribution.app import create_app
from tests.fixtures.distribution import sha256
from tests.fixtures.processes import DistributionLauncher
from tests.fixtures.services import ServiceClient

NAME = "proj/app"


@pytest.fixture
async def limited(aiohttp_client: Any, make_settings: Any) -> ServiceClient:
    settings = make_settings(upload_sessions_per_project=3, upload_bytes_per_project=100)
    client: ServiceClient = await aiohttp_client(create_app(settings))
    return client


async def open_session(client: ServiceClient, name: str = NAME) -> aiohttp.ClientResponse:
    return await client.post(f"/v2/{name}/blobs/uploads/")


async def assert_too_many(response: aiohttp.ClientResponse) -> None:
    assert response.status == 429, await response.text()
    assert int(response.headers["Retry-After"]) > 0
    assert (await response.json())["errors"][0]["code"] == "TOOMANYREQUESTS"


async def test_a_project_opens_at_most_its_sessions_and_closing_one_makes_room(
    limited: ServiceClient,
) -> None:
    locations = []
    for _ in range(3):
        started = await open_session(limited)
        assert started.status == 202
        locations.append(started.headers["Location"])
    await assert_too_many(await open_session(limited))
    assert (await open_session(limited, "other/app")).status == 202  # another project
    assert (await limited.delete(locations[0])).status == 204
    assert (await open_session(limited)).status == 202
    finished = await limited.put(locations[1], params={"digest": sha256(b"x")}, data=b"x")
    assert finished.status == 201
    assert (await open_session(limited)).status == 202
    await assert_too_many(await open_session(limited))


async def test_staged_bytes_beyond_the_limit_are_refused_and_not_recorded(
    limited: ServiceClient,
) -> None:
    first = (await open_session(limited)).headers["Location"]
    second = (await open_session(limited)).headers["Location"]
    accepted = await limited.patch(first, data=b"a" * 60, headers={"Content-Range": "0-59"})
    assert accepted.status == 202
    declared = await limited.patch(second, data=b"b" * 50, headers={"Content-Range": "0-49"})
    await assert_too_many(declared)

    async def streamed() -> Any:
        yield b"c" * 30
        yield b"c" * 30

    await assert_too_many(await limited.patch(second, data=streamed()))
    status = await limited.get(second)
    assert status.headers["Range"] == "0-0"  # nothing of the refused chunks was kept
    fits = await limited.patch(second, data=b"d" * 40, headers={"Content-Range": "0-39"})
    assert fits.status == 202
    gauge = metrics.UPLOAD_STAGED_BYTES.labels("proj")._value.get()
    assert gauge == 100
    # Finishing an upload frees what it staged.
    done = await limited.put(first, params={"digest": sha256(b"a" * 60)})
    assert done.status == 201
    assert metrics.UPLOAD_STAGED_BYTES.labels("proj")._value.get() == 40
    third = (await open_session(limited)).headers["Location"]
    assert (await limited.patch(third, data=b"e" * 60)).status == 202


async def test_a_busy_session_past_its_maximum_age_expires(
    aiohttp_client: Any, make_settings: Any, db: asyncpg.Connection
) -> None:
    settings = make_settings(upload_sessions_per_project=1, upload_max_age="7d")
    client = await aiohttp_client(create_app(settings))
    location = (await open_session(client)).headers["Location"]
    assert (await client.patch(location, data=b"x" * 10)).status == 202
    await db.execute("UPDATE upload_sessions SET created_at = now() - interval '8 days'")
    refused = await client.patch(location, data=b"y", headers={"Content-Range": "10-10"})
    assert refused.status == 404
    assert (await refused.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    context = JobContext(client.app[DB_POOL], client.app[OBJECT_STORE], settings)
    now = datetime.now(UTC)
    report = JobReport()
    await expire_uploads(
        context.pool, context.store, now - timedelta(days=1), now - settings.upload_max_age, report
    )
    assert report.counts["uploads_expired"] == 1
    usage = await db.fetchrow("SELECT sessions, staged_bytes FROM upload_usage")
    assert usage is not None
    assert tuple(usage) == (0, 0)
    assert (await open_session(client)).status == 202  # its place is free again


async def test_deleting_a_repository_frees_its_sessions(
    aiohttp_client: Any, make_settings: Any, db: asyncpg.Connection
) -> None:
    client = await aiohttp_client(create_app(make_settings(upload_sessions_per_project=1)))
    location = (await open_session(client)).headers["Location"]
    assert (await client.patch(location, data=b"x" * 10)).status == 202
    await db.execute("INSERT INTO repositories (name, namespace) VALUES ($1, 'proj')", NAME)
    await delete_repository(client.app[DB_POOL], client.app[OBJECT_STORE], RepositoryName(NAME))
    usage = await db.fetchrow("SELECT sessions, staged_bytes FROM upload_usage")
    assert usage is not None
    assert tuple(usage) == (0, 0)


async def test_limits_hold_with_two_processes_racing(
    distribution_launcher: DistributionLauncher, db_url: str, tmp_path: Path
) -> None:
    env = {
        "DB_URL": db_url,
        "STORAGE_PATH": str(tmp_path / "storage"),
        "AUTH_MODE": "none",
        "WEB_CONCURRENCY": "1",
        "UPLOAD_SESSIONS_PER_PROJECT": "5",
        "UPLOAD_BYTES_PER_PROJECT": "1000",
    }
    first, second = await asyncio.gather(
        distribution_launcher.start(env, name="first"),
        distribution_launcher.start(env, name="second"),
    )
    targets = [first.url, second.url] * 6
    async with aiohttp.ClientSession() as session:

        async def start(base: str) -> tuple[int, str]:
            async with session.post(f"{base}/v2/{NAME}/blobs/uploads/") as response:
                return response.status, response.headers.get("Location", "")

        started = await asyncio.gather(*(start(base) for base in targets))
        statuses = sorted(status for status, _ in started)
        assert statuses == [202] * 5 + [429] * 7
        locations = [location for status, location in started if status == 202]

        async def patch(base: str, location: str) -> int:
            async with session.patch(
                f"{base}{location}", data=b"z" * 300, headers={"Content-Range": "0-299"}
            ) as response:
                return response.status

        patched = await asyncio.gather(
            *(patch(base, location) for base, location in zip(targets, locations, strict=False))
        )
    assert sorted(patched) == [202] * 3 + [429] * 2
    connection = await asyncpg.connect(db_url)
    try:
        staged = await connection.fetchval("SELECT sum(size) FROM upload_sessions")
        usage = await connection.fetchval("SELECT staged_bytes FROM upload_usage")
    finally:
        await connection.close()
    assert staged == usage == 900
