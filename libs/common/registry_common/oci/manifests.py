"""What a valid manifest is: parse a pushed body against its Content-Type, or refuse it.

Covers the OCI image manifest and index (image-spec 1.1, with artifacts and `subject`) and
Docker's schema2 manifest and manifest list. Docker schema1 is refused. The checks close the
known confusion attacks: a document whose `mediaType` differs from the Content-Type it was
pushed with, a document carrying both `manifests` and `layers` (or an index carrying `config`),
duplicate JSON keys that two parsers could read differently, and malformed descriptors.
Unknown fields are allowed, as the image spec requires.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from registry_common.errors import ManifestInvalid, ManifestTooLarge, ReferenceInvalid
from registry_common.oci import media_types as mt
from registry_common.oci.digests import digest_of, is_digest, parse_digest
from registry_common.oci.names import is_tag

# The design's limit; the distribution spec asks registries to accept at least this much.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_INT64_MAX = 2**63 - 1
# How many validation problems an error reply lists.
_MAX_REPORTED_PROBLEMS = 10
# RFC 3986 characters (unreserved, reserved and percent signs); no spaces or controls.
_URI_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


@dataclass(frozen=True, slots=True)
class ManifestReference:
    """The `<reference>` of a manifest URL: a tag or a digest, exactly one of them."""

    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return self.tag or self.digest or ""


def parse_reference(value: str) -> ManifestReference:
    """Validate a manifest reference: DigestInvalid for a malformed digest (anything with a
    colon), ReferenceInvalid for anything else that is not a tag."""
    if is_tag(value):
        return ManifestReference(tag=value)
    if ":" in value:
        return ManifestReference(digest=str(parse_digest(value)))
    raise ReferenceInvalid(reference=value[:200])


def manifest_too_large(size: int | None = None) -> ManifestTooLarge:
    """The error for a body over MAX_MANIFEST_SIZE."""
    detail: dict[str, int] = {"limit": MAX_MANIFEST_SIZE}
    if size is not None:
        detail["size"] = size
    return ManifestTooLarge(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes", **detail)


def _media_type(value: str) -> str:
    if not mt.is_media_type(value):
        raise ValueError("must be a media type (type/subtype, RFC 6838)")
    return value


def _digest(value: str) -> str:
    if not is_digest(value):
        raise ValueError("must be a sha256 or sha512 digest with lower-case hex of full length")
    return value


def _url(value: str) -> str:
    parts = urlsplit(value) if _URI_CHARACTERS.match(value) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


MediaType = Annotated[str, AfterValidator(_media_type)]
DigestString = Annotated[str, AfterValidator(_digest)]
Url = Annotated[str, AfterValidator(_url)]
Size = Annotated[int, Field(ge=0, le=_INT64_MAX)]


class _Model(BaseModel):
    # strict: a size of "12", 12.0 or true is not a size; extra: unknown fields are allowed.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Platform(_Model):
    """The platform of an index entry."""

    architecture: str
    os: str


class Descriptor(_Model):
    """A content descriptor (image-spec descriptor.md)."""

    media_type: MediaType = Field(alias="mediaType")
    digest: DigestString
    size: Size
    urls: list[Url] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    artifact_type: MediaType | None = Field(default=None, alias="artifactType")
    platform: Platform | None = None

    @field_validator("data")
    @classmethod
    def _embedded_data_matches(cls, data: str | None, info: ValidationInfo) -> str | None:
        if data is None:
            return data
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64") from None
        digest, size = info.data.get("digest"), info.data.get("size")
        if digest is None or size is None:
            return data  # already reported under their own names
        if len(decoded) != size or digest_of(decoded, digest.split(":", 1)[0]) != digest:
            raise ValueError("does not match the descriptor's size and digest")
        return data


class _Document(_Model):
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: MediaType | None = Field(default=None, alias="artifactType")
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    @field_validator("schema_version")
    @classmethod
    def _schema_version_is_2(cls, version: int) -> int:
        if version != 2:
            raise ValueError("must be 2")
        return version


class ImageManifest(_Document):
    """An OCI image manifest or Docker schema2 manifest: a config and layers."""

    config: Descriptor
    layers: list[Descriptor]


class ImageIndex(_Document):
    """An OCI image index or Docker manifest list: a list of manifests."""

    manifests: list[Descriptor]


@dataclass(frozen=True, slots=True)
class BlobReference:
    """A blob a manifest needs linked in its repository."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """A validated manifest: what the push transaction stores and checks."""

    media_type: str
    digest: str
    size: int
    # Config and layers that must be linked in the repository, each digest once.
    blobs: tuple[BlobReference, ...]
    # Manifests an index lists, each digest once; they must exist in the repository.
    children: tuple[str, ...]
    subject: str | None
    # What the referrers API reports: the declared artifactType, else (image manifests only)
    # the config's media type.
    artifact_type: str | None
    annotations: Mapping[str, str] = field(default_factory=dict)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            # Parsers disagree on which duplicate wins; a registry and a runtime reading
            # different documents from the same bytes is the confusion to prevent.
            raise ManifestInvalid("manifest has a duplicate JSON key", key=key[:200])
        document[key] = value
    return document


def _reject_constant(name: str) -> Any:
    raise ManifestInvalid(f"manifest contains {name}, which is not JSON")


def decode_json_object(body: bytes) -> dict[str, Any]:
    """Decode a manifest body: strict UTF-8 JSON object, no duplicate keys, no NaN/Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestInvalid("manifest is not UTF-8") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON and integers too long to convert.
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "too deeply nested"
        raise ManifestInvalid(f"manifest is not valid JSON: {message}") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    return document


