"""Application factory of the jobs service (`/internal/*` triggers)."""

from __future__ import annotations

from aiohttp import web

from registry_common.http import create_base_app, is_unavailable
from registry_common.settings import Settings


def render_job_error(request: web.Request, exc: BaseException) -> web.StreamResponse | None:
    """Answer errors as JSON; an unreachable database or storage is a 503."""
    if is_unavailable(exc):
        return web.json_response(
            {"error": "service unavailable"}, status=503, headers={"Retry-After": "5"}
        )
    return None


def create_app(settings: Settings) -> web.Application:
    """Build the jobs application; resources open when it starts."""
    return create_base_app(settings, "jobs", render_error=render_job_error)
