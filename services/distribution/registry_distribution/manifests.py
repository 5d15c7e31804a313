"""Manifests: `PUT`, `GET`, `HEAD` and `DELETE /v2/<name>/manifests/<tag-or-digest>`."""

from __future__ import annotations

from aiohttp import web

from registry_common.oci.errors import ErrorCode, OciError


async def get_manifest(request: web.Request) -> web.StreamResponse:
    """Serve a manifest's exact bytes by tag or digest."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def put_manifest(request: web.Request) -> web.StreamResponse:
    """Validate and store a manifest, and tag it when the reference is a tag."""
    raise OciError(ErrorCode.UNSUPPORTED)


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    """Delete a manifest by digest, or a tag."""
    raise OciError(ErrorCode.UNSUPPORTED)
