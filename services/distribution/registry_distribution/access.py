"""Who may do what on `/v2/<name>/...`: one middleware decides before any handler runs.

It validates the repository name, maps the method to an action (GET and HEAD pull, anything
else pushes), checks the caller, and leaves a Grant on the request for the handler (billing
metrics use its project id).

How the caller is checked (README.md, "Authentication"):

- `Bearer <registry token>`: verified here, with no Deploys API call; the token must grant the
  action on exactly this repository, else 401 with `error="insufficient_scope"`;
- any other `Authorization` (Basic, or a Deploys API bearer token): asked of the authorizer,
  `registry.push` first and, for a pull, `registry.pull` when push is denied;
- no `Authorization`: asked of the authorizer as anonymous (projects open to `allUsers`).

Not authenticated is 401 UNAUTHORIZED with the Bearer challenge (carrying the scope needed);
authenticated but not allowed is 403 DENIED; an unreachable authorizer is 503 UNAVAILABLE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from registry_common.auth import (
    AUTHORIZER,
    Permission,
    authorizer_ctx,
    create_authorizer,
)
from registry_common.auth.base import Authorizer
from registry_common.auth.tokens import RegistryTokens, TokenClaims
from registry_common.http import SETTINGS, Handler, set_request_project
from registry_common.oci.errors import ErrorCode
from registry_common.oci.names import RepositoryName, parse_repository_name
from registry_common.settings import AuthMode
from registry_distribution.errors import OciError

REGISTRY_TOKENS = web.AppKey("registry_tokens", RegistryTokens)
# What a Host header may look like before it goes into the challenge (host[:port], or IPv6).
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"


PERMISSION_OF = {Action.PULL: Permission.PULL, Action.PUSH: Permission.PUSH}


class AccessRefused(OciError):
    """401 (who are you?) or 403 (not for you) for a repository request."""


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    """What the authorizer allows a caller in one project: `actions`, the project's id when
    known, and whether the credentials were recognised (401 versus 403 when refused)."""

    actions: frozenset[Action]
    project_id: str | None
    authenticated: bool


async def project_access(
    authorizer: Authorizer, authorization: str | None, project: str, wanted: frozenset[Action]
) -> ProjectAccess:
    """The actions among `wanted` that the holder of `authorization` may do in `project`.

    Push implies pull, so push is asked first whenever it could answer: for a push, and for a
    pull with credentials (one cached answer then serves a pushing client's reads too, as the
    seed did); pull is asked only when push was not granted. Anonymous callers can only pull,
    so push is never asked for them, and invalid credentials are not asked about again.
    Raises AuthUnavailable.
    """
    authenticated = False
    if authorization is not None:
        decision = await authorizer.authorize(authorization, project, Permission.PUSH)
        if decision.allowed:
            return ProjectAccess(wanted, decision.project_id, True)
        if authorization is not None and not decision.authenticated:
            return ProjectAccess(frozenset(), None, False)
        authenticated = decision.authenticated
    if Action.PULL in wanted:
        decision = await authorizer.authorize(authorization, project, Permission.PULL)
        if decision.allowed:
            return ProjectAccess(frozenset({Action.PULL}), decision.project_id, True)
        authenticated = authenticated or decision.authenticated
    return ProjectAccess(frozenset(), None, authenticated)


@dataclass(frozen=True, slots=True)
class Grant:
    """What the middleware allowed for this request."""

    repository: RepositoryName
    action: Action
    project_id: str


GRANT = web.RequestKey("registry_grant", Grant)


def grant_of(request: web.Request) -> Grant:
    """The Grant the access middleware left on a repository request."""
    return request[GRANT]


def repository_of(request: web.Request) -> RepositoryName:
    """The validated repository name of a `/v2/<name>/...` request."""
    return grant_of(request).repository


def action_for(method: str) -> Action:
    """GET and HEAD read; every other method writes."""
    return Action.PULL if method in ("GET", "HEAD") else Action.PUSH


def configure_access(app: web.Application) -> None:
    """Check the auth settings (ConfigError at start) and set up tokens and the authorizer."""
    settings = app[SETTINGS]
    if settings.auth_mode is AuthMode.NONE:
        return
    create_authorizer(settings)  # validates AUTH_USERS now rather than when the app starts
    app[REGISTRY_TOKENS] = RegistryTokens.from_settings(settings)
    app.cleanup_ctx.append(authorizer_ctx)


def _request_host(request: web.Request) -> str:
    host = request.host
    return host if _HOST.match(host) else "localhost"


def service_name(request: web.Request) -> str:
    """The `service` of the challenge and the audience of tokens: PUBLIC_URL's host, else the
    host the client used."""
    public_url = request.app[SETTINGS].public_url
    if public_url:
        return urlsplit(public_url).netloc
    return _request_host(request)


def token_realm(request: web.Request) -> str:
    """The token endpoint's URL for the challenge."""
    public_url = request.app[SETTINGS].public_url
    if public_url:
        return f"{public_url}/token"
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    return f"{scheme}://{_request_host(request)}/token"


