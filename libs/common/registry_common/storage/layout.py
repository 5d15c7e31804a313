"""Where things live in object storage: blobs, upload data, and the old services' manifests."""

from __future__ import annotations

BLOBS_PREFIX = "blobs/"
UPLOADS_PREFIX = "uploads/"


def blob_key(digest: str) -> str:
    """`blobs/<algorithm>/<hex[0:2]>/<hex>` for an already validated digest."""
    algorithm, hex_part = digest.split(":", 1)
    return f"{BLOBS_PREFIX}{algorithm}/{hex_part[:2]}/{hex_part}"


def upload_prefix(upload_id: str) -> str:
    """Folder of one upload session's temporary data."""
    return f"{UPLOADS_PREFIX}{upload_id}/"


def upload_part_key(upload_id: str, index: int, nonce: str = "") -> str:
    """Key of the `index`-th chunk of an upload; zero-padded so key order is chunk order.

    `nonce` keeps two racing writers of the same chunk index from overwriting each other.
    """
    suffix = f"-{nonce}" if nonce else ""
    return f"{upload_prefix(upload_id)}part-{index:08d}{suffix}"


def upload_blob_key(upload_id: str, nonce: str) -> str:
    """Key of an upload's assembled bytes, awaiting the move to their blob key."""
    return f"{upload_prefix(upload_id)}blob-{nonce}"


def legacy_manifest_key(repository: str, digest: str) -> str:
    """Where the Go service kept a manifest's bytes in the bucket (indexManifests reads it)."""
    return f"{repository}/manifests/{digest}"
