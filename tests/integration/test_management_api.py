"""The management API (`POST /api/*`): every method's success, validation errors, not found,
tenancy, authorization through the Deploys API fake, and the repository delete's guarantees
(shared blobs survive, it finishes without its client, a pull streaming meanwhile never gets
wrong bytes)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from registry_common.db import project_storage as project_storage_rows
from registry_common.db import repositories as repository_rows
from registry_common.http import OBJECT_STORE
from registry_common.registry import blob_store, repository_store
from registry_common.storage.base import ObjectStore
from registry_common.storage.layout import blob_key, upload_prefix
from registry_management.api import BACKGROUND_TASKS
from registry_management.app import create_app
from tests.fakes.deploys_api import FakeDeploysApi
from tests.fixtures.auth import ALICE, ALICE_API_TOKEN, ALPHA, BETA, BOB, CAROL, UNPAID
from tests.fixtures.distribution import Image, RegistryClient, make_image, make_index, sha256
from tests.fixtures.management import ApiReply, ManagementClient
from tests.fixtures.services import ServiceClient
from tests.fixtures.storage import STORAGE_BACKENDS

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UNKNOWN_DIGEST = sha256(b"never pushed")

# Every method with a valid body; the field order is the order fields are checked in.
VALID_BODIES: dict[str, dict[str, str]] = {
    "list": {"project": ALPHA},
    "get": {"project": ALPHA, "repository": "app"},
    "getTags": {"project": ALPHA, "repository": "app"},
    "getManifests": {"project": ALPHA, "repository": "app"},
    "getProjectStorage": {"project": ALPHA},
    "deleteManifest": {"project": ALPHA, "repository": "app", "digest": UNKNOWN_DIGEST},
    "delete": {"project": ALPHA, "repository": "app"},
    "untag": {"project": ALPHA, "repository": "app", "tag": "v1"},
}
METHODS = list(VALID_BODIES)
READ_METHODS = ["list", "get", "getTags", "getManifests", "getProjectStorage"]
WRITE_METHODS = ["deleteManifest", "delete", "untag"]
REPOSITORY_METHODS = [method for method in METHODS if "repository" in VALID_BODIES[method]]


@pytest.fixture
def storage_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The filesystem store, unless a test asks for each backend (indirect parametrization):
    only the delete tests depend on the backend."""
    if getattr(request, "param", "filesystem") == "gcs":
        return {"bucket_name": request.getfixturevalue("gcs_bucket"), "storage_path": None}
    return {"storage_path": tmp_path / "storage", "bucket_name": None}


each_storage_backend = pytest.mark.parametrize("storage_overrides", STORAGE_BACKENDS, indirect=True)


class Pushed:
    """Images pushed by the `pushed` fixture."""

    def __init__(self) -> None:
        self.app_v1 = make_image("alpha-app-v1")
        self.app_v2 = make_image("alpha-app-v2", layers=3)
        self.cli = make_image("alpha-cli")
        self.beta_app = make_image("beta-app")


async def push_tagged(registry: RegistryClient, name: str, image: Image, *tags: str) -> None:
    """Push `image` to `name` under each of `tags`."""
    for tag in tags:
        await registry.push_image(name, image, tag)


@pytest.fixture
async def pushed(registry: RegistryClient) -> Pushed:
    """alpha/app (v1; v2 = latest), alpha/tools/cli (latest), beta/app (latest)."""
    images = Pushed()
    await push_tagged(registry, "alpha/app", images.app_v1, "v1")
    await push_tagged(registry, "alpha/app", images.app_v2, "v2", "latest")
    await push_tagged(registry, "alpha/tools/cli", images.cli, "latest")
    await push_tagged(registry, "beta/app", images.beta_app, "latest")
    return images


@pytest.fixture
async def alpha_and_beta(registry: RegistryClient) -> Pushed:
    """Fewer pushes than `pushed`: alpha/app (v1), alpha/tools/cli (latest), beta/app
    (latest), one small layer each."""
    images = Pushed()
    images.app_v1 = make_image("alpha-app-v1", layers=1)
    images.cli = make_image("alpha-cli", layers=1)
    images.beta_app = make_image("beta-app", layers=1)
    await push_tagged(registry, "alpha/app", images.app_v1, "v1")
    await push_tagged(registry, "alpha/tools/cli", images.cli, "latest")
    await push_tagged(registry, "beta/app", images.beta_app, "latest")
    return images


def store_of(client: ServiceClient) -> ObjectStore:
    return client.app[OBJECT_STORE]


async def post_raw(
    client: ServiceClient, path: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, data=data, headers={"Content-Type": content_type})
    assert response.content_type == "application/json"
    return response.status, await response.json()


# --- The envelope and request errors ---


