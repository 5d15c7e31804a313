"""A multi-architecture image written as an OCI image layout, for real clients to copy.

The image is what a build tool would produce: an index naming a linux/amd64 and a linux/arm64
manifest, each with an OCI config (rootfs diff_ids matching the layers) and gzip-compressed tar
layers; the base layer is shared by both platforms, so a push meets the same blob twice.
Everything is deterministic except the bytes of the larger layers, which are random so that
they neither compress nor collide with another test's blobs.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.distribution import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256

PLATFORMS = (("amd64", None), ("arm64", "v8"))
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class ImageLayout:
    """An OCI layout on disk and the digests of what it holds."""

    path: Path
    tag: str
    index_digest: str
    manifest_digests: list[str]

    def blob(self, digest: str) -> bytes:
        """The bytes of the blob `digest` in this layout."""
        algorithm, _, hex_digest = digest.partition(":")
        return (self.path / "blobs" / algorithm / hex_digest).read_bytes()

    @property
    def oci_reference(self) -> str:
        """The reference skopeo takes for this layout's image."""
        return f"oci:{self.path}:{self.tag}"


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


class _LayoutWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def write_blob(self, data: bytes) -> str:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    def layer(self, files: dict[str, bytes]) -> tuple[dict[str, Any], str]:
        """Write a gzip tar layer; its descriptor and the digest of the uncompressed tar."""
        tar = _tar(files)
        compressed = gzip.compress(tar, mtime=0)
        self.write_blob(compressed)
        return _descriptor(OCI_LAYER, compressed), sha256(tar)


def write_multi_arch_layout(
    path: Path, tag: str = "v1", layer_size: int = 512 * 1024
) -> ImageLayout:
    """Write a two-platform image index with its manifests, configs and layers under `path`."""
    writer = _LayoutWriter(path)
    base_layer, base_diff_id = writer.layer(
        {"etc/os-release": b"NAME=e2e\n", "base.bin": os.urandom(layer_size)}
    )
    manifest_descriptors = []
    for architecture, variant in PLATFORMS:
        app_layer, app_diff_id = writer.layer(
            {f"app/{architecture}.bin": os.urandom(layer_size // 2), "app/hello": b"hello\n"}
        )
        platform = {"architecture": architecture, "os": "linux"}
        if variant:
            platform["variant"] = variant
        config = json.dumps(
            {
                **platform,
                "config": {"Cmd": ["/app/hello"]},
                "rootfs": {"type": "layers", "diff_ids": [base_diff_id, app_diff_id]},
                "history": [{"created_by": "e2e base"}, {"created_by": "e2e app"}],
            }
        ).encode()
        writer.write_blob(config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [base_layer, app_layer],
            }
        ).encode()
        writer.write_blob(manifest)
        manifest_descriptors.append(_descriptor(OCI_MANIFEST, manifest, platform=platform))
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifest_descriptors}
    ).encode()
    index_digest = writer.write_blob(index)
    (path / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    _descriptor(OCI_INDEX, index, annotations={REF_NAME_ANNOTATION: tag})
                ],
            }
        )
    )
    return ImageLayout(
        path, tag, index_digest, [descriptor["digest"] for descriptor in manifest_descriptors]
    )


def read_layout(path: Path, tag: str) -> ImageLayout:
    """The image tagged `tag` in an OCI layout a client wrote (an index at the top)."""
    top = json.loads((path / "index.json").read_text())
    (descriptor,) = [
        entry
        for entry in top["manifests"]
        if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) == tag
    ]
    layout = ImageLayout(path, tag, descriptor["digest"], [])
    index = json.loads(layout.blob(layout.index_digest))
    layout.manifest_digests = [entry["digest"] for entry in index["manifests"]]
    return layout


def referenced_blobs(layout: ImageLayout) -> list[str]:
    """Every digest the image needs: the index, its manifests, their configs and layers."""
    digests = [layout.index_digest]
    for manifest_digest in layout.manifest_digests:
        manifest = json.loads(layout.blob(manifest_digest))
        digests.append(manifest_digest)
        digests.append(manifest["config"]["digest"])
        digests.extend(layer["digest"] for layer in manifest["layers"])
    return digests
