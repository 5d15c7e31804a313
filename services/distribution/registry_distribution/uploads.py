"""Blob uploads: `POST`, `PATCH`, `PUT`, `GET` and `DELETE /v2/<name>/blobs/uploads/...`."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def start_upload(request: web.Request) -> web.StreamResponse:
    """Open an upload session, or upload monolithically, or mount from another repository."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def append_chunk(request: web.Request) -> web.StreamResponse:
    """Append a chunk to an upload session."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def finish_upload(request: web.Request) -> web.StreamResponse:
    """Finish an upload with its digest (and an optional last chunk)."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def upload_status(request: web.Request) -> web.StreamResponse:
    """Report how much of an upload was received."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    """Abandon an upload session and its data."""
    raise OciError(ErrorCode.UNSUPPORTED)
