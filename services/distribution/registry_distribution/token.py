"""`GET /token`: the Docker token flow's token endpoint."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def issue_token(request: web.Request) -> web.StreamResponse:
    """Grant what the authorizer allows of the requested scopes, as a signed JWT."""
    raise OciError(ErrorCode.UNSUPPORTED)
