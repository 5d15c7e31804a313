"""Who may do what: the authorizer interface and its Deploys API and static implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from registry_common.auth.base import Authorizer, AuthUnavailable, Decision, Permission
from registry_common.auth.deploys import DeploysAuthorizer
from registry_common.auth.static import StaticAuthorizer
from registry_common.http import SETTINGS
from registry_common.settings import AuthMode, ConfigError, Settings

__all__ = [
    "AUTHORIZER",
    "AuthUnavailable",
    "Authorizer",
    "Decision",
    "Permission",
    "authorizer_ctx",
    "create_authorizer",
]

AUTHORIZER = web.AppKey("authorizer", Authorizer)


def create_authorizer(settings: Settings) -> Authorizer | None:
    """The authorizer AUTH_MODE selects (None for `none`); ConfigError when its settings are
    missing or malformed. Opens no connection: safe to call before the event loop runs."""
    if settings.auth_mode is AuthMode.NONE:
        return None
    if settings.auth_mode is AuthMode.STATIC:
        if not settings.auth_users:
            raise ConfigError("AUTH_USERS", "required when AUTH_MODE=static (user:password:*)")
        return StaticAuthorizer.from_spec(settings.auth_users)
    if settings.auth_mode is AuthMode.DEPLOYS:
        return DeploysAuthorizer(settings.auth_api_url, cache_ttl=settings.auth_cache_ttl)
    raise ConfigError("AUTH_MODE", f"unknown mode {settings.auth_mode!r}")


async def authorizer_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the app's authorizer (under AUTHORIZER, unless AUTH_MODE=none), closed at
    the end."""
    authorizer = create_authorizer(app[SETTINGS])
    if authorizer is None:
        yield
        return
    app[AUTHORIZER] = authorizer
    try:
        yield
    finally:
        await authorizer.close()
