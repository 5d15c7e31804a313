"""Schemathesis generates requests from the OpenAPI document the running management service
serves (valid ones and, in its negative mode, invalid ones) and checks that none answers a
server error and every reply matches the document: documented status, content type and schema.

Left out: `negative_data_rejection`, because a request missing a required field answers HTTP
200 with `{"ok": false, "error": {"message": "<field> required"}}` (the seed's contract), not
4xx; and `ignored_auth`, because the service runs with AUTH_MODE=none here and, with auth, a
denial is `iam: forbidden` in a 200 reply, not 401.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from registry_management.openapi import build_openapi
from registry_management.routes import ENDPOINTS
from tests.fixtures.distribution import make_image

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


async def seed(db_url: str) -> None:
    """The repository the document's examples name (my-project/my-image), with a tagged
    manifest, a linked blob and a storage total, so generated requests also find things."""
    image = make_image("schemathesis", layers=1)
    connection = await asyncpg.connect(db_url)
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO repositories (name, namespace) VALUES ('my-project/my-image', "
                "'my-project')"
            )
            await connection.execute(
                "INSERT INTO manifests (repository, digest, media_type, content, size) "
                "VALUES ('my-project/my-image', $1, $2, $3, $4)",
                image.digest,
                image.media_type,
                image.manifest,
                len(image.manifest),
            )
            await connection.execute(
                "INSERT INTO tags (repository, tag, digest) "
                "VALUES ('my-project/my-image', 'latest', $1)",
                image.digest,
            )
            for digest, data in image.blobs.items():
                await connection.execute(
                    "INSERT INTO blobs (repository, digest, size) "
                    "VALUES ('my-project/my-image', $1, $2)",
                    digest,
                    len(data),
                )
            await connection.execute(
                "INSERT INTO project_storage_usage (namespace, size) VALUES ('my-project', 42)"
            )
    finally:
        await connection.close()


@pytest.fixture
def seeded_server_url(db_url: str, management_server_url: str) -> str:
    """The running service, its database seeded."""
    asyncio.run(seed(db_url))
    return management_server_url


# Built from the same route table and models as the document the service serves (the last
# test checks they are equal). Loaded at import, as schemathesis' parametrize needs.
schema = schemathesis.openapi.from_dict(build_openapi(ENDPOINTS))
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_requests_never_fail_with_a_server_error(
    case: Any, seeded_server_url: str
) -> None:
    case.call_and_validate(base_url=seeded_server_url, checks=CHECKS)


def test_the_served_document_is_the_one_tested(management_server_url: str) -> None:
    with urllib.request.urlopen(f"{management_server_url}/api/openapi.json") as response:
        served = json.load(response)
    assert served == build_openapi(ENDPOINTS)
    assert schemathesis.openapi.from_dict(served).validate() is None
