"""`GET /v2/<name>/tags/list`."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from registry_common.http import DB_POOL
from registry_common.oci.names import is_tag
from registry_common.registry import tag_store
from registry_distribution.access import repository_of
from registry_distribution.pages import invalid_parameter, page_size


async def list_tags(request: web.Request) -> web.StreamResponse:
    """List tags in lexical order, paginated with `n` and `last`."""
    repository = repository_of(request)
    limit = page_size(request.query.get("n"))
    last = request.query.get("last")
    if last is not None and not is_tag(last):
        raise invalid_parameter("last must be a tag", last=last[:200])
    page = await tag_store.list_tags(request.app[DB_POOL], repository, limit=limit, after=last)
    headers = {}
    if page.next_after is not None:
        query = urlencode({"n": limit, "last": page.next_after})
        headers["Link"] = f'</v2/{repository.full}/tags/list?{query}>; rel="next"'
    return web.json_response({"name": repository.full, "tags": page.tags}, headers=headers)
