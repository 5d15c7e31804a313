"""`GET /v2/<name>/referrers/<digest>` (OCI 1.1), on every storage backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.distribution import (
    OCI_CONFIG,
    OCI_INDEX,
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
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"


async def referrers(
    client: ServiceClient, subject: str, name: str = NAME, **query: str
) -> tuple[list[dict[str, Any]], Any]:
    """The descriptors of one page, and the response for its headers."""
    response = await client.get(f"/v2/{name}/referrers/{subject}", params=query)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == OCI_INDEX
    index = await response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    return index["manifests"], response


def by_digest(descriptors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {descriptor["digest"]: descriptor for descriptor in descriptors}


@pytest.fixture
async def subject(registry: RegistryClient) -> Image:
    """An image pushed to NAME, for artifacts to refer to."""
    image = make_image("subject")
    await registry.push_image(NAME, image, "v1")
    return image


async def test_subject_without_referrers_has_an_empty_index(
    subject: Image, registry_client: ServiceClient
) -> None:
    descriptors, response = await referrers(registry_client, subject.digest)
    assert descriptors == []
    assert "OCI-Filters-Applied" not in response.headers
    assert "Link" not in response.headers


async def test_unknown_repository_or_subject_is_an_empty_index_not_404(
    registry_client: ServiceClient,
) -> None:
    assert (await referrers(registry_client, sha256(b"x"), name="proj/nothing"))[0] == []


async def test_referrers_are_described_with_artifact_type_and_annotations(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    sbom = make_artifact(
        "sbom", SBOM, subject=subject, annotations={"org.opencontainers.image.created": "now"}
    )
    signature = make_artifact("sig", SIGNATURE, subject=subject)
    # An image manifest without artifactType is reported with its config's media type...
    attestation = make_image("attestation", layers=1, subject=subject.descriptor())
    # ...and an index without one has none.
    child = make_image("child")
    await registry.push_image(NAME, child)
    bundle = make_index([child], subject=subject.descriptor(), annotations={"k": "v"})
    for referrer in (sbom, signature, attestation, bundle):
        await registry.push_image(NAME, referrer)

    descriptors, _ = await referrers(registry_client, subject.digest)
    assert [descriptor["digest"] for descriptor in descriptors] == sorted(
        referrer.digest for referrer in (sbom, signature, attestation, bundle)
    )
    found = by_digest(descriptors)
    assert found[sbom.digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom.digest,
        "size": len(sbom.manifest),
        "artifactType": SBOM,
        "annotations": {"org.opencontainers.image.created": "now"},
    }
    assert found[signature.digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": signature.digest,
        "size": len(signature.manifest),
        "artifactType": SIGNATURE,
    }
    assert found[attestation.digest]["artifactType"] == OCI_CONFIG
    assert found[bundle.digest] == {
        "mediaType": OCI_INDEX,
        "digest": bundle.digest,
        "size": len(bundle.manifest),
        "annotations": {"k": "v"},
    }


async def test_referrer_pushed_before_its_subject_is_listed(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    later = make_image("pushed-later")
    signature = make_artifact("early", SIGNATURE, subject=later)
    await registry.push_image(NAME, signature)
    descriptors, _ = await referrers(registry_client, later.digest)
    assert [descriptor["digest"] for descriptor in descriptors] == [signature.digest]


async def test_annotations_with_nul_and_lone_surrogate_escapes_round_trip(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    awkward = {"nul": "a\u0000b", "surrogate": "\ud800", "emoji": "\U0001f600"}
    artifact = make_artifact("awkward", SBOM, subject=subject, annotations=awkward)
    await registry.push_image(NAME, artifact)
    descriptors, _ = await referrers(registry_client, subject.digest)
    assert descriptors[0]["annotations"] == awkward


async def test_artifact_type_filter_is_applied_and_announced(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    sbom = make_artifact("sbom", SBOM, subject=subject)
    signature = make_artifact("sig", SIGNATURE, subject=subject)
    for referrer in (sbom, signature):
        await registry.push_image(NAME, referrer)
    descriptors, response = await referrers(registry_client, subject.digest, artifactType=SBOM)
    assert [descriptor["digest"] for descriptor in descriptors] == [sbom.digest]
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    none, response = await referrers(
        registry_client, subject.digest, artifactType="application/vnd.example.other"
    )
    assert none == []
    assert response.headers["OCI-Filters-Applied"] == "artifactType"


async def test_n_pages_the_referrers_with_link(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    artifacts = [make_artifact(f"sig-{i}", SIGNATURE, subject=subject) for i in range(5)]
    for artifact in artifacts:
        await registry.push_image(NAME, artifact)
    collected: list[str] = []
    url = f"/v2/{NAME}/referrers/{subject.digest}?n=2&artifactType={SIGNATURE}"
    pages = 0
    while url:
        response = await registry_client.get(url)
        assert response.status == 200
        assert response.headers["OCI-Filters-Applied"] == "artifactType"
        page = (await response.json())["manifests"]
        assert len(page) <= 2
        collected += [descriptor["digest"] for descriptor in page]
        link = response.headers.get("Link", "")
        assert not link or link.endswith('>; rel="next"')
        url = link[1 : link.index(">")] if link else ""
        pages += 1
    assert collected == sorted(artifact.digest for artifact in artifacts)
    assert pages == 3


async def test_last_continues_after_the_given_digest(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    artifacts = [make_artifact(f"sig-{i}", SIGNATURE, subject=subject) for i in range(3)]
    for artifact in artifacts:
        await registry.push_image(NAME, artifact)
    ordered = sorted(artifact.digest for artifact in artifacts)
    descriptors, response = await referrers(registry_client, subject.digest, last=ordered[0])
    assert [descriptor["digest"] for descriptor in descriptors] == ordered[1:]
    assert "Link" not in response.headers


async def test_large_annotations_shorten_the_page(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    padding = "x" * (3 * 1024 * 1024)
    artifacts = [
        make_artifact(f"big-{i}", SBOM, subject=subject, annotations={"pad": padding})
        for i in range(3)
    ]
    for artifact in artifacts:
        await registry.push_image(NAME, artifact)
    ordered = sorted(artifact.digest for artifact in artifacts)
    descriptors, response = await referrers(registry_client, subject.digest)
    assert [descriptor["digest"] for descriptor in descriptors] == ordered[:1]
    assert f"last={ordered[0]}" in response.headers["Link"]


async def test_n_zero_is_an_empty_index(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image(NAME, make_artifact("sig", SIGNATURE, subject=subject))
    descriptors, response = await referrers(registry_client, subject.digest, n="0")
    assert descriptors == []
    assert "Link" not in response.headers


async def test_referrers_of_another_repository_are_not_listed(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image("other/app", make_artifact("foreign", SIGNATURE, subject=subject))
    assert (await referrers(registry_client, subject.digest))[0] == []


async def test_deleted_referrer_is_no_longer_listed(
    subject: Image, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    signature = make_artifact("sig", SIGNATURE, subject=subject)
    await registry.push_image(NAME, signature)
    response = await registry_client.delete(f"/v2/{NAME}/manifests/{signature.digest}")
    assert response.status == 202
    assert (await referrers(registry_client, subject.digest))[0] == []


@pytest.mark.parametrize(
    "digest",
    ["sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "latest", "sha256:" + "a" * 65],
)
async def test_malformed_digest_is_400_digest_invalid(
    registry_client: ServiceClient, digest: str
) -> None:
    response = await registry_client.get(f"/v2/{NAME}/referrers/{digest}")
    await assert_oci_error(response, 400, "DIGEST_INVALID")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"n": "-1"}, 400, "UNSUPPORTED"),
        ({"n": "many"}, 400, "UNSUPPORTED"),
        ({"last": "sha256:nope"}, 400, "DIGEST_INVALID"),
        ({"artifactType": "not a media type"}, 400, "UNSUPPORTED"),
        ({"artifactType": ""}, 400, "UNSUPPORTED"),
    ],
    ids=json.dumps,
)
async def test_invalid_query_parameters_are_400(
    registry_client: ServiceClient, query: dict[str, str], status: int, code: str
) -> None:
    response = await registry_client.get(f"/v2/{NAME}/referrers/{sha256(b'x')}", params=query)
    await assert_oci_error(response, status, code)