def scope_for(repository: RepositoryName, action: Action) -> str:
    """The token scope a client needs for `action` (a push also reads, so it asks both)."""
    actions = "pull" if action is Action.PULL else "pull,push"
    return f"repository:{repository.full}:{actions}"


def bearer_challenge(
    request: web.Request, scope: str | None = None, error: str | None = None
) -> str:
    """The `WWW-Authenticate` value sending the client to the token endpoint."""
    parts = [f'realm="{token_realm(request)}"', f'service="{service_name(request)}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def unauthorized(
    request: web.Request,
    scope: str | None = None,
    error: str | None = None,
    *,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> OciError:
    """401 UNAUTHORIZED with the Bearer challenge."""
    challenge = {"WWW-Authenticate": bearer_challenge(request, scope, error)}
    return AccessRefused(ErrorCode.UNAUTHORIZED, message, headers={**(headers or {}), **challenge})


def _authorization_of(request: web.Request) -> str | None:
    return request.headers.get(hdrs.AUTHORIZATION) or None


def _registry_token(request: web.Request, authorization: str | None) -> str | None:
    """The token of `Bearer <token>` when it is one of ours, else None."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value if request.app[REGISTRY_TOKENS].is_registry_token(value) else None


def _verified_claims(request: web.Request, token: str) -> TokenClaims | None:
    return request.app[REGISTRY_TOKENS].verify(token, service_name(request))


async def is_authenticated(request: web.Request) -> bool:
    """True for a valid registry token or valid credentials (AuthUnavailable when
    unknowable)."""
    authorization = _authorization_of(request)
    if authorization is None:
        return False
    token = _registry_token(request, authorization)
    if token is not None:
        return _verified_claims(request, token) is not None
    return await request.app[AUTHORIZER].identify(authorization) is not None


async def authorize(request: web.Request, repository: RepositoryName, action: Action) -> Grant:
    """Decide whether the caller may do `action` on `repository`; AccessRefused (401, 403) or
    AuthUnavailable if not."""
    settings = request.app[SETTINGS]
    if settings.auth_mode is AuthMode.NONE:
        return Grant(repository, action, repository.project)
    scope = scope_for(repository, action)
    authorization = _authorization_of(request)
    token = _registry_token(request, authorization)
    if token is not None:
        claims = _verified_claims(request, token)
        if claims is None:
            raise unauthorized(request, scope, "invalid_token", message="invalid or expired token")
        if not claims.allows(repository.full, action.value):
            raise unauthorized(
                request,
                scope,
                "insufficient_scope",
                message="the token does not grant this action on this repository",
            )
        project_id = claims.project_id(repository.project) or repository.project
        return Grant(repository, action, project_id)
    return await _ask_authorizer(request, authorization, repository, action, scope)


async def _ask_authorizer(
    request: web.Request,
    authorization: str | None,
    repository: RepositoryName,
    action: Action,
    scope: str,
) -> Grant:
    access = await project_access(
        request.app[AUTHORIZER], authorization, repository.project, frozenset({action})
    )
    if action in access.actions:
        return Grant(repository, action, access.project_id or repository.project)
    if access.authenticated:
        raise AccessRefused(ErrorCode.DENIED)
    raise unauthorized(request, scope)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Validate the name and authorize every request that names a repository."""
    name = request.match_info.get("name")
    if name is not None and request.path.startswith("/v2/"):
        # Names, tags and digests never need percent-encoding; an encoded separator or dot
        # is an attempt to smuggle one past the route patterns.
        if "%" in request.raw_path.split("?", 1)[0]:
            raise OciError(ErrorCode.NAME_INVALID, "percent-encoded characters are not allowed")
        repository = parse_repository_name(name)
        set_request_project(request, repository.project)
        grant = await authorize(request, repository, action_for(request.method))
        request[GRANT] = grant
    return await handler(request)


def access_middlewares() -> tuple[Any, ...]:
    """The middlewares of this module, in order."""
    return (access_middleware,)
