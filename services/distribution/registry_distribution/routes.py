"""The whole URL surface of the distribution service, in one table.

`{name}` may contain slashes; upload routes come before blob routes so `uploads` is never read
as a digest. The CDN origin exists only with CDN_DOMAIN set (cdn.py); its route under the CDN's
host name comes last, so every other route matches first.
"""

from __future__ import annotations

from aiohttp import web

from registry_common.http import SETTINGS
from registry_distribution import base, blobs, cdn, manifests, referrers, tags, token, uploads

NAME = "{name:.+}"


def add_routes(app: web.Application) -> None:
    """Register every route of the service."""
    router = app.router
    router.add_get("/v2/", base.ping, allow_head=True)
    router.add_get("/v2/_catalog", base.catalog, allow_head=True)
    router.add_get("/token", token.issue_token)
    router.add_post("/token", token.issue_oauth_token)

    router.add_post(f"/v2/{NAME}/blobs/uploads/", uploads.start_upload)
    router.add_patch(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.append_chunk)
    router.add_put(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.finish_upload)
    router.add_get(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_status)
    router.add_delete(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.cancel_upload)

    router.add_get(f"/v2/{NAME}/blobs/{{digest}}", blobs.get_blob, allow_head=True)
    router.add_delete(f"/v2/{NAME}/blobs/{{digest}}", blobs.delete_blob)

    router.add_get(f"/v2/{NAME}/manifests/{{reference}}", manifests.get_manifest, allow_head=True)
    router.add_put(f"/v2/{NAME}/manifests/{{reference}}", manifests.put_manifest)
    router.add_delete(f"/v2/{NAME}/manifests/{{reference}}", manifests.delete_manifest)

    router.add_get(f"/v2/{NAME}/tags/list", tags.list_tags)
    router.add_get(f"/v2/{NAME}/referrers/{{digest}}", referrers.list_referrers)

    if app[SETTINGS].cdn_domain:
        router.add_get(f"/_cdn/{NAME}/blobs/{{digest}}", cdn.serve_blob, allow_head=True)
        router.add_get(f"/{NAME}/blobs/{{digest}}", cdn.serve_blob_on_cdn_host, allow_head=True)