async def test_wrong_method_is_405_with_the_error_envelope(
    management_client: ServiceClient,
) -> None:
    response = await management_client.get("/api/list")
    assert response.status == 405
    assert await response.json() == {"ok": False, "error": {"message": "method not allowed"}}
    assert "POST" in response.headers["Allow"]


async def test_unknown_method_is_404_with_the_error_envelope(
    management_client: ServiceClient,
) -> None:
    status, body = await post_raw(management_client, "/api/nothing", b"{}")
    assert (status, body) == (404, {"ok": False, "error": {"message": "not found"}})


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_non_json_content_type_is_415(
    management_client: ServiceClient, content_type: str
) -> None:
    status, body = await post_raw(
        management_client, "/api/list", b'{"project": "alpha"}', content_type
    )
    assert status == 415
    assert body == {"ok": False, "error": {"message": "content type must be application/json"}}


@pytest.mark.parametrize("data", [b"", b"{", b'{"project": }', b"\xff\xfe{", b"[" * 100_000])
async def test_malformed_json_is_400(management_client: ServiceClient, data: bytes) -> None:
    status, body = await post_raw(management_client, "/api/list", data)
    assert (status, body) == (400, {"ok": False, "error": {"message": "malformed json"}})


@pytest.mark.parametrize("data", [b"[]", b'"alpha"', b"null", b"42"])
async def test_json_that_is_not_an_object_is_400(
    management_client: ServiceClient, data: bytes
) -> None:
    status, body = await post_raw(management_client, "/api/list", data)
    assert status == 400
    assert body["error"]["message"] == "request body must be a json object"


@pytest.mark.parametrize("value", [42, True, ["alpha"], {"name": "alpha"}])
async def test_field_of_another_type_than_string_is_400(
    management: ManagementClient, value: Any
) -> None:
    reply = await management.call("get", project=ALPHA, repository=value)
    assert reply.status == 400
    assert reply.error.startswith("invalid request: repository: ")


async def test_body_over_the_size_limit_is_413(management_client: ServiceClient) -> None:
    data = json.dumps({"project": "a" * (2 * 1024 * 1024)}).encode()
    status, body = await post_raw(management_client, "/api/list", data)
    assert status == 413
    assert body["ok"] is False


