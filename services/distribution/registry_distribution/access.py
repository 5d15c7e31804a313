"""Who may do what on `/v2/<name>/...`: one middleware decides before any handler runs.

It validates the repository name, maps the method to an action (GET and HEAD pull, anything
else pushes), asks the authorizer, and leaves a Grant on the request for the handler (billing
metrics use its project id).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

from registry_common.http import SETTINGS, Handler, set_request_project
from registry_common.oci.errors import ErrorCode, OciError
from registry_common.oci.names import RepositoryName, parse_repository_name
from registry_common.settings import AuthMode


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"


@dataclass(frozen=True, slots=True)
class Grant:
    """What the middleware allowed for this request."""

    repository: RepositoryName
    action: Action
    project_id: str


GRANT = "registry.grant"


def grant_of(request: web.Request) -> Grant:
    """The Grant the access middleware left on a repository request."""
    grant: Grant = request[GRANT]
    return grant


def repository_of(request: web.Request) -> RepositoryName:
    """The validated repository name of a `/v2/<name>/...` request."""
    return grant_of(request).repository


def action_for(method: str) -> Action:
    """GET and HEAD read; every other method writes."""
    return Action.PULL if method in ("GET", "HEAD") else Action.PUSH


async def authorize(request: web.Request, repository: RepositoryName, action: Action) -> Grant:
    """Decide whether the caller may do `action` on `repository`; OciError 401/403 if not."""
    settings = request.app[SETTINGS]
    if settings.auth_mode is AuthMode.NONE:
        return Grant(repository, action, repository.project)
    raise OciError(ErrorCode.UNAUTHORIZED)


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
        grant = await authorize(request, repository, action_for(request.method))
        request[GRANT] = grant
        set_request_project(request, repository.project)
    return await handler(request)


def access_middlewares() -> tuple[Any, ...]:
    """The middlewares of this module, in order."""
    return (access_middleware,)
