"""`/_cdn/<name>/blobs/<digest>`: the unauthenticated origin behind CDN_DOMAIN.

Only blobs linked to the named repository are served, and only by digest, so the CDN can hold
nothing that the registry would not give to the client it redirected there. Billing is counted
at the redirect, where the project is known, not here.
"""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode
from registry_common.oci.names import parse_repository_name
from registry_distribution.blobs import linked_size, send_blob
from registry_distribution.errors import OciError

PUBLIC_IMMUTABLE = "public, max-age=31536000, immutable"


async def serve_blob(request: web.Request) -> web.StreamResponse:
    """Serve a linked blob's bytes to the CDN."""
    if "%" in request.raw_path:
        raise OciError(ErrorCode.NAME_INVALID, "percent-encoded characters are not allowed")
    repository = parse_repository_name(request.match_info["name"])
    digest, size = await linked_size(request, repository)
    return await send_blob(request, digest, size, PUBLIC_IMMUTABLE)
