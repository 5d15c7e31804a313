"""Application factory of the distribution service (`/v2/`)."""

from __future__ import annotations

import json

from aiohttp import web

from registry_common.errors import RegistryError
from registry_common.http import create_base_app, is_unavailable
from registry_common.oci.errors import ErrorCode
from registry_common.settings import Settings
from registry_distribution.access import access_middlewares, configure_access
from registry_distribution.cdn import configure_cdn
from registry_distribution.errors import RETRY_AFTER_SECONDS, OciError, oci_error
from registry_distribution.routes import add_routes

OCI_ERROR_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def render_oci_error(request: web.Request, exc: BaseException) -> web.StreamResponse | None:
    """Answer OciError, domain errors (through the table of errors.py) and an unreachable
    PostgreSQL with the OCI error body."""
    if isinstance(exc, web.HTTPException):
        if exc.status in (404, 405) and request.path.startswith("/v2/"):
            code = ErrorCode.UNSUPPORTED if exc.status == 405 else ErrorCode.NAME_UNKNOWN
            exc = OciError(code, status=exc.status)
        else:
            return None
    if isinstance(exc, RegistryError):
        exc = oci_error(exc)
    elif is_unavailable(exc):
        exc = OciError(ErrorCode.UNAVAILABLE, headers={"Retry-After": RETRY_AFTER_SECONDS})
    if not isinstance(exc, OciError):
        return None
    body = b"" if request.method == "HEAD" else json.dumps(exc.body()).encode()
    return web.Response(status=exc.status, body=body, headers={**OCI_ERROR_HEADERS, **exc.headers})


def create_app(settings: Settings) -> web.Application:
    """Build the distribution application; resources open when it starts."""
    app = create_base_app(
        settings,
        "distribution",
        render_error=render_oci_error,
        middlewares=access_middlewares(),
        client_max_size=4 * 1024**2,
    )
    configure_access(app)
    configure_cdn(app)
    add_routes(app)
    return app
