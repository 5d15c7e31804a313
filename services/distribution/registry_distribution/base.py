"""`GET /v2/`: the API version check clients use to discover authentication."""

from __future__ import annotations

from aiohttp import web

from registry_common.http import SETTINGS
from registry_common.oci.errors import ErrorCode, OciError
from registry_common.settings import AuthMode

API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


async def ping(request: web.Request) -> web.Response:
    """200 when the caller may use the API, else the authentication challenge."""
    settings = request.app[SETTINGS]
    if settings.auth_mode is AuthMode.NONE:
        return web.json_response({}, headers=API_VERSION_HEADERS)
    raise OciError(ErrorCode.UNAUTHORIZED, headers=API_VERSION_HEADERS)
