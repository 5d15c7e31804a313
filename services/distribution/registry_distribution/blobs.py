"""Blobs: `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>`."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def get_blob(request: web.Request) -> web.StreamResponse:
    """Serve a linked blob, whole or a byte range."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def delete_blob(request: web.Request) -> web.StreamResponse:
    """Unlink a blob from the repository; its bytes go later through GC."""
    raise OciError(ErrorCode.UNSUPPORTED)
