"""`GET /v2/<name>/referrers/<digest>` (OCI 1.1)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from registry_common.http import DB_POOL
from registry_common.oci.digests import parse_digest
from registry_common.oci.media_types import OCI_INDEX, is_media_type
from registry_common.registry import manifest_store
from registry_distribution.access import repository_of
from registry_distribution.pages import invalid_parameter, page_size


async def list_referrers(request: web.Request) -> web.StreamResponse:
    """An image index of the manifests whose subject is `digest`; always 200 for a well-formed
    digest, even when the repository or the subject does not exist."""
    repository = repository_of(request)
    subject = str(parse_digest(request.match_info["digest"]))
    limit = page_size(request.query.get("n"))
    last = request.query.get("last")
    after = str(parse_digest(last)) if last is not None else None
    artifact_type = request.query.get("artifactType")
    if artifact_type is not None and not is_media_type(artifact_type):
        raise invalid_parameter(
            "artifactType must be a media type", artifactType=artifact_type[:300]
        )
    page = await manifest_store.list_referrers(
        request.app[DB_POOL],
        repository,
        subject,
        artifact_type=artifact_type,
        limit=limit,
        after=after,
    )
    headers = {"Content-Type": OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if page.next_after is not None:
        parameters = {"n": str(limit), "last": page.next_after}
        if artifact_type is not None:
            parameters["artifactType"] = artifact_type
        query = urlencode(parameters, safe=":/")
        link = f"/v2/{repository.full}/referrers/{subject}?{query}"
        headers["Link"] = f'<{link}>; rel="next"'
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page.manifests}
    return web.Response(body=json.dumps(index).encode(), headers=headers)
