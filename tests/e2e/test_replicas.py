"""Two distribution processes on one database and one bucket behave as one registry: an upload
started on one continues on the other, chunk by chunk."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
import pytest

from tests.e2e.conftest import OWNER
from tests.fixtures.processes import (
    LOOPBACK,
    DistributionLauncher,
    ServerProcess,
    authorization_for,
    free_port,
)

pytestmark = pytest.mark.e2e

CHUNK_SIZE = 1024 * 1024
REPOSITORY = "proj/app"


async def test_upload_chunks_alternating_between_two_processes_make_one_blob(
    distribution_launcher: DistributionLauncher, registry_env: dict[str, str]
) -> None:
    # Replicas behind one address share PUBLIC_URL: tokens name it as their audience.
    port = free_port()
    env = {**registry_env, "PUBLIC_URL": f"http://{LOOPBACK}:{port}"}
    first, second = await asyncio.gather(
        distribution_launcher.start(env, name="first", port=port),
        distribution_launcher.start(env, name="second"),
    )
    data = os.urandom(5 * CHUNK_SIZE + 12345)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    chunks = [data[offset : offset + CHUNK_SIZE] for offset in range(0, len(data), CHUNK_SIZE)]

    async with aiohttp.ClientSession() as session:
        # A token from the first process is good on the second: they share TOKEN_SECRET.
        headers = await authorization_for(
            session, first.url, OWNER, [f"repository:{REPOSITORY}:pull,push"]
        )
        async with session.post(
            f"{first.url}/v2/{REPOSITORY}/blobs/uploads/", headers=headers
        ) as started:
            assert started.status == 202, await started.text()
            location = started.headers["Location"]

        offset = 0
        for number, chunk in enumerate(chunks):
            target, other = (first, second) if number % 2 == 0 else (second, first)
            end = offset + len(chunk) - 1
            async with session.patch(
                _on(target, location),
                data=chunk,
                headers={
                    **headers,
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{end}",
                },
            ) as patched:
                assert patched.status == 202, await patched.text()
                assert patched.headers["Range"] == f"0-{end}"
                location = patched.headers["Location"]
            offset = end + 1
            # The other process sees the progress too (a client resuming there would).
            async with session.get(_on(other, location), headers=headers) as status:
                assert status.status == 204
                assert status.headers["Range"] == f"0-{end}"

        async with session.put(
            _on(second, location), params={"digest": digest}, headers=headers
        ) as finished:
            assert finished.status == 201, await finished.text()
            assert finished.headers["Docker-Content-Digest"] == digest

        async with session.get(
            f"{first.url}/v2/{REPOSITORY}/blobs/{digest}", headers=headers
        ) as pulled:
            assert pulled.status == 200, await pulled.text()
            assert pulled.headers["Docker-Content-Digest"] == digest
            body = await pulled.read()
    assert len(body) == len(data)
    assert hashlib.sha256(body).hexdigest() == digest.removeprefix("sha256:")
    assert body == data


def _on(process: ServerProcess, location: str) -> str:
    """The upload URL `location` (as the service gave it) on `process`."""
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    return f"{process.url}{path}"
