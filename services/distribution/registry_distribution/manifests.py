"""Manifests: `PUT`, `GET`, `HEAD` and `DELETE /v2/<name>/manifests/<tag-or-digest>`."""

from __future__ import annotations

import asyncio

from aiohttp import web

from registry_common.errors import DigestMismatch, ManifestNotFound, ReferenceInvalid
from registry_common.http import DB_POOL
from registry_common.oci.manifests import (
    MAX_MANIFEST_SIZE,
    ManifestReference,
    manifest_too_large,
    parse_manifest,
    parse_reference,
)
from registry_common.registry import manifest_store, tag_store
from registry_distribution.access import repository_of

# Digest-addressed content never changes; a tag may move at any time, so clients revalidate
# (the ETag makes that a 304).
IMMUTABLE_CACHE = "max-age=31536000, immutable"
TAG_CACHE = "no-cache"
# Parsing a body larger than this leaves the event loop for a thread.
_PARSE_INLINE_LIMIT = 256 * 1024


async def read_manifest_body(request: web.Request) -> bytes:
    """The request body, refused with 413 beyond MAX_MANIFEST_SIZE without reading it all."""
    declared = request.content_length
    if declared is not None and declared > MAX_MANIFEST_SIZE:
        raise manifest_too_large(declared)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_MANIFEST_SIZE:
            raise manifest_too_large()
    return bytes(body)


def stored_reference(value: str) -> ManifestReference:
    """The reference of a GET, HEAD or DELETE: one that is neither a tag nor a digest names no
    manifest, so it is unknown (404), as clients and the conformance suite expect; a malformed
    digest is still DIGEST_INVALID."""
    try:
        return parse_reference(value)
    except ReferenceInvalid:
        raise ManifestNotFound from None


async def get_manifest(request: web.Request) -> web.StreamResponse:
    """Serve a manifest's exact bytes by tag or digest (HEAD: only its headers)."""
    repository = repository_of(request)
    reference = stored_reference(request.match_info["reference"])
    head = request.method == "HEAD"
    row = await manifest_store.find_manifest(
        request.app[DB_POOL], repository, reference, with_content=not head
    )
    etag = f'"{row.digest}"'
    headers = {
        "Content-Type": row.media_type,
        "Docker-Content-Digest": row.digest,
        "ETag": etag,
        "Cache-Control": IMMUTABLE_CACHE if reference.digest else TAG_CACHE,
    }
    if etag in request.headers.getall("If-None-Match", []):
        return web.Response(status=304, headers=headers)
    if head:
        return web.Response(headers={**headers, "Content-Length": str(row.size)})
    return web.Response(body=row.content, headers=headers)


async def put_manifest(request: web.Request) -> web.StreamResponse:
    """Validate and store a manifest, and tag it when the reference is a tag."""
    repository = repository_of(request)
    reference = parse_reference(request.match_info["reference"])
    body = await read_manifest_body(request)
    algorithm = reference.digest.split(":", 1)[0] if reference.digest else "sha256"
    content_type = request.headers.get("Content-Type")
    if len(body) > _PARSE_INLINE_LIMIT:
        manifest = await asyncio.to_thread(parse_manifest, body, content_type, algorithm=algorithm)
    else:
        manifest = parse_manifest(body, content_type, algorithm=algorithm)
    if reference.digest is not None and manifest.digest != reference.digest:
        raise DigestMismatch(
            "manifest digest does not match the digest in the URL",
            digest=reference.digest,
            computed=manifest.digest,
        )
    await manifest_store.store_manifest(
        request.app[DB_POOL], repository, manifest, body, tag=reference.tag
    )
    headers = {
        "Location": f"/v2/{repository.full}/manifests/{manifest.digest}",
        "Docker-Content-Digest": manifest.digest,
    }
    if manifest.subject is not None:
        headers["OCI-Subject"] = manifest.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    """Delete a manifest by digest (with its tags), or only a tag."""
    repository = repository_of(request)
    reference = stored_reference(request.match_info["reference"])
    pool = request.app[DB_POOL]
    if reference.tag is not None:
        await tag_store.delete_tag(pool, repository, reference.tag)
    else:
        assert reference.digest is not None
        await manifest_store.delete_manifest(pool, repository, reference.digest)
    return web.Response(status=202)