def _check_media_type_field(document: dict[str, Any], media_type: str) -> None:
    if "mediaType" not in document:
        if media_type in (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST):
            raise ManifestInvalid(f"a {media_type} document must carry its mediaType")
        return
    declared = document["mediaType"]
    if not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    if declared != media_type:
        raise ManifestInvalid(
            "manifest mediaType does not match the Content-Type it was pushed with",
            mediaType=declared[:300],
            contentType=media_type,
        )


def _check_shape(document: dict[str, Any], media_type: str) -> None:
    if "manifests" in document and ("layers" in document or "config" in document):
        raise ManifestInvalid(
            "manifest has both `manifests` and `config`/`layers`: it cannot be an image "
            "manifest and an index at once"
        )
    if media_type in mt.IMAGE_MANIFEST_TYPES and "manifests" in document:
        raise ManifestInvalid(f"a {media_type} has no `manifests`; push it as an index")
    if media_type in mt.INDEX_TYPES and ("layers" in document or "config" in document):
        raise ManifestInvalid(f"a {media_type} has no `config` or `layers`")


def _describe(error: ValidationError) -> ManifestInvalid:
    problems = [
        {
            "field": ".".join(str(part) for part in problem["loc"]) or "(document)",
            "message": problem["msg"].removeprefix("Value error, "),
        }
        for problem in error.errors(include_url=False, include_input=False)
    ]
    first = problems[0]
    return ManifestInvalid(
        f"manifest invalid: {first['field']}: {first['message']}",
        problems=problems[:_MAX_REPORTED_PROBLEMS],
    )


def _blob_references(manifest: ImageManifest) -> tuple[BlobReference, ...]:
    required = [manifest.config]
    for layer in manifest.layers:
        # Non-distributable layers that say where they live need not be pushed here.
        if layer.media_type in mt.NON_DISTRIBUTABLE_LAYER_TYPES and layer.urls:
            continue
        required.append(layer)
    references: dict[str, BlobReference] = {}
    for descriptor in required:
        known = references.get(descriptor.digest)
        if known is not None and known.size != descriptor.size:
            raise ManifestInvalid(
                "manifest gives two sizes for the same blob", digest=descriptor.digest
            )
        references[descriptor.digest] = BlobReference(descriptor.digest, descriptor.size)
    return tuple(references.values())


def _check_content_type(media_type: str, header: str | None) -> None:
    if media_type in mt.SCHEMA1_TYPES:
        raise ManifestInvalid(
            "Docker schema1 manifests are not supported; push an OCI or Docker schema2 manifest",
            contentType=media_type,
        )
    if media_type not in mt.MANIFEST_TYPES:
        given = "no Content-Type" if not media_type else f"Content-Type {(header or '')[:200]}"
        raise ManifestInvalid(
            f"{given} is not a manifest media type this registry accepts",
            accepted=sorted(mt.MANIFEST_TYPES),
        )


def parse_manifest(
    body: bytes, content_type: str | None, *, algorithm: str = "sha256"
) -> ParsedManifest:
    """Validate a pushed manifest against its Content-Type header; ManifestInvalid otherwise.

    `algorithm` names the hash of the returned digest (the one of a PUT-by-digest reference).
    """
    if len(body) > MAX_MANIFEST_SIZE:
        raise manifest_too_large(len(body))
    media_type = mt.content_type_essence(content_type)
    _check_content_type(media_type, content_type)
    document = decode_json_object(body)
    version = document.get("schemaVersion")
    if version == 1 and type(version) is int:
        raise ManifestInvalid(
            "Docker schema1 manifests are not supported; push an OCI or Docker schema2 manifest"
        )
    _check_media_type_field(document, media_type)
    _check_shape(document, media_type)
    try:
        if media_type in mt.INDEX_TYPES:
            index = ImageIndex.model_validate(document)
            model: ImageManifest | ImageIndex = index
            blobs: tuple[BlobReference, ...] = ()
            children = tuple(dict.fromkeys(entry.digest for entry in index.manifests))
            artifact_type = index.artifact_type
        else:
            manifest = ImageManifest.model_validate(document)
            model = manifest
            blobs = _blob_references(manifest)
            children = ()
            artifact_type = manifest.artifact_type or manifest.config.media_type
            if manifest.config.media_type == mt.OCI_EMPTY and manifest.artifact_type is None:
                raise ManifestInvalid(
                    "an artifact with the empty config must set artifactType (image-spec 1.1)"
                )
    except ValidationError as exc:
        raise _describe(exc) from None
    return ParsedManifest(
        media_type=media_type,
        digest=digest_of(body, algorithm),
        size=len(body),
        blobs=blobs,
        children=children,
        subject=model.subject.digest if model.subject is not None else None,
        artifact_type=artifact_type,
        annotations=dict(model.annotations or {}),
    )
