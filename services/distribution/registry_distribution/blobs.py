"""Blobs: `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>`."""

from __future__ import annotations

from aiohttp import web

from registry_common import metrics
from registry_common.http import DB_POOL, SETTINGS, client_address
from registry_common.oci.digests import parse_digest
from registry_common.registry import blob_store
from registry_distribution.access import grant_of, repository_of
from registry_distribution.blob_sending import send_blob
from registry_distribution.cdn import signed_blob_url

# Digest-addressed bytes never change.
IMMUTABLE = "max-age=31536000, immutable"


def _is_internal_client(request: web.Request) -> bool:
    """A client inside the platform's network (by the trusted-proxy rule), served directly."""
    address = client_address(request)
    return address is not None and (
        address.is_private or address.is_loopback or address.is_link_local
    )


async def get_blob(request: web.Request) -> web.StreamResponse:
    """Serve a linked blob, whole or a byte range (`GET` and `HEAD`), or redirect an external
    client's GET to the CDN."""
    repository = repository_of(request)
    digest = str(parse_digest(request.match_info["digest"]))
    size = await blob_store.linked_blob_size(
        request.app[DB_POOL], repository, digest, request.app[SETTINGS].gc_grace_period
    )
    project_id = grant_of(request).project_id
    cdn = request.app[SETTINGS].cdn_domain
    if cdn and request.method == "GET" and not _is_internal_client(request):
        # Billed here: the CDN serves the bytes, and only here is the project known.
        metrics.DOWNLOAD_COUNT.labels(project_id).inc()
        metrics.EGRESS_BYTES.labels(project_id).inc(size)
        raise web.HTTPTemporaryRedirect(
            signed_blob_url(request.app, repository, digest),
            headers={"Docker-Content-Digest": digest, "Cache-Control": "no-store"},
        )

    def count_download(sent: int) -> None:
        metrics.DOWNLOAD_COUNT.labels(project_id).inc()
        metrics.EGRESS_BYTES.labels(project_id).inc(sent)

    return await send_blob(request, digest, size, IMMUTABLE, count_download)


async def delete_blob(request: web.Request) -> web.StreamResponse:
    """Unlink a blob from the repository (202); its bytes go later through GC."""
    digest = str(parse_digest(request.match_info["digest"]))
    await blob_store.unlink_blob(request.app[DB_POOL], repository_of(request), digest)
    return web.Response(status=202)
