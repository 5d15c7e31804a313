"""`GET /v2/<name>/referrers/<digest>` (OCI 1.1)."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def list_referrers(request: web.Request) -> web.StreamResponse:
    """An image index of the manifests whose subject is `digest`."""
    raise OciError(ErrorCode.UNSUPPORTED)
