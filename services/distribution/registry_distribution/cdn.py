"""`/_cdn/<name>/blobs/<digest>`: the unauthenticated origin behind CDN_DOMAIN."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def serve_blob(request: web.Request) -> web.StreamResponse:
    """Serve a linked blob's bytes to the CDN."""
    raise OciError(ErrorCode.UNSUPPORTED)
