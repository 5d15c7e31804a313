"""The seed service's README is the contract of the management API: its request examples,
sent as they are to the running service, answer replies with the field names and JSON types
of its reply examples.

The examples below are copied from the seed README ("Management (/api/)"). Its placeholder
digest (`sha256:abc123...`) is replaced by the digest of the manifest the fixture pushes;
nothing else is changed.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from registry_common.db.project_storage import recalculate_project_storage
from tests.fixtures.distribution import RegistryClient, make_image
from tests.fixtures.management import ManagementClient

SEED_EXAMPLES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "list",
        {"project": "my-project"},
        {
            "ok": True,
            "result": {"items": [{"name": "my-image", "createdAt": "2024-01-15T00:00:00Z"}]},
        },
    ),
    (
        "get",
        {"project": "my-project", "repository": "my-image"},
        {
            "ok": True,
            "result": {"name": "my-image", "size": 1073741824, "createdAt": "2024-01-15T00:00:00Z"},
        },
    ),
    (
        "getTags",
        {"project": "my-project", "repository": "my-image"},
        {
            "ok": True,
            "result": {
                "name": "my-image",
                "items": [
                    {
                        "tag": "latest",
                        "digest": "sha256:abc123...",
                        "createdAt": "2024-01-15T00:00:00Z",
                    }
                ],
            },
        },
    ),
    (
        "getManifests",
        {"project": "my-project", "repository": "my-image"},
        {
            "ok": True,
            "result": {
                "name": "my-image",
                "items": [{"digest": "sha256:abc123...", "createdAt": "2024-01-15T00:00:00Z"}],
            },
        },
    ),
    (
        "getProjectStorage",
        {"project": "my-project"},
        {"ok": True, "result": {"size": 1073741824, "updatedAt": "2024-01-15T03:00:00Z"}},
    ),
    # The three writes come last: each changes what the examples above read.
    ("untag", {"project": "my-project", "repository": "my-image", "tag": "latest"}, {"ok": True}),
    (
        "deleteManifest",
        {"project": "my-project", "repository": "my-image", "digest": "sha256:abc123..."},
        {"ok": True},
    ),
    ("delete", {"project": "my-project", "repository": "my-image"}, {"ok": True}),
]

PLACEHOLDER_DIGEST = "sha256:abc123..."
_RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def assert_same_shape(actual: Any, example: Any, path: str = "$") -> None:
    """`actual` has the keys and JSON types of `example`, recursively; list items are
    compared with the example's first item; timestamps and digests keep their format."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert set(actual) == set(example), f"{path}: keys {set(actual)} != {set(example)}"
        for key, value in example.items():
            assert_same_shape(actual[key], value, f"{path}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{path}: expected an array, got {actual!r}"
        assert actual, f"{path}: expected items like {example[0]!r}"
        for index, item in enumerate(actual):
            assert_same_shape(item, example[0], f"{path}[{index}]")
    else:
        # bool is an int in Python; JSON tells them apart.
        assert type(actual) is type(example), f"{path}: {actual!r} is not like {example!r}"
        if isinstance(example, str) and _RFC3339_UTC.match(example):
            assert _RFC3339_UTC.match(actual), f"{path}: {actual!r} is not RFC 3339 UTC"
        if example == PLACEHOLDER_DIGEST:
            assert _DIGEST.match(actual), f"{path}: {actual!r} is not a digest"


@pytest.fixture
async def my_image(registry: RegistryClient, db: asyncpg.Connection) -> str:
    """my-project/my-image with one manifest tagged latest, counted by the storage job."""
    image = make_image("my-image")
    await registry.push_image("my-project/my-image", image, "latest")
    await recalculate_project_storage(db)
    return image.digest


@pytest.mark.parametrize("storage_overrides", ["filesystem"], indirect=True)
async def test_seed_readme_examples_answer_the_documented_shapes(
    management: ManagementClient, my_image: str
) -> None:
    for method, request, example_reply in SEED_EXAMPLES:
        body = {
            key: my_image if value == PLACEHOLDER_DIGEST else value
            for key, value in request.items()
        }
        reply = await management.call(method, **body)
        assert reply.status == 200, (method, reply.body)
        assert_same_shape(reply.body, example_reply, f"{method}")


@pytest.mark.parametrize("storage_overrides", ["filesystem"], indirect=True)
async def test_seed_error_envelope_shape(management: ManagementClient) -> None:
    reply = await management.call("get", project="my-project", repository="my-image")
    assert_same_shape(reply.body, {"ok": False, "error": {"message": "..."}})
    assert reply.body["error"]["message"] == "repository not found"
