"""What parse_manifest accepts and how it refuses everything else."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from registry_common.oci import media_types as mt
from registry_common.oci.errors import ErrorCode
from registry_common.oci.manifests import (
    MAX_MANIFEST_SIZE,
    BlobReference,
    ManifestReference,
    ParsedManifest,
    parse_manifest,
    parse_reference,
)
from registry_distribution.errors import OciError
from tests.fixtures.distribution import raises_oci_error


def digest(seed: str) -> str:
    return f"sha256:{hashlib.sha256(seed.encode()).hexdigest()}"


def descriptor(
    seed: str, media_type: str = mt.OCI_LAYER_GZIP, size: int = 10, **extra: Any
) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(seed), "size": size, **extra}


def oci_manifest(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor("config", mt.OCI_CONFIG, 5),
        "layers": [descriptor("layer-0"), descriptor("layer-1", size=20)],
    }
    document.update(fields)
    return document


def oci_index(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            descriptor(
                "amd64", mt.OCI_MANIFEST, 500, platform={"architecture": "amd64", "os": "linux"}
            ),
            descriptor(
                "arm64", mt.OCI_MANIFEST, 501, platform={"architecture": "arm64", "os": "linux"}
            ),
        ],
    }
    document.update(fields)
    return document


def parse(document: Any, content_type: str | None = mt.OCI_MANIFEST) -> ParsedManifest:
    return parse_manifest(json.dumps(document).encode(), content_type)


def refused(body: bytes, content_type: str | None = mt.OCI_MANIFEST) -> OciError:
    with raises_oci_error() as caught:
        parse_manifest(body, content_type)
    return caught.value


def refused_document(document: Any, content_type: str | None = mt.OCI_MANIFEST) -> OciError:
    return refused(json.dumps(document).encode(), content_type)


def assert_invalid(error: OciError, fragment: str = "") -> None:
    assert error.code is ErrorCode.MANIFEST_INVALID
    assert error.status == 400
    assert fragment.lower() in json.dumps(error.body()).lower(), error.body()


# Accepted documents


def test_oci_image_manifest_yields_digest_blobs_and_config_artifact_type() -> None:
    body = json.dumps(oci_manifest(annotations={"org.example": "yes"})).encode()
    parsed = parse_manifest(body, mt.OCI_MANIFEST)
    assert parsed.media_type == mt.OCI_MANIFEST
    assert parsed.digest == f"sha256:{hashlib.sha256(body).hexdigest()}"
    assert parsed.size == len(body)
    assert parsed.blobs == (
        BlobReference(digest("config"), 5),
        BlobReference(digest("layer-0"), 10),
        BlobReference(digest("layer-1"), 20),
    )
    assert parsed.children == ()
    assert parsed.subject is None
    assert parsed.artifact_type == mt.OCI_CONFIG
    assert parsed.annotations == {"org.example": "yes"}


def test_oci_manifest_without_media_type_field_is_accepted() -> None:
    document = oci_manifest()
    del document["mediaType"]
    assert parse(document).media_type == mt.OCI_MANIFEST


def test_content_type_parameters_and_case_are_ignored() -> None:
    parsed = parse(oci_manifest(), "Application/VND.oci.image.manifest.v1+json; charset=utf-8")
    assert parsed.media_type == mt.OCI_MANIFEST


def test_manifest_without_layers_is_accepted() -> None:
    assert parse(oci_manifest(layers=[])).blobs == (BlobReference(digest("config"), 5),)


def test_docker_schema2_manifest_is_accepted() -> None:
    document = oci_manifest(
        mediaType=mt.DOCKER_MANIFEST,
        config=descriptor("config", mt.DOCKER_CONFIG, 5),
        layers=[descriptor("layer", mt.DOCKER_LAYER)],
    )
    parsed = parse(document, mt.DOCKER_MANIFEST)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.artifact_type == mt.DOCKER_CONFIG
    assert [blob.digest for blob in parsed.blobs] == [digest("config"), digest("layer")]


def test_docker_schema2_manifest_must_carry_its_media_type() -> None:
    document = oci_manifest(config=descriptor("config", mt.DOCKER_CONFIG, 5))
    del document["mediaType"]
    assert_invalid(refused_document(document, mt.DOCKER_MANIFEST), "mediaType")


def test_oci_index_yields_children_once_and_no_blobs() -> None:
    document = oci_index()
    document["manifests"].append(descriptor("amd64", mt.OCI_MANIFEST, 500))
    parsed = parse(document, mt.OCI_INDEX)
    assert parsed.media_type == mt.OCI_INDEX
    assert parsed.children == (digest("amd64"), digest("arm64"))
    assert parsed.blobs == ()
    assert parsed.artifact_type is None


def test_empty_index_is_accepted() -> None:
    assert parse(oci_index(manifests=[]), mt.OCI_INDEX).children == ()


def test_index_declared_artifact_type_is_kept() -> None:
    parsed = parse(oci_index(artifactType="application/vnd.example.bundle"), mt.OCI_INDEX)
    assert parsed.artifact_type == "application/vnd.example.bundle"


def test_docker_manifest_list_is_accepted() -> None:
    document = oci_index(
        mediaType=mt.DOCKER_MANIFEST_LIST,
        manifests=[
            descriptor(
                "amd64", mt.DOCKER_MANIFEST, 500, platform={"architecture": "amd64", "os": "linux"}
            )
        ],
    )
    parsed = parse(document, mt.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == mt.DOCKER_MANIFEST_LIST
    assert parsed.children == (digest("amd64"),)


def test_artifact_with_empty_config_reports_its_artifact_type_and_needs_the_config() -> None:
    document = oci_manifest(
        artifactType="application/vnd.example.sbom.v1",
        config=descriptor("{}", mt.OCI_EMPTY, 2),
        layers=[descriptor("sbom", "application/spdx+json")],
        subject=descriptor("image", mt.OCI_MANIFEST, 700),
    )
    parsed = parse(document)
    assert parsed.artifact_type == "application/vnd.example.sbom.v1"
    assert parsed.subject == digest("image")
    assert BlobReference(digest("{}"), 2) in parsed.blobs


def test_artifact_with_empty_config_must_declare_artifact_type() -> None:
    document = oci_manifest(config=descriptor("{}", mt.OCI_EMPTY, 2))
    assert_invalid(refused_document(document), "artifactType")


def test_non_distributable_layers_with_urls_need_not_be_linked() -> None:
    foreign = descriptor(
        "foreign", mt.DOCKER_FOREIGN_LAYER, urls=["https://mcr.microsoft.com/layer"]
    )
    nondistributable = descriptor(
        "nd", mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP, urls=["http://example.com/l"]
    )
    without_urls = descriptor("nd-local", mt.OCI_LAYER_NONDISTRIBUTABLE)
    ordinary_with_urls = descriptor("plain", urls=["https://example.com/plain"])
    document = oci_manifest(layers=[foreign, nondistributable, without_urls, ordinary_with_urls])
    blobs = [blob.digest for blob in parse(document).blobs]
    assert blobs == [digest("config"), digest("nd-local"), digest("plain")]


def test_repeated_layer_is_required_once() -> None:
    document = oci_manifest(layers=[descriptor("same"), descriptor("same")])
    assert [blob.digest for blob in parse(document).blobs] == [digest("config"), digest("same")]


def test_same_blob_with_two_sizes_is_refused() -> None:
    document = oci_manifest(layers=[descriptor("same", size=1), descriptor("same", size=2)])
    assert_invalid(refused_document(document), "two sizes")


def test_sha512_descriptor_digest_is_accepted() -> None:
    sha512 = f"sha512:{hashlib.sha512(b'x').hexdigest()}"
    document = oci_manifest(layers=[{"mediaType": mt.OCI_LAYER, "digest": sha512, "size": 1}])
    assert BlobReference(sha512, 1) in parse(document).blobs


def test_digest_algorithm_follows_the_reference() -> None:
    body = json.dumps(oci_manifest()).encode()
    parsed = parse_manifest(body, mt.OCI_MANIFEST, algorithm="sha512")
    assert parsed.digest == f"sha512:{hashlib.sha512(body).hexdigest()}"


def test_unknown_fields_are_allowed() -> None:
    document = oci_manifest(**{"com.example.extension": {"nested": [1, 2]}})
    document["layers"][0]["vendorField"] = True
    assert parse(document).media_type == mt.OCI_MANIFEST


def test_embedded_data_matching_the_descriptor_is_accepted() -> None:
    data = b"hello"
    embedded = {
        "mediaType": mt.OCI_LAYER,
        "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
        "size": len(data),
        "data": base64.b64encode(data).decode(),
    }
    assert parse(oci_manifest(layers=[embedded])).size > 0


def test_manifest_of_exactly_the_size_limit_is_accepted() -> None:
    body = json.dumps(oci_manifest(annotations={"pad": ""})).encode()
    padded = body.replace(b'"pad": ""', b'"pad": "' + b"x" * (MAX_MANIFEST_SIZE - len(body)) + b'"')
    assert len(padded) == MAX_MANIFEST_SIZE
    assert parse_manifest(padded, mt.OCI_MANIFEST).size == MAX_MANIFEST_SIZE


# Size, encoding and JSON


def test_manifest_over_the_size_limit_is_413_manifest_invalid() -> None:
    error = refused(b" " * (MAX_MANIFEST_SIZE + 1))
    assert error.code is ErrorCode.MANIFEST_INVALID
    assert error.status == 413


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[]", "JSON object"),
        (b'"manifest"', "JSON object"),
        (b'{"schemaVersion": NaN}', "NaN"),
        (b'{"schemaVersion": Infinity}', "Infinity"),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', "duplicate"),
        (b'{"config": {"size": 1, "size": 2}}', "duplicate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"schemaVersion": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
    ids=[
        "garbage",
        "empty",
        "utf16",
        "array",
        "string",
        "nan",
        "infinity",
        "duplicate-top-level-key",
        "duplicate-nested-key",
        "deeply-nested",
        "huge-integer",
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(body: bytes, fragment: str) -> None:
    assert_invalid(refused(body), fragment)


# Content-Type and type confusion


@pytest.mark.parametrize("content_type", [None, "", "application/json", "text/plain", "a/b"])
def test_content_type_must_name_a_manifest_type(content_type: str | None) -> None:
    assert_invalid(refused_document(oci_manifest(), content_type), "media type")


@pytest.mark.parametrize("content_type", sorted(mt.SCHEMA1_TYPES))
def test_docker_schema1_content_types_are_refused_by_name(content_type: str) -> None:
    assert_invalid(refused_document({"schemaVersion": 1, "name": "x"}, content_type), "schema1")


def test_schema1_body_under_a_schema2_content_type_is_refused_by_name() -> None:
    document = {"schemaVersion": 1, "name": "p/app", "tag": "v1", "fsLayers": []}
    assert_invalid(refused_document(document, mt.DOCKER_MANIFEST), "schema1")


@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        (oci_manifest(), mt.OCI_INDEX),
        (oci_index(), mt.OCI_MANIFEST),
        (oci_manifest(), mt.DOCKER_MANIFEST),
        (oci_manifest(mediaType=mt.DOCKER_MANIFEST), mt.OCI_MANIFEST),
        (oci_index(mediaType=mt.DOCKER_MANIFEST_LIST), mt.OCI_INDEX),
    ],
    ids=[
        "manifest-as-index",
        "index-as-manifest",
        "oci-as-docker",
        "docker-as-oci",
        "list-as-index",
    ],
)
def test_media_type_field_must_match_content_type(
    document: dict[str, Any], content_type: str
) -> None:
    assert_invalid(refused_document(document, content_type), "does not match the Content-Type")


@pytest.mark.parametrize("value", [None, 2, ["x"], {"a": "b"}])
def test_media_type_field_must_be_a_string(value: Any) -> None:
    assert_invalid(refused_document(oci_manifest(mediaType=value)), "mediaType")


@pytest.mark.parametrize("content_type", [mt.OCI_MANIFEST, mt.OCI_INDEX])
def test_document_with_manifests_and_layers_is_refused_as_type_confusion(
    content_type: str,
) -> None:
    document = {**oci_manifest(), "manifests": oci_index()["manifests"]}
    del document["mediaType"]
    assert_invalid(refused_document(document, content_type), "both")


def test_index_carrying_a_config_is_refused() -> None:
    document = oci_index(config=descriptor("config", mt.OCI_CONFIG))
    assert_invalid(refused_document(document, mt.OCI_INDEX), "config")


def test_manifest_carrying_manifests_is_refused() -> None:
    document = oci_manifest()
    del document["layers"], document["config"]
    document["manifests"] = []
    assert_invalid(refused_document(document, mt.OCI_MANIFEST), "manifests")


# Document fields


@pytest.mark.parametrize("version", [3, 0, "2", 2.0, True, None])
def test_schema_version_must_be_the_integer_2(version: Any) -> None:
    assert_invalid(refused_document(oci_manifest(schemaVersion=version)), "schemaVersion")


def test_schema_version_is_required() -> None:
    document = oci_manifest()
    del document["schemaVersion"]
    assert_invalid(refused_document(document), "schemaVersion")


@pytest.mark.parametrize("field", ["config", "layers"])
def test_image_manifest_requires_config_and_layers(field: str) -> None:
    document = oci_manifest()
    del document[field]
    assert_invalid(refused_document(document), field)


def test_index_requires_manifests() -> None:
    document = oci_index()
    del document["manifests"]
    assert_invalid(refused_document(document, mt.OCI_INDEX), "manifests")


@pytest.mark.parametrize("layers", [None, {}, "layer", [1], [[]]])
def test_layers_must_be_a_list_of_descriptors(layers: Any) -> None:
    assert_invalid(refused_document(oci_manifest(layers=layers)), "layers")


@pytest.mark.parametrize(
    "annotations", [{"key": 1}, {"key": None}, {"key": ["v"]}, ["key"], "key=value"]
)
def test_annotations_must_map_strings_to_strings(annotations: Any) -> None:
    assert_invalid(refused_document(oci_manifest(annotations=annotations)), "annotations")


@pytest.mark.parametrize("artifact_type", ["sbom", "", "a/b; v=1", 7])
def test_artifact_type_must_be_a_media_type(artifact_type: Any) -> None:
    assert_invalid(refused_document(oci_manifest(artifactType=artifact_type)), "artifactType")


def test_index_entry_platform_needs_architecture_and_os() -> None:
    document = oci_index()
    document["manifests"][0]["platform"] = {"architecture": "amd64"}
    assert_invalid(refused_document(document, mt.OCI_INDEX), "manifests.0.platform.os")


def test_subject_must_be_a_descriptor() -> None:
    document = oci_manifest(subject={"digest": digest("image")})
    assert_invalid(refused_document(document), "subject.mediaType")


# Descriptors


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": -1}, "size"),
        ({"size": 1.5}, "size"),
        ({"size": 10.0}, "size"),
        ({"size": "10"}, "size"),
        ({"size": True}, "size"),
        ({"size": None}, "size"),
        ({"size": 2**63}, "size"),
        ({"mediaType": "layer"}, "mediaType"),
        ({"mediaType": ""}, "mediaType"),
        ({"mediaType": "application/x; y=z"}, "mediaType"),
        ({"mediaType": 5}, "mediaType"),
        ({"digest": "sha256:" + "A" * 64}, "digest"),
        ({"digest": "sha256:" + "a" * 63}, "digest"),
        ({"digest": "sha256:" + "a" * 65}, "digest"),
        ({"digest": "md5:" + "a" * 32}, "digest"),
        ({"digest": "a" * 64}, "digest"),
        ({"digest": "sha256:../../etc/passwd"}, "digest"),
        ({"digest": "sha256%3A" + "a" * 64}, "digest"),
        ({"digest": " sha256:" + "a" * 64}, "digest"),
        ({"digest": None}, "digest"),
        ({"urls": ["ftp://example.com/layer"]}, "urls"),
        ({"urls": ["/relative/path"]}, "urls"),
        ({"urls": ["https://exa mple.com/"]}, "urls"),
        ({"urls": "https://example.com/"}, "urls"),
        ({"data": "not base64!"}, "data"),
        ({"data": base64.b64encode(b"other bytes").decode()}, "data"),
    ],
    ids=lambda value: json.dumps(value)[:40] if isinstance(value, dict) else value,
)
def test_malformed_layer_descriptor_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    document = oci_manifest()
    document["layers"][1].update(change)
    assert_invalid(refused_document(document), f"layers.1.{field}")


@pytest.mark.parametrize("field", ["mediaType", "digest", "size"])
def test_descriptor_fields_are_required(field: str) -> None:
    document = oci_manifest()
    del document["config"][field]
    assert_invalid(refused_document(document), f"config.{field}")


def test_malformed_index_entry_digest_is_refused() -> None:
    document = oci_index()
    document["manifests"][1]["digest"] = "sha256:" + "Z" * 64
    assert_invalid(refused_document(document, mt.OCI_INDEX), "manifests.1.digest")


def test_error_lists_every_problem_found() -> None:
    document = oci_manifest()
    document["layers"][0]["size"] = -1
    document["layers"][1]["digest"] = "nope"
    problems = refused_document(document).detail["problems"]
    assert {problem["field"] for problem in problems} == {"layers.0.size", "layers.1.digest"}


# References


def test_reference_is_a_tag_or_a_digest() -> None:
    assert parse_reference("v1.0_rc-2") == ManifestReference(tag="v1.0_rc-2")
    sha = digest("x")
    assert parse_reference(sha) == ManifestReference(digest=sha)


@pytest.mark.parametrize(
    "value", ["sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "sha256:..", ":"]
)
def test_malformed_digest_reference_is_digest_invalid(value: str) -> None:
    with raises_oci_error() as caught:
        parse_reference(value)
    assert caught.value.code is ErrorCode.DIGEST_INVALID


@pytest.mark.parametrize("value", ["-latest", ".hidden", "a" * 129, "", "v 1", "tag/x", "..", "é"])
def test_malformed_tag_reference_is_manifest_invalid(value: str) -> None:
    with raises_oci_error() as caught:
        parse_reference(value)
    assert caught.value.code is ErrorCode.MANIFEST_INVALID
    assert caught.value.status == 400
