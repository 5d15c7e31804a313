"""Media types of manifests, configs and layers, and which of them this registry accepts."""

from __future__ import annotations

import json
import re

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# The config of an artifact without one: the two-byte blob `{}` (image-spec 1.1).
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# Manifests with a config and layers.
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Manifests listing other manifests.
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
# Everything a manifest PUT accepts.
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES
# Docker's signed v1 format: refused with a message saying so rather than "unknown type".
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})
# Layers a registry need not hold: they carry `urls` to fetch them from elsewhere.
NON_DISTRIBUTABLE_LAYER_TYPES = frozenset(
    {
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        DOCKER_FOREIGN_LAYER,
    }
)

# RFC 6838 section 4.2 names, as image-spec's JSON schema writes them; no parameters.
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)


def is_media_type(value: str) -> bool:
    """True when `value` is a `type/subtype` media type name without parameters."""
    return _MEDIA_TYPE.match(value) is not None


def content_type_essence(header: str | None) -> str:
    """The `type/subtype` of a Content-Type header, lower-cased, parameters dropped ("" if none).

    The distribution spec asks registries to ignore Content-Type parameters.
    """
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def guess_media_type(content: bytes, stored: str) -> str:
    """The stored media type, else the document's `mediaType`, else one inferred from its shape
    (for manifests imported without one)."""
    if stored:
        return stored
    try:
        document = json.loads(content)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST
