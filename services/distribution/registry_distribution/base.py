"""`GET /v2/`: the API version check clients use to discover authentication."""

from __future__ import annotations

from aiohttp import web

from registry_common.http import SETTINGS
from registry_common.settings import AuthMode
from registry_distribution.access import is_authenticated, unauthorized

API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


async def ping(request: web.Request) -> web.Response:
    """200 for an authenticated caller (or AUTH_MODE=none), else the Bearer challenge that
    sends the client to `/token`."""
    settings = request.app[SETTINGS]
    if settings.auth_mode is AuthMode.NONE or await is_authenticated(request):
        return web.json_response({}, headers=API_VERSION_HEADERS)
    raise unauthorized(request, headers=API_VERSION_HEADERS)