async def test_unexpected_failure_is_500_internal_error_without_details(
    management: ManagementClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> Any:
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(repository_rows, "repositories_of_project", broken)
    response = await management.client.post("/api/list", json={"project": ALPHA})
    assert response.status == 500
    text = await response.text()
    assert json.loads(text) == {"ok": False, "error": {"message": "internal error"}}
    assert "secret" not in text


async def test_unknown_fields_are_ignored(management: ManagementClient, pushed: Pushed) -> None:
    reply = await management.call("get", project=ALPHA, repository="app", extra="ignored")
    assert reply.result["name"] == "app"


# --- Validation: each required field, missing, null or empty, on every method ---


@pytest.mark.parametrize("method", METHODS)
async def test_missing_null_or_empty_field_answers_field_required(
    management: ManagementClient, method: str
) -> None:
    for field in VALID_BODIES[method]:
        for value in ("missing", None, ""):
            body: dict[str, Any] = dict(VALID_BODIES[method])
            if value == "missing":
                del body[field]
            else:
                body[field] = value
            reply = await management.call(method, **body)
            assert reply.status == 200
            assert reply.body == {"ok": False, "error": {"message": f"{field} required"}}, body


@pytest.mark.parametrize("method", METHODS)
async def test_first_missing_field_is_the_one_reported(
    management: ManagementClient, method: str
) -> None:
    reply = await management.call(method)
    assert reply.error == "project required"


@pytest.mark.parametrize("method", METHODS)
async def test_project_no_name_can_have_is_forbidden(
    management: ManagementClient, method: str
) -> None:
    for project in ("Alpha", "al pha", "-alpha", "alpha/app", "a" * 256):
        reply = await management.call(method, **{**VALID_BODIES[method], "project": project})
        assert reply.error == "iam: forbidden", project


@pytest.mark.parametrize("method", REPOSITORY_METHODS)
async def test_repository_no_name_can_have_is_not_found(
    management: ManagementClient, registry: RegistryClient, method: str
) -> None:
    await registry.push_blob("alpha/app", b"a layer")
    for repository in ("App", "app/", "/app", "app//x", "../beta/app", "a" * 250):
        reply = await management.call(method, **{**VALID_BODIES[method], "repository": repository})
        assert reply.error == "repository not found", repository


# --- list ---


async def test_list_returns_the_projects_repositories_sorted_without_prefix(
    management: ManagementClient, pushed: Pushed
) -> None:
    items = (await management.call("list", project=ALPHA)).result["items"]
    assert [item["name"] for item in items] == ["app", "tools/cli"]
    assert all(RFC3339_UTC.match(item["createdAt"]) for item in items)
    assert set(items[0]) == {"name", "createdAt"}


async def test_list_of_a_project_without_repositories_is_an_empty_list(
    management_client: ServiceClient, pushed: Pushed
) -> None:
    response = await management_client.post("/api/list", json={"project": "empty"})
    assert await response.text() == '{"ok": true, "result": {"items": []}}'


async def test_list_never_shows_a_repository_whose_namespace_disagrees_with_its_name(
    management: ManagementClient, db: asyncpg.Connection
) -> None:
    await db.execute("INSERT INTO repositories (name, namespace) VALUES ('beta/odd', 'alpha')")
    assert (await management.call("list", project=ALPHA)).result == {"items": []}
    assert (await management.call("list", project=BETA)).result == {"items": []}


# --- get ---


async def test_get_returns_name_size_of_linked_blobs_and_created_at(
    management: ManagementClient, pushed: Pushed, db: asyncpg.Connection
) -> None:
    result = (await management.call("get", project=ALPHA, repository="app")).result
    blobs = {**pushed.app_v1.blobs, **pushed.app_v2.blobs}
    assert result["name"] == "app"
    assert result["size"] == sum(len(data) for data in blobs.values())
    assert RFC3339_UTC.match(result["createdAt"])
    assert set(result) == {"name", "size", "createdAt"}


async def test_get_of_a_nested_repository(management: ManagementClient, pushed: Pushed) -> None:
    result = (await management.call("get", project=ALPHA, repository="tools/cli")).result
    assert result["name"] == "tools/cli"
    assert result["size"] == sum(len(data) for data in pushed.cli.blobs.values())


async def test_get_of_a_repository_without_blobs_has_size_0(
    management: ManagementClient, registry: RegistryClient
) -> None:
    await registry.push_image("alpha/empty", make_index([]), "empty")
    result = (await management.call("get", project=ALPHA, repository="empty")).result
    assert result["size"] == 0


# --- getTags ---


async def test_get_tags_lists_tags_newest_first_with_their_digests(
    management: ManagementClient, pushed: Pushed, db: asyncpg.Connection
) -> None:
    # Times set explicitly so the order does not depend on clock resolution.
    for tag, day in (("v1", 1), ("v2", 3), ("latest", 2)):
        await db.execute(
            "UPDATE tags SET updated_at = $2 WHERE repository = 'alpha/app' AND tag = $1",
            tag,
            datetime(2024, 1, day, 10, 0, 0, 123456, tzinfo=UTC),
        )
    result = (await management.call("getTags", project=ALPHA, repository="app")).result
    assert result["name"] == "app"
    assert result["items"] == [
        {"tag": "v2", "digest": pushed.app_v2.digest, "createdAt": "2024-01-03T10:00:00Z"},
        {"tag": "latest", "digest": pushed.app_v2.digest, "createdAt": "2024-01-02T10:00:00Z"},
        {"tag": "v1", "digest": pushed.app_v1.digest, "createdAt": "2024-01-01T10:00:00Z"},
    ]


async def test_get_tags_dates_a_moved_tag_from_its_move(
    management: ManagementClient, registry: RegistryClient, pushed: Pushed, db: asyncpg.Connection
) -> None:
    await db.execute("UPDATE tags SET created_at = '2020-01-01', updated_at = '2020-01-01'")
    await registry.push_image("alpha/app", pushed.app_v1, "latest")
    items = (await management.call("getTags", project=ALPHA, repository="app")).result["items"]
    assert items[0]["tag"] == "latest"
    assert items[0]["digest"] == pushed.app_v1.digest
    assert not items[0]["createdAt"].startswith("2020")


async def test_get_tags_of_a_repository_without_tags_is_an_empty_list(
    management_client: ServiceClient, registry: RegistryClient
) -> None:
    await registry.push_image("alpha/untagged", make_image("untagged"))
    response = await management_client.post(
        "/api/getTags", json={"project": ALPHA, "repository": "untagged"}
    )
    assert await response.json() == {"ok": True, "result": {"name": "untagged", "items": []}}


# --- getManifests ---


async def test_get_manifests_lists_manifests_newest_first(
    management: ManagementClient, pushed: Pushed, db: asyncpg.Connection
) -> None:
    await db.execute(
        "UPDATE manifests SET created_at = '2024-01-01T00:00:00Z' WHERE digest = $1",
        pushed.app_v2.digest,
    )
    await db.execute(
        "UPDATE manifests SET created_at = '2024-02-01T00:00:00Z' WHERE digest = $1",
        pushed.app_v1.digest,
    )
    result = (await management.call("getManifests", project=ALPHA, repository="app")).result
    assert result == {
        "name": "app",
        "items": [
            {"digest": pushed.app_v1.digest, "createdAt": "2024-02-01T00:00:00Z"},
            {"digest": pushed.app_v2.digest, "createdAt": "2024-01-01T00:00:00Z"},
        ],
    }


async def test_get_manifests_of_a_repository_with_only_blobs_is_an_empty_list(
    management_client: ServiceClient, registry: RegistryClient
) -> None:
    await registry.push_blob("alpha/blobs-only", b"just a layer")
    response = await management_client.post(
        "/api/getManifests", json={"project": ALPHA, "repository": "blobs-only"}
    )
    assert await response.json() == {"ok": True, "result": {"name": "blobs-only", "items": []}}


# --- getProjectStorage ---


async def test_project_storage_is_0_without_updated_at_before_the_job_ran(
    management_client: ServiceClient, pushed: Pushed
) -> None:
    response = await management_client.post("/api/getProjectStorage", json={"project": ALPHA})
    assert await response.json() == {"ok": True, "result": {"size": 0}}


async def test_project_storage_reports_the_jobs_total_for_this_project_only(
    management: ManagementClient, pushed: Pushed, db: asyncpg.Connection
) -> None:
    await project_storage_rows.recalculate_project_storage(db)
    result = (await management.call("getProjectStorage", project=ALPHA)).result
    alpha_blobs = {**pushed.app_v1.blobs, **pushed.app_v2.blobs, **pushed.cli.blobs}
    assert result["size"] == sum(len(data) for data in alpha_blobs.values())
    assert RFC3339_UTC.match(result["updatedAt"])
    beta = (await management.call("getProjectStorage", project=BETA)).result
    assert beta["size"] == sum(len(data) for data in pushed.beta_app.blobs.values())


# --- Not found, and other projects' repositories ---


@pytest.mark.parametrize("method", REPOSITORY_METHODS)
async def test_unknown_repository_is_repository_not_found(
    management: ManagementClient, alpha_and_beta: Pushed, method: str
) -> None:
    reply = await management.call(method, **{**VALID_BODIES[method], "repository": "nothing"})
    assert reply.body == {"ok": False, "error": {"message": "repository not found"}}


@pytest.mark.parametrize("method", REPOSITORY_METHODS)
async def test_another_projects_repository_is_not_found_and_untouched(
    management: ManagementClient,
    registry_client: ServiceClient,
    alpha_and_beta: Pushed,
    method: str,
) -> None:
    # beta/tools/cli does not exist, alpha/tools/cli does; beta/app exists, gamma/app not.
    for project, repository in (("beta", "tools/cli"), ("gamma", "app")):
        body = {**VALID_BODIES[method], "project": project, "repository": repository}
        reply = await management.call(method, **body)
        assert reply.error == "repository not found"
    response = await registry_client.get("/v2/alpha/tools/cli/manifests/latest")
    assert response.status == 200


# --- deleteManifest ---


async def test_delete_manifest_removes_it_and_its_tags_but_keeps_blobs(
    management: ManagementClient,
    registry_client: ServiceClient,
    pushed: Pushed,
    db: asyncpg.Connection,
) -> None:
    reply = await management.call(
        "deleteManifest", project=ALPHA, repository="app", digest=pushed.app_v2.digest
    )
    assert (reply.status, reply.body) == (200, {"ok": True})
    for reference in (pushed.app_v2.digest, "v2", "latest"):
        response = await registry_client.get(f"/v2/alpha/app/manifests/{reference}")
        assert response.status == 404
    assert (
        await db.fetchval(
            "SELECT count(*) FROM manifest_blobs WHERE manifest_digest = $1", pushed.app_v2.digest
        )
        == 0
    )
    # Other manifests and tags stay; the blobs stay linked, for the GC to decide.
    assert (await registry_client.get("/v2/alpha/app/manifests/v1")).status == 200
    for digest, data in pushed.app_v2.blobs.items():
        response = await registry_client.get(f"/v2/alpha/app/blobs/{digest}")
        assert await response.read() == data
    tags = (await management.call("getTags", project=ALPHA, repository="app")).result["items"]
    assert [item["tag"] for item in tags] == ["v1"]


async def test_delete_manifest_of_an_unknown_digest_is_manifest_not_found(
    management: ManagementClient, pushed: Pushed
) -> None:
    reply = await management.call(
        "deleteManifest", project=ALPHA, repository="app", digest=UNKNOWN_DIGEST
    )
    assert reply.body == {"ok": False, "error": {"message": "manifest not found"}}


@pytest.mark.parametrize(
    "digest", ["latest", "sha256:abc", "SHA256:" + "a" * 64, "md5:" + "a" * 32]
)
async def test_delete_manifest_with_a_malformed_digest_is_manifest_not_found(
    management: ManagementClient, pushed: Pushed, digest: str
) -> None:
    reply = await management.call("deleteManifest", project=ALPHA, repository="app", digest=digest)
    assert reply.error == "manifest not found"


async def test_delete_manifest_of_another_repository_is_manifest_not_found(
    management: ManagementClient, registry_client: ServiceClient, pushed: Pushed
) -> None:
    reply = await management.call(
        "deleteManifest", project=ALPHA, repository="app", digest=pushed.cli.digest
    )
    assert reply.error == "manifest not found"
    assert (await registry_client.get("/v2/alpha/tools/cli/manifests/latest")).status == 200


async def test_delete_manifest_listed_by_an_index_is_refused_clearly(
    management: ManagementClient, registry: RegistryClient, pushed: Pushed
) -> None:
    index = make_index([pushed.app_v1])
    await registry.push_image("alpha/app", index, "multi")
    reply = await management.call(
        "deleteManifest", project=ALPHA, repository="app", digest=pushed.app_v1.digest
    )
    assert reply.status == 200
    assert reply.error.startswith("manifest is referenced by an index in this repository")
    assert index.digest in reply.error
    assert reply.error.endswith("delete the index first")
    response = await registry.client.get(f"/v2/alpha/app/manifests/{pushed.app_v1.digest}")
    assert response.status == 200
    # Deleting the index first makes the child deletable.
    reply = await management.call(
        "deleteManifest", project=ALPHA, repository="app", digest=index.digest
    )
    assert reply.body == {"ok": True}
    reply = await management.call(
        "deleteManifest", project=ALPHA, repository="app", digest=pushed.app_v1.digest
    )
    assert reply.body == {"ok": True}


# --- untag ---


async def test_untag_removes_the_tag_and_keeps_the_manifest(
    management: ManagementClient, registry_client: ServiceClient, pushed: Pushed
) -> None:
    reply = await management.call("untag", project=ALPHA, repository="app", tag="latest")
    assert reply.body == {"ok": True}
    assert (await registry_client.get("/v2/alpha/app/manifests/latest")).status == 404
    assert (await registry_client.get("/v2/alpha/app/manifests/v2")).status == 200
    digests = (await management.call("getManifests", project=ALPHA, repository="app")).result
    assert pushed.app_v2.digest in [item["digest"] for item in digests["items"]]


@pytest.mark.parametrize("tag", ["nothing", "-bad", "a" * 129, "lat est"])
async def test_untag_of_an_unknown_or_malformed_tag_is_tag_not_found(
    management: ManagementClient, pushed: Pushed, tag: str
) -> None:
    reply = await management.call("untag", project=ALPHA, repository="app", tag=tag)
    assert reply.body == {"ok": False, "error": {"message": "tag not found"}}


async def test_untag_of_a_tag_of_another_repository_is_tag_not_found(
    management: ManagementClient, registry_client: ServiceClient, pushed: Pushed
) -> None:
    reply = await management.call("untag", project=ALPHA, repository="app", tag="latest")
    assert reply.body == {"ok": True}
    reply = await management.call("untag", project=ALPHA, repository="app", tag="latest")
    assert reply.error == "tag not found"
    assert (await registry_client.get("/v2/alpha/tools/cli/manifests/latest")).status == 200
    assert (await registry_client.get("/v2/beta/app/manifests/latest")).status == 200


# --- delete ---


async def repository_rows_left(db: asyncpg.Connection, name: str) -> dict[str, int]:
    counts = {}
    for table, column in (
        ("repositories", "name"),
        ("manifests", "repository"),
        ("tags", "repository"),
        ("blobs", "repository"),
        ("manifest_blobs", "repository"),
        ("manifest_children", "repository"),
        ("upload_sessions", "repository"),
    ):
        counts[table] = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = $1",
            name,
        )
    return {table: count for table, count in counts.items() if count}


