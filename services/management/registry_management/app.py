"""Application factory of the management service (`/api/`)."""

from __future__ import annotations

from aiohttp import web

from registry_common.http import create_base_app, is_unavailable
from registry_common.settings import Settings


def render_api_error(request: web.Request, exc: BaseException) -> web.StreamResponse | None:
    """Answer errors with the `{"ok": false, "error": {"message": ...}}` envelope."""
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        message = exc.reason.lower()
        return web.json_response({"ok": False, "error": {"message": message}}, status=exc.status)
    if is_unavailable(exc):
        return web.json_response(
            {"ok": False, "error": {"message": "service unavailable"}},
            status=503,
            headers={"Retry-After": "5"},
        )
    return None


def create_app(settings: Settings) -> web.Application:
    """Build the management application; resources open when it starts."""
    return create_base_app(settings, "management", render_error=render_api_error)
