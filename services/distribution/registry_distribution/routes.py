"""The URL surface of the distribution service, in one table."""

from __future__ import annotations

from aiohttp import web

from registry_distribution import base


def add_routes(app: web.Application) -> None:
    """Register every route of the service."""
    app.router.add_get("/v2/", base.ping)
