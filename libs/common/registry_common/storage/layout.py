"""Where things live in object storage (DESIGN.md "Storage")."""

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


def upload_part_key(upload_id: str, index: int) -> str:
    """Key of the `index`-th chunk of an upload; zero-padded so key order is chunk order."""
    return f"{upload_prefix(upload_id)}part-{index:08d}"
