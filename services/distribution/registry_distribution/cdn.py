"""`/_cdn/<name>/blobs/<digest>`: the unauthenticated origin behind CDN_DOMAIN.

Only blobs linked to the named repository are served, and only by digest, so the CDN can hold
nothing that the registry would not give to the client it redirected there. Billing is counted
at the redirect, where the project is known, not here.
"""

from __future__ import annotations

from aiohttp import web

from registry_common.db.blobs import linked_blob_size, touch_interval
from registry_common.http import DB_POOL, SETTINGS
from registry_common.oci.digests import parse_digest
from registry_common.oci.errors import ErrorCode, OciError
from registry_common.oci.names import parse_repository_name
from registry_distribution.blobs import send_blob

PUBLIC_IMMUTABLE = "public, max-age=31536000, immutable"


async def serve_blob(request: web.Request) -> web.StreamResponse:
    """Serve a linked blob's bytes to the CDN."""
    if "%" in request.raw_path:
        raise OciError(ErrorCode.NAME_INVALID, "percent-encoded characters are not allowed")
    repository = parse_repository_name(request.match_info["name"])
    digest = str(parse_digest(request.match_info["digest"]))
    size = await linked_blob_size(
        request.app[DB_POOL],
        repository.full,
        digest,
        touch_interval(request.app[SETTINGS].gc_grace_period),
    )
    if size is None:
        raise OciError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
    return await send_blob(request, digest, size, PUBLIC_IMMUTABLE)
