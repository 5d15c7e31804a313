"""`/v2/<name>/manifests/<reference>`: push, pull, HEAD and delete, on every storage backend."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import asyncpg
import pytest

from registry_common.oci.manifests import MAX_MANIFEST_SIZE
from tests.fixtures.distribution import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    RegistryClient,
    assert_oci_error,
    make_artifact,
    make_image,
    make_index,
    sha256,
)
from tests.fixtures.services import ServiceClient

NAME = "proj/app"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def put(
    client: ServiceClient, reference: str, body: bytes, content_type: str = OCI_MANIFEST
) -> Any:
    return await client.put(
        f"/v2/{NAME}/manifests/{reference}", data=body, headers={"Content-Type": content_type}
    )


async def push_blobs(registry: RegistryClient, image: Image, name: str = NAME) -> None:
    for data in image.blobs.values():
        await registry.push_blob(name, data)


async def stored_rows(db: asyncpg.Connection, name: str = NAME) -> dict[str, int]:
    """How many rows of each manifest table `name` has."""
    return {
        "manifests": await db.fetchval(
            "SELECT count(*) FROM manifests WHERE repository = $1", name
        ),
        "tags": await db.fetchval("SELECT count(*) FROM tags WHERE repository = $1", name),
        "manifest_blobs": await db.fetchval(
            "SELECT count(*) FROM manifest_blobs WHERE repository = $1", name
        ),
        "manifest_children": await db.fetchval(
            "SELECT count(*) FROM manifest_children WHERE repository = $1", name
        ),
    }


NOTHING = {"manifests": 0, "tags": 0, "manifest_blobs": 0, "manifest_children": 0}


# Push and pull


async def test_push_by_tag_answers_201_with_location_and_digest(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("push")
    await push_blobs(registry, image)
    response = await put(registry_client, "latest", image.manifest)
    assert response.status == 201, await response.text()
    assert response.headers["Location"] == f"/v2/{NAME}/manifests/{image.digest}"
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert "OCI-Subject" not in response.headers
    assert await stored_rows(db) == {
        "manifests": 1,
        "tags": 1,
        "manifest_blobs": 3,
        "manifest_children": 0,
    }


async def test_pull_by_tag_and_digest_serves_the_exact_bytes_and_headers(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("pull")
    # Unusual spacing and key order must survive byte for byte.
    document = json.loads(image.manifest)
    image.manifest = json.dumps(document, indent=3, sort_keys=True).encode() + b"\n"
    await registry.push_image(NAME, image, "v1")
    for reference in ("v1", image.digest):
        response = await registry_client.get(f"/v2/{NAME}/manifests/{reference}")
        assert response.status == 200
        assert await response.read() == image.manifest
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert response.headers["Content-Length"] == str(len(image.manifest))
        assert response.headers["Docker-Content-Digest"] == image.digest
        assert response.headers["ETag"] == f'"{image.digest}"'


async def test_digest_pulls_are_cacheable_and_tag_pulls_are_revalidated(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("cache")
    await registry.push_image(NAME, image, "v1")
    by_digest = await registry_client.get(f"/v2/{NAME}/manifests/{image.digest}")
    assert "immutable" in by_digest.headers["Cache-Control"]
    assert "max-age=31536000" in by_digest.headers["Cache-Control"]
    by_tag = await registry_client.get(f"/v2/{NAME}/manifests/v1")
    assert by_tag.headers["Cache-Control"] == "no-cache"


async def test_head_answers_headers_without_body(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("head")
    await registry.push_image(NAME, image, "v1")
    for reference in ("v1", image.digest):
        response = await registry_client.head(f"/v2/{NAME}/manifests/{reference}")
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(image.manifest))
        assert response.headers["Docker-Content-Digest"] == image.digest
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert await response.read() == b""


async def test_matching_if_none_match_answers_304(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("etag")
    await registry.push_image(NAME, image, "v1")
    response = await registry_client.get(
        f"/v2/{NAME}/manifests/v1", headers={"If-None-Match": f'"{image.digest}"'}
    )
    assert response.status == 304
    assert response.headers["Docker-Content-Digest"] == image.digest
    other = await registry_client.get(
        f"/v2/{NAME}/manifests/v1", headers={"If-None-Match": '"sha256:other"'}
    )
    assert other.status == 200


async def test_push_by_digest_stores_without_tag(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("by-digest")
    await registry.push_image(NAME, image)
    assert (await stored_rows(db))["tags"] == 0
    response = await registry_client.get(f"/v2/{NAME}/manifests/{image.digest}")
    assert await response.read() == image.manifest


async def test_push_by_sha512_digest_is_served_by_that_digest(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("sha512")
    await push_blobs(registry, image)
    digest = f"sha512:{hashlib.sha512(image.manifest).hexdigest()}"
    response = await put(registry_client, digest, image.manifest)
    assert response.status == 201, await response.text()
    assert response.headers["Docker-Content-Digest"] == digest
    pulled = await registry_client.get(f"/v2/{NAME}/manifests/{digest}")
    assert await pulled.read() == image.manifest


async def test_pushing_a_tag_again_moves_it(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    first, second = make_image("first"), make_image("second")
    await registry.push_image(NAME, first, "latest")
    await registry.push_image(NAME, second, "latest")
    response = await registry_client.get(f"/v2/{NAME}/manifests/latest")
    assert response.headers["Docker-Content-Digest"] == second.digest
    still = await registry_client.get(f"/v2/{NAME}/manifests/{first.digest}")
    assert still.status == 200


async def test_pushing_the_same_manifest_twice_keeps_one_row(
    registry: RegistryClient, db: asyncpg.Connection
) -> None:
    image = make_image("twice")
    await registry.push_image(NAME, image, "a")
    await registry.push_image(NAME, image, "b")
    assert await stored_rows(db) == {
        "manifests": 1,
        "tags": 2,
        "manifest_blobs": 3,
        "manifest_children": 0,
    }


async def test_docker_schema2_manifest_and_list_keep_their_media_types(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    config = b'{"architecture": "amd64", "os": "linux"}'
    layer = b"docker layer bytes"
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": sha256(layer),
                "size": len(layer),
            }
        ],
    }
    image = Image(json.dumps(manifest).encode(), DOCKER_MANIFEST, {"c": config, "l": layer})
    await registry.push_image(NAME, image, "docker")
    manifest_list = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{**image.descriptor(), "platform": {"architecture": "amd64", "os": "linux"}}],
    }
    listed = Image(json.dumps(manifest_list).encode(), DOCKER_MANIFEST_LIST, {})
    await registry.push_image(NAME, listed, "docker-list")
    for tag, expected in (("docker", image), ("docker-list", listed)):
        response = await registry_client.get(f"/v2/{NAME}/manifests/{tag}")
        assert response.headers["Content-Type"] == expected.media_type
        assert await response.read() == expected.manifest


async def test_index_of_pushed_manifests_is_stored_with_child_links(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    children = [make_image("amd64"), make_image("arm64")]
    for child in children:
        await registry.push_image(NAME, child)
    index = make_index(children)
    await registry.push_image(NAME, index, "multi")
    response = await registry_client.get(f"/v2/{NAME}/manifests/multi")
    assert response.headers["Content-Type"] == OCI_INDEX
    assert await response.read() == index.manifest
    rows = await db.fetch(
        "SELECT child_digest FROM manifest_children WHERE repository = $1 AND parent_digest = $2",
        NAME,
        index.digest,
    )
    assert {row["child_digest"] for row in rows} == {child.digest for child in children}


async def test_empty_index_creates_its_repository(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image("proj/fresh", make_index([]), "empty")
    response = await registry_client.get("/v2/proj/fresh/manifests/empty")
    assert response.status == 200


async def test_artifact_with_subject_answers_oci_subject(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("subject")
    await registry.push_image(NAME, image, "v1")
    artifact = make_artifact("sbom", "application/vnd.example.sbom", subject=image)
    await push_blobs(registry, artifact)
    response = await put(registry_client, artifact.digest, artifact.manifest)
    assert response.status == 201, await response.text()
    assert response.headers["OCI-Subject"] == image.digest
    row = await db.fetchrow(
        "SELECT subject, artifact_type FROM manifests WHERE repository = $1 AND digest = $2",
        NAME,
        artifact.digest,
    )
    assert row is not None
    assert dict(row) == {"subject": image.digest, "artifact_type": "application/vnd.example.sbom"}


async def test_subject_need_not_exist(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    absent = make_image("never-pushed")
    artifact = make_artifact("signature", "application/vnd.example.sig", subject=absent)
    await push_blobs(registry, artifact)
    response = await put(registry_client, artifact.digest, artifact.manifest)
    assert response.status == 201, await response.text()
    assert response.headers["OCI-Subject"] == absent.digest


async def test_foreign_layer_with_urls_need_not_be_pushed(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    config = b'{"os": "windows"}'
    await registry.push_blob(NAME, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "digest": sha256(b"windows base layer"),
                "size": 18,
                "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"],
            }
        ],
    }
    response = await put(registry_client, "windows", json.dumps(manifest).encode())
    assert response.status == 201, await response.text()


# Rejected pushes store nothing


async def test_unlinked_blob_is_manifest_blob_unknown_and_nothing_is_stored(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("missing-layer")
    config, first_layer, second_layer = image.blobs.values()
    await registry.push_blob(NAME, config)
    await registry.push_blob(NAME, first_layer)
    response = await put(registry_client, "latest", image.manifest)
    error = await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error["detail"]["digest"] == sha256(second_layer)
    assert await stored_rows(db) == NOTHING


async def test_blob_linked_only_in_another_repository_is_manifest_blob_unknown(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("elsewhere")
    await push_blobs(registry, image, name="other/app")
    response = await put(registry_client, "latest", image.manifest)
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await stored_rows(db) == NOTHING


async def test_descriptor_size_differing_from_the_blob_is_manifest_invalid(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("wrong-size")
    await push_blobs(registry, image)
    document = json.loads(image.manifest)
    document["layers"][0]["size"] += 1
    response = await put(registry_client, "latest", json.dumps(document).encode())
    await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert await stored_rows(db) == NOTHING


async def test_index_with_unknown_child_is_manifest_unknown_and_nothing_is_stored(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    pushed, absent = make_image("pushed"), make_image("absent")
    await registry.push_image(NAME, pushed)
    index = make_index([pushed, absent])
    response = await put(registry_client, "multi", index.manifest, OCI_INDEX)
    error = await assert_oci_error(response, 400, "MANIFEST_UNKNOWN")
    assert error["detail"]["digest"] == absent.digest
    assert await stored_rows(db) == {**NOTHING, "manifests": 1, "manifest_blobs": 3}


async def test_index_child_in_another_repository_is_manifest_unknown(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    child = make_image("other-repo-child")
    await registry.push_image("other/app", child)
    response = await put(registry_client, "multi", make_index([child]).manifest, OCI_INDEX)
    await assert_oci_error(response, 400, "MANIFEST_UNKNOWN")


async def test_digest_reference_not_matching_the_body_is_digest_invalid(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("mismatch")
    await push_blobs(registry, image)
    response = await put(registry_client, sha256(b"something else"), image.manifest)
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    assert await stored_rows(db) == NOTHING


async def test_manifest_over_4_mib_is_413_manifest_invalid(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("huge")
    await push_blobs(registry, image)
    document = json.loads(image.manifest)
    document["annotations"] = {"padding": "x" * MAX_MANIFEST_SIZE}
    response = await put(registry_client, "latest", json.dumps(document).encode())
    await assert_oci_error(response, 413, "MANIFEST_INVALID")
    assert await stored_rows(db) == NOTHING


async def test_chunked_manifest_over_4_mib_is_413_manifest_invalid(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    async def body() -> Any:
        for _ in range(5):
            yield b" " * (1024 * 1024)

    response = await registry_client.put(
        f"/v2/{NAME}/manifests/latest", data=body(), headers={"Content-Type": OCI_MANIFEST}
    )
    await assert_oci_error(response, 413, "MANIFEST_INVALID")
    assert await stored_rows(db) == NOTHING


async def test_manifest_of_exactly_4_mib_is_accepted(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("limit")
    await push_blobs(registry, image)
    document = json.loads(image.manifest)
    document["annotations"] = {"padding": ""}
    body = json.dumps(document).encode()
    body = body.replace(
        b'"padding": ""', b'"padding": "' + b"x" * (MAX_MANIFEST_SIZE - len(body)) + b'"'
    )
    assert len(body) == MAX_MANIFEST_SIZE
    response = await put(registry_client, "latest", body)
    assert response.status == 201, await response.text()


async def test_content_type_differing_from_media_type_is_manifest_invalid(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("confused")
    await push_blobs(registry, image)
    response = await put(registry_client, "latest", image.manifest, OCI_INDEX)
    error = await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert "Content-Type" in error["message"]
    assert await stored_rows(db) == NOTHING


async def test_document_with_manifests_and_layers_is_manifest_invalid(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    child = make_image("child")
    await registry.push_image(NAME, child)
    image = make_image("both")
    await push_blobs(registry, image)
    document = json.loads(image.manifest)
    del document["mediaType"]
    document["manifests"] = [child.descriptor()]
    for content_type in (OCI_MANIFEST, OCI_INDEX):
        response = await put(registry_client, "latest", json.dumps(document).encode(), content_type)
        await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert (await stored_rows(db))["manifests"] == 1


async def test_docker_schema1_is_refused_clearly(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    body = json.dumps({"schemaVersion": 1, "name": NAME, "tag": "v1", "fsLayers": []}).encode()
    response = await put(
        registry_client, "v1", body, "application/vnd.docker.distribution.manifest.v1+prettyjws"
    )
    error = await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert "schema1" in error["message"]
    assert await stored_rows(db) == NOTHING


async def test_malformed_json_and_descriptors_are_manifest_invalid(
    registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    bad_digest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + "A" * 64, "size": 1},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b"l"), "size": -5}],
    }
    for body in (b"{not json", json.dumps(bad_digest).encode()):
        response = await put(registry_client, "latest", body)
        await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert await stored_rows(db) == NOTHING


async def test_missing_content_type_is_manifest_invalid(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("no-type")
    await push_blobs(registry, image)
    response = await registry_client.put(
        f"/v2/{NAME}/manifests/latest",
        data=image.manifest,
        headers={"Content-Type": "application/octet-stream"},
    )
    await assert_oci_error(response, 400, "MANIFEST_INVALID")


async def test_a_malformed_digest_reference_is_refused_on_every_method(
    registry_client: ServiceClient,
) -> None:
    body = make_image("ref").manifest
    url = f"/v2/{NAME}/manifests/sha256:ABC"
    await assert_oci_error(await registry_client.get(url), 400, "DIGEST_INVALID")
    await assert_oci_error(await registry_client.delete(url), 400, "DIGEST_INVALID")
    await assert_oci_error(await put(registry_client, "sha256:ABC", body), 400, "DIGEST_INVALID")
    assert (await registry_client.head(url)).status == 400


@pytest.mark.parametrize("reference", [".INVALID_MANIFEST_NAME", "-bad-tag", "a" * 129])
async def test_a_reference_that_is_no_tag_names_no_manifest(
    registry: RegistryClient, reference: str
) -> None:
    """What the OCI conformance suite expects: reading it is 404, pushing it is invalid."""
    await registry.push_image(NAME, make_image("ref"), "v1")
    url = f"/v2/{NAME}/manifests/{reference}"
    await assert_oci_error(await registry.client.get(url), 404, "MANIFEST_UNKNOWN")
    assert (await registry.client.head(url)).status == 404
    await assert_oci_error(await registry.client.delete(url), 404, "MANIFEST_UNKNOWN")
    body = make_image("ref").manifest
    await assert_oci_error(await put(registry.client, reference, body), 400, "MANIFEST_INVALID")


async def test_the_catalog_is_unsupported(registry_client: ServiceClient) -> None:
    await assert_oci_error(await registry_client.get("/v2/_catalog"), 404, "UNSUPPORTED")


# Unknown manifests


async def test_unknown_repository_is_name_unknown(registry_client: ServiceClient) -> None:
    for reference in ("latest", sha256(b"x")):
        response = await registry_client.get(f"/v2/proj/nothing/manifests/{reference}")
        await assert_oci_error(response, 404, "NAME_UNKNOWN")
    head = await registry_client.head("/v2/proj/nothing/manifests/latest")
    assert head.status == 404
    assert await head.read() == b""


async def test_unknown_tag_or_digest_in_a_known_repository_is_manifest_unknown(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image(NAME, make_image("known"), "v1")
    for reference in ("v2", sha256(b"unknown")):
        response = await registry_client.get(f"/v2/{NAME}/manifests/{reference}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


async def test_manifest_of_another_repository_is_not_served(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    image = make_image("private")
    await registry.push_image("other/app", image, "v1")
    await registry.push_image(NAME, make_image("mine"), "v0")
    response = await registry_client.get(f"/v2/{NAME}/manifests/{image.digest}")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


# Delete


async def test_delete_by_digest_removes_manifest_tags_and_references_but_keeps_blobs(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("delete")
    await registry.push_image(NAME, image, "v1")
    await registry.push_image(NAME, image, "v2")
    response = await registry_client.delete(f"/v2/{NAME}/manifests/{image.digest}")
    assert response.status == 202, await response.text()
    assert await stored_rows(db) == NOTHING
    for reference in ("v1", image.digest):
        gone = await registry_client.get(f"/v2/{NAME}/manifests/{reference}")
        await assert_oci_error(gone, 404, "MANIFEST_UNKNOWN")
    for digest in image.blobs:
        blob = await registry_client.head(f"/v2/{NAME}/blobs/{digest}")
        assert blob.status == 200


async def test_delete_by_tag_removes_only_the_tag(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    image = make_image("untag")
    await registry.push_image(NAME, image, "v1")
    await registry.push_image(NAME, image, "v2")
    response = await registry_client.delete(f"/v2/{NAME}/manifests/v1")
    assert response.status == 202
    await assert_oci_error(
        await registry_client.get(f"/v2/{NAME}/manifests/v1"), 404, "MANIFEST_UNKNOWN"
    )
    assert (await registry_client.get(f"/v2/{NAME}/manifests/v2")).status == 200
    assert (await registry_client.get(f"/v2/{NAME}/manifests/{image.digest}")).status == 200
    assert (await stored_rows(db))["manifests"] == 1


async def test_delete_of_unknown_manifest_or_tag_is_404(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image(NAME, make_image("present"), "v1")
    for reference in ("absent", sha256(b"absent")):
        response = await registry_client.delete(f"/v2/{NAME}/manifests/{reference}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await registry_client.delete(f"/v2/proj/nothing/manifests/{sha256(b'x')}")
    await assert_oci_error(response, 404, "NAME_UNKNOWN")


async def test_delete_of_a_manifest_listed_by_an_index_is_refused_until_the_index_goes(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    child = make_image("listed")
    await registry.push_image(NAME, child)
    index = make_index([child])
    await registry.push_image(NAME, index, "multi")
    refused = await registry_client.delete(f"/v2/{NAME}/manifests/{child.digest}")
    error = await assert_oci_error(refused, 409, "DENIED")
    assert error["detail"]["indexes"] == [index.digest]
    assert (await registry_client.get(f"/v2/{NAME}/manifests/{child.digest}")).status == 200

    assert (await registry_client.delete(f"/v2/{NAME}/manifests/{index.digest}")).status == 202
    assert (await registry_client.delete(f"/v2/{NAME}/manifests/{child.digest}")).status == 202


async def test_index_listing_a_child_of_another_repository_does_not_block_its_delete(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    child = make_image("shared")
    await registry.push_image(NAME, child)
    await registry.push_image("other/app", child)
    await registry.push_image("other/app", make_index([child]), "multi")
    response = await registry_client.delete(f"/v2/{NAME}/manifests/{child.digest}")
    assert response.status == 202


async def test_index_push_racing_a_child_delete_never_leaves_the_index_dangling(
    registry: RegistryClient, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    for round_number in range(5):
        child = make_image(f"race-{round_number}")
        await registry.push_image(NAME, child)
        index = make_index([child])
        pushed, deleted = await asyncio.gather(
            put(registry_client, index.digest, index.manifest, OCI_INDEX),
            registry_client.delete(f"/v2/{NAME}/manifests/{child.digest}"),
        )
        # Either the index won (and the child stays) or the delete did (and the index is refused).
        assert (pushed.status, deleted.status) in {(201, 409), (400, 202)}
    dangling = await db.fetchval(
        """
        SELECT count(*) FROM manifest_children c
        WHERE NOT EXISTS (
            SELECT 1 FROM manifests m
            WHERE m.repository = c.repository AND m.digest = c.child_digest
        )
        """
    )
    assert dangling == 0
