"""Application factory of the management service (`/api/`)."""

from __future__ import annotations

import structlog
from aiohttp import web

from registry_common.auth import authorizer_ctx, create_authorizer
from registry_common.errors import RegistryError, Unavailable
from registry_common.http import create_base_app, is_unavailable
from registry_common.settings import AuthMode, Settings
from registry_management.api import background_tasks_ctx
from registry_management.errors import api_error
from registry_management.models import INTERNAL_ERROR, ApiError
from registry_management.routes import add_routes

log = structlog.get_logger("registry.management")


def _error(error: ApiError) -> web.Response:
    return web.json_response(error.reply(), status=error.status, headers=error.headers)


def render_api_error(request: web.Request, exc: BaseException) -> web.StreamResponse | None:
    """Answer every error with the `{"ok": false, "error": {"message": ...}}` envelope:
    ApiError as it says, domain errors through the table of errors.py, HTTP errors (405, 404,
    413) with their reason, an unreachable PostgreSQL or storage with 503, and anything else
    with 500 `internal error` (the traceback goes to the log only)."""
    if isinstance(exc, ApiError):
        return _error(exc)
    if isinstance(exc, RegistryError):
        error = api_error(exc)
        if error.status == 500:
            log.error("request_failed", error_type=type(exc).__name__, exc_info=exc)
        return _error(error)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(ApiError((exc.reason or "error").lower(), status=exc.status, headers=headers))
    if is_unavailable(exc):
        return _error(api_error(Unavailable()))
    log.error("request_failed", error_type=type(exc).__name__, exc_info=exc)
    return _error(ApiError(INTERNAL_ERROR, status=500))


def create_app(settings: Settings) -> web.Application:
    """Build the management application; resources open when it starts."""
    app = create_base_app(settings, "management", render_error=render_api_error)
    if settings.auth_mode is not AuthMode.NONE:
        create_authorizer(settings)  # ConfigError now, rather than when the app starts
        app.cleanup_ctx.append(authorizer_ctx)
    # After the database and storage contexts, so it is torn down (waits for deletes) first.
    app.cleanup_ctx.append(background_tasks_ctx)
    add_routes(app)
    return app
