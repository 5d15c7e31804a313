"""`GET /v2/<name>/tags/list`."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def list_tags(request: web.Request) -> web.StreamResponse:
    """List tags in lexical order, paginated with `n` and `last`."""
    raise OciError(ErrorCode.UNSUPPORTED)
