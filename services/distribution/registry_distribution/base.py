"""`GET /v2/`, the API version check clients use to discover authentication, and
`GET /v2/_catalog`, which this registry does not offer."""

from __future__ import annotations

from aiohttp import web

from registry_common.http import SETTINGS
from registry_common.oci.errors import ErrorCode
from registry_common.settings import AuthMode
from registry_distribution.access import is_authenticated, unauthorized
from registry_distribution.errors import OciError

API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


async def ping(request: web.Request) -> web.Response:
    """200 for an authenticated caller (or AUTH_MODE=none), else the Bearer challenge that
    sends the client to `/token`."""
    settings = request.app[SETTINGS]
    if settings.auth_mode is AuthMode.NONE or await is_authenticated(request):
        return web.json_response({}, headers=API_VERSION_HEADERS)
    raise unauthorized(request, headers=API_VERSION_HEADERS)


async def catalog(_: web.Request) -> web.Response:
    """404 UNSUPPORTED: the catalog would list every tenant's repositories; the management
    API lists a project's repositories to those allowed to see them."""
    raise OciError(
        ErrorCode.UNSUPPORTED,
        "the catalog is not offered; list a project's repositories with the management API",
        status=404,
    )