async def start_upload_with_a_chunk(registry_client: ServiceClient, name: str) -> str:
    """An upload session of `name` holding one chunk; returns its id."""
    started = await registry_client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"]
    patched = await registry_client.patch(
        location,
        data=b"half of a layer",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert patched.status == 202, await patched.text()
    upload_id: str = started.headers["Docker-Upload-UUID"]
    return upload_id


async def assert_repository_gone(
    db: asyncpg.Connection, store: ObjectStore, name: str, only_its_blobs: dict[str, bytes]
) -> None:
    assert await repository_rows_left(db, name) == {}
    for digest in only_its_blobs:
        assert await store.stat(blob_key(digest)) is None, digest
        assert await db.fetchval("SELECT 1 FROM blob_objects WHERE digest = $1", digest) is None


@each_storage_backend
async def test_delete_removes_the_repository_and_everything_in_it(
    management: ManagementClient,
    management_client: ServiceClient,
    registry_client: ServiceClient,
    pushed: Pushed,
    db: asyncpg.Connection,
) -> None:
    upload_id = await start_upload_with_a_chunk(registry_client, "alpha/app")
    index = make_index([pushed.app_v1])
    await RegistryClient(registry_client).push_image("alpha/app", index, "multi")
    store = store_of(management_client)
    assert [info async for info in store.list(upload_prefix(upload_id))]

    reply = await management.call("delete", project=ALPHA, repository="app")
    assert (reply.status, reply.body) == (200, {"ok": True})

    await assert_repository_gone(
        db, store, "alpha/app", {**pushed.app_v1.blobs, **pushed.app_v2.blobs}
    )
    assert [info async for info in store.list(upload_prefix(upload_id))] == []
    assert (await management.call("get", project=ALPHA, repository="app")).error == (
        "repository not found"
    )
    listed = (await management.call("list", project=ALPHA)).result["items"]
    assert [item["name"] for item in listed] == ["tools/cli"]
    assert (await registry_client.get("/v2/alpha/app/manifests/latest")).status == 404
    # The rest of the project, and the other project, are untouched.
    for name in ("alpha/tools/cli", "beta/app"):
        assert (await registry_client.get(f"/v2/{name}/manifests/latest")).status == 200
    again = await management.call("delete", project=ALPHA, repository="app")
    assert again.error == "repository not found"


@each_storage_backend
async def test_delete_keeps_blobs_another_project_uses_and_its_pulls_work_byte_for_byte(
    management: ManagementClient,
    management_client: ServiceClient,
    registry: RegistryClient,
    db: asyncpg.Connection,
) -> None:
    shared = make_image("shared-base", layers=2, layer_size=300_000)
    own = make_image("alpha-only")
    # The same layers pushed by two projects: stored once, linked twice.
    await push_tagged(registry, "alpha/app", shared, "shared")
    await push_tagged(registry, "alpha/app", own, "own")
    await push_tagged(registry, "beta/app", shared, "latest")

    reply = await management.call("delete", project=ALPHA, repository="app")
    assert reply.body == {"ok": True}

    only_alpha = {d: b for d, b in own.blobs.items() if d not in shared.blobs}
    await assert_repository_gone(db, store_of(management_client), "alpha/app", only_alpha)
    manifest = await registry.client.get("/v2/beta/app/manifests/latest")
    assert await manifest.read() == shared.manifest
    for digest, data in shared.blobs.items():
        response = await registry.client.get(f"/v2/beta/app/blobs/{digest}")
        assert response.status == 200
        assert await response.read() == data


@each_storage_backend
async def test_delete_keeps_blobs_another_repository_of_the_project_uses(
    management: ManagementClient, registry: RegistryClient, pushed: Pushed
) -> None:
    await push_tagged(registry, "alpha/tools/cli", pushed.app_v1, "from-app")
    assert (await management.call("delete", project=ALPHA, repository="app")).body == {"ok": True}
    for digest, data in pushed.app_v1.blobs.items():
        response = await registry.client.get(f"/v2/alpha/tools/cli/blobs/{digest}")
        assert await response.read() == data


@each_storage_backend
async def test_delete_finishes_after_the_client_disconnects(
    aiohttp_client: Any,
    make_settings: Any,
    storage_overrides: dict[str, Any],
    registry: RegistryClient,
    pushed: Pushed,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hold the delete between its transaction and the object deletes until the client has
    # gone and the server has cancelled the request's handler.
    holding = asyncio.Event()
    release = asyncio.Event()
    handler_cancelled = asyncio.Event()
    real_delete_objects = blob_store.delete_unlinked_objects

    async def held_delete_objects(*args: Any, **kwargs: Any) -> Any:
        holding.set()
        await release.wait()
        return await real_delete_objects(*args, **kwargs)

    monkeypatch.setattr(repository_store, "delete_unlinked_objects", held_delete_objects)

    @web.middleware
    async def observe_cancellation(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return response

    app = create_app(make_settings(**storage_overrides))
    app.middlewares.append(observe_cancellation)
    client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
    upload_id = await start_upload_with_a_chunk(registry.client, "alpha/app")

    call = asyncio.ensure_future(
        client.post("/api/delete", json={"project": ALPHA, "repository": "app"})
    )
    await holding.wait()
    call.cancel()  # the client gives up: its connection closes
    await asyncio.gather(call, return_exceptions=True)
    await handler_cancelled.wait()
    tasks = app[BACKGROUND_TASKS]
    running = set(tasks)
    assert len(running) == 1
    release.set()
    await asyncio.gather(*running)

    store = app[OBJECT_STORE]
    await assert_repository_gone(
        db, store, "alpha/app", {**pushed.app_v1.blobs, **pushed.app_v2.blobs}
    )
    assert [info async for info in store.list(upload_prefix(upload_id))] == []


class SlowPull:
    """A blob GET over a socket with a small receive buffer, read by hand: once the client
    stops reading, the server soon blocks writing, part way through the blob (with aiohttp's
    client, loopback buffers of tens of MiB would take the whole blob at once)."""

    RECEIVE_BUFFER = 64 * 1024

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.length = 0
        self.body = b""

    @classmethod
    async def start(cls, client: ServiceClient, path: str) -> SlowPull:
        """Send the request and read the status line and headers."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cls.RECEIVE_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (client.host, client.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=cls.RECEIVE_BUFFER)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {client.host}\r\n\r\n".encode())
        pull = cls(reader, writer)
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 200 "), head
        match = re.search(r"(?im)^content-length: *(\d+)", head)
        assert match is not None, head
        pull.length = int(match.group(1))
        return pull

    async def read_some(self) -> None:
        """Read what the socket holds now (at least a byte)."""
        chunk = await self.reader.read(self.RECEIVE_BUFFER)
        assert chunk
        self.body += chunk

    async def read_rest(self) -> None:
        """Read up to Content-Length, or until the server closes the connection."""
        async with asyncio.timeout(60):  # a guard: a hang is a failure, not a wait
            while len(self.body) < self.length:
                chunk = await self.reader.read(1024 * 1024)
                if not chunk:
                    break
                self.body += chunk
        self.writer.close()


@each_storage_backend
async def test_delete_while_a_pull_streams_never_serves_wrong_bytes(
    management: ManagementClient, registry: RegistryClient, storage_overrides: dict[str, Any]
) -> None:
    """The delete removes the objects at once, without waiting for pulls in flight. A pull
    that started before it completes when its bytes are already open or fetched, and is
    otherwise cut short (the connection closes before Content-Length bytes): never wrong bytes,
    never a hang; afterwards the blob is gone.

    Filesystem: sendfile goes on reading the open (now unlinked) file, so the pull completes.
    GCS: the blob is read in 8 MiB windows, the next one fetched ahead; the third window is
    asked for after the delete, finds the object gone, and the pull is cut short."""
    data = bytes(range(256)) * (17 * 4096 + 17)  # a little over two GCS windows
    digest = await registry.push_blob("alpha/big", data)
    pull = await SlowPull.start(registry.client, f"/v2/alpha/big/blobs/{digest}")
    assert pull.length == len(data)
    await pull.read_some()

    reply = await management.call("delete", project=ALPHA, repository="big")
    assert reply.body == {"ok": True}

    await pull.read_rest()
    assert data.startswith(pull.body)  # whatever arrived is right
    if storage_overrides["bucket_name"] is None:
        assert pull.body == data
    else:
        assert len(pull.body) < len(data)
    assert (await registry.client.get(f"/v2/alpha/big/blobs/{digest}")).status == 404


# --- Authorization (Deploys API fake) ---


def caller(management: ManagementClient, who: Any) -> ManagementClient:
    return management.as_caller(who.basic if who is not None else None)


async def call_for(management: ManagementClient, method: str, project: str) -> ApiReply:
    body = {**VALID_BODIES[method], "project": project}
    return await management.call(method, **body)


@pytest.mark.parametrize("method", METHODS)
async def test_caller_of_another_project_is_forbidden(
    deploys_management: ManagementClient,
    registry_client: ServiceClient,
    alpha_and_beta: Pushed,
    method: str,
) -> None:
    reply = await call_for(caller(deploys_management, CAROL), method, ALPHA)
    assert (reply.status, reply.body) == (
        200,
        {"ok": False, "error": {"message": "iam: forbidden"}},
    )
    assert (await registry_client.get("/v2/alpha/app/manifests/v1")).status == 200


@pytest.mark.parametrize("method", METHODS)
async def test_forbidden_hides_whether_the_repository_exists(
    deploys_management: ManagementClient, alpha_and_beta: Pushed, method: str
) -> None:
    carol = caller(deploys_management, CAROL)
    body = {**VALID_BODIES[method], "project": ALPHA}
    existing = await carol.call(method, **body)
    if "repository" in body:
        body["repository"] = "nothing"
    missing = await carol.call(method, **body)
    assert existing.body == missing.body == {"ok": False, "error": {"message": "iam: forbidden"}}


@pytest.mark.parametrize("method", METHODS)
async def test_unauthenticated_caller_is_forbidden(
    deploys_management: ManagementClient, alpha_and_beta: Pushed, method: str
) -> None:
    for who in (None, ALICE.with_password("wrong")):
        reply = await call_for(caller(deploys_management, who), method, ALPHA)
        assert reply.error == "iam: forbidden"


@pytest.mark.parametrize("method", READ_METHODS)
async def test_pull_only_member_may_read(
    deploys_management: ManagementClient, alpha_and_beta: Pushed, method: str
) -> None:
    reply = await call_for(caller(deploys_management, BOB), method, ALPHA)
    assert reply.body["ok"] is True, reply.body


@pytest.mark.parametrize("method", WRITE_METHODS)
async def test_pull_only_member_may_not_delete(
    deploys_management: ManagementClient,
    registry_client: ServiceClient,
    alpha_and_beta: Pushed,
    method: str,
) -> None:
    body = {**VALID_BODIES[method], "digest": alpha_and_beta.app_v1.digest}
    reply = await caller(deploys_management, BOB).call(method, **body)
    assert reply.error == "iam: forbidden"
    assert (await registry_client.get("/v2/alpha/app/manifests/v1")).status == 200


async def test_project_with_inactive_billing_is_forbidden(
    deploys_management: ManagementClient,
) -> None:
    reply = await caller(deploys_management, ALICE).call("list", project=UNPAID)
    assert reply.error == "iam: forbidden"


@pytest.mark.parametrize("method", METHODS)
async def test_member_with_every_permission_is_allowed(
    deploys_management: ManagementClient, alpha_and_beta: Pushed, method: str
) -> None:
    body = {**VALID_BODIES[method], "digest": alpha_and_beta.app_v1.digest}
    reply = await caller(deploys_management, ALICE).call(method, **body)
    assert reply.body["ok"] is True, reply.body


async def test_authorization_header_is_passed_through_as_is(
    deploys_management: ManagementClient, deploys_api: FakeDeploysApi, alpha_and_beta: Pushed
) -> None:
    header = f"Bearer {ALICE_API_TOKEN}"
    reply = await deploys_management.as_caller(header).call("list", project=ALPHA)
    assert [item["name"] for item in reply.result["items"]] == ["app", "tools/cli"]
    assert deploys_api.last_authorization["me.authorized"] == header


async def test_answers_are_cached_per_credentials_project_and_permission(
    deploys_management: ManagementClient, deploys_api: FakeDeploysApi
) -> None:
    alice = caller(deploys_management, ALICE)
    for _ in range(3):
        assert (await alice.call("list", project=ALPHA)).body["ok"] is True
        assert (await alice.call("getProjectStorage", project=ALPHA)).body["ok"] is True
    for _ in range(2):
        assert (await caller(deploys_management, CAROL).call("list", project=ALPHA)).error
    # list (registry.list), getProjectStorage (registry.get), and CAROL's denied list.
    assert deploys_api.calls["me.authorized"] == 3


async def test_concurrent_identical_calls_share_one_lookup(
    deploys_management: ManagementClient, deploys_api: FakeDeploysApi
) -> None:
    deploys_api.gate = asyncio.Event()
    alice = caller(deploys_management, ALICE)
    calls = [asyncio.ensure_future(alice.call("list", project=ALPHA)) for _ in range(10)]
    await deploys_api.call_arrived.wait()
    deploys_api.gate.set()
    replies = await asyncio.gather(*calls)
    assert all(reply.body == {"ok": True, "result": {"items": []}} for reply in replies)
    assert deploys_api.calls["me.authorized"] == 1


async def test_unreachable_deploys_api_is_503_and_not_cached(
    deploys_management: ManagementClient, deploys_api: FakeDeploysApi
) -> None:
    deploys_api.answer_500 = True
    alice = caller(deploys_management, ALICE)
    reply = await alice.call("list", project=ALPHA)
    assert reply.status == 503
    assert reply.body["ok"] is False
    deploys_api.answer_500 = False
    assert (await alice.call("list", project=ALPHA)).body["ok"] is True


async def test_malformed_project_is_forbidden_without_asking_the_deploys_api(
    deploys_management: ManagementClient, deploys_api: FakeDeploysApi
) -> None:
    reply = await caller(deploys_management, ALICE).call("list", project="Not A Project")
    assert reply.error == "iam: forbidden"
    assert deploys_api.total_calls == 0


# --- OpenAPI ---


async def test_openapi_document_describes_every_method(management_client: ServiceClient) -> None:
    response = await management_client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert sorted(document["paths"]) == sorted(f"/api/{method}" for method in METHODS)
    for method in METHODS:
        operation = document["paths"][f"/api/{method}"]["post"]
        assert operation["operationId"] == method
        schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
        assert schema["required"] == list(VALID_BODIES[method])
