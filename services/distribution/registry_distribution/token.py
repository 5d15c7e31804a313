"""`/token`: the token endpoint of the Docker token flow.

`GET /token?service=...&scope=repository:<name>:pull,push` with optional Basic credentials is
what docker, skopeo and podman call after the `/v2/` challenge; `POST /token` is the OAuth2
form (`grant_type=password`) containerd tries first when it has a username and password.

Credentials, when sent, must be valid (401 otherwise; checked with the authorizer's
`identify`, so a valid user asking for someone else's repository still gets a token, just
without that grant). For each requested repository the authorizer is asked about its project:
`push` needs `registry.push`, `pull` needs `registry.pull` or `registry.push` (a pusher reads
too, as on `/v2/`). Only what is allowed goes into the token; anonymous callers get what the
project grants `allUsers`. Scopes of other types, unknown actions and invalid names are left
out, not errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp
from aiohttp import hdrs, web

from registry_common.auth import AUTHORIZER
from registry_common.auth.tokens import AccessEntry, IssuedToken
from registry_common.http import SETTINGS
from registry_common.oci.errors import ErrorCode
from registry_common.oci.names import RepositoryName, is_repository_name
from registry_common.settings import AuthMode
from registry_distribution.access import (
    REGISTRY_TOKENS,
    Action,
    project_access,
    service_name,
    token_realm,
)
from registry_distribution.errors import OciError

# A token names a handful of repositories (a push with a cross-repository mount names two),
# in one or two projects: bound the Deploys API calls one request can cause (at most two per
# project, one for an anonymous caller), whatever it names.
MAX_REPOSITORIES = 32
MAX_PROJECTS = 4
# Requested action -> what it needs here; `delete` and `*` are other registries' spellings.
ACTIONS: dict[str, frozenset[Action]] = {
    "pull": frozenset({Action.PULL}),
    "push": frozenset({Action.PUSH}),
    "delete": frozenset({Action.PUSH}),
    "*": frozenset({Action.PULL, Action.PUSH}),
}
NO_STORE = {"Cache-Control": "no-store"}
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class InvalidCredentials(Exception):
    """The credentials sent to the token endpoint are not valid."""


def parse_scopes(values: Iterable[str]) -> dict[RepositoryName, set[Action]]:
    """The repositories and actions asked for by `scope` values (each may hold several
    space-separated scopes, as the OAuth2 form sends them)."""
    requested: dict[RepositoryName, set[Action]] = {}
    for value in values:
        for scope in value.split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not is_repository_name(name):
                continue
            wanted: set[Action] = set()
            for action in actions.split(","):
                wanted.update(ACTIONS.get(action, ()))
            if wanted:
                requested.setdefault(RepositoryName(name), set()).update(wanted)
    if len(requested) > MAX_REPOSITORIES:
        raise OciError(
            ErrorCode.UNSUPPORTED,
            f"at most {MAX_REPOSITORIES} repositories per token",
            status=400,
        )
    projects = {repository.project for repository in requested}
    if len(projects) > MAX_PROJECTS:
        raise OciError(
            ErrorCode.UNSUPPORTED,
            f"at most {MAX_PROJECTS} projects per token, not {len(projects)}",
            status=400,
        )
    return requested


async def grant_token(
    request: web.Request, authorization: str | None, scopes: Iterable[str]
) -> tuple[IssuedToken, list[AccessEntry]]:
    """Sign a token with what the caller may do of `scopes`; InvalidCredentials, OciError or
    AuthUnavailable."""
    requested = parse_scopes(scopes)
    authorizer = request.app[AUTHORIZER]
    wanted_by_project: dict[str, set[Action]] = {}
    for repository, actions in requested.items():
        wanted_by_project.setdefault(repository.project, set()).update(actions)
    subject = ""
    if authorization is not None:
        account = await authorizer.identify(authorization)
        if account is None:
            raise InvalidCredentials
        subject = account
    projects = list(wanted_by_project)
    answers = await asyncio.gather(
        *(
            project_access(
                authorizer, authorization, project, frozenset(wanted_by_project[project])
            )
            for project in projects
        )
    )
    allowed = dict(zip(projects, answers, strict=True))
    access: list[AccessEntry] = []
    for repository in sorted(requested, key=lambda name: name.full):
        actions = requested[repository] & allowed[repository.project].actions
        if actions:
            access.append(
                {"type": "repository", "name": repository.full, "actions": sorted(actions)}
            )
    project_ids = {
        project: answer.project_id
        for project, answer in allowed.items()
        if answer.actions and answer.project_id
    }
    issued = request.app[REGISTRY_TOKENS].issue(subject, service_name(request), access, project_ids)
    return issued, access


def _require_auth_enabled(request: web.Request) -> None:
    if request.app[SETTINGS].auth_mode is AuthMode.NONE:
        raise OciError(ErrorCode.UNSUPPORTED, "authentication is disabled here", status=404)


def _rfc3339(issued: IssuedToken) -> str:
    return issued.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _basic_challenge(request: web.Request) -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{token_realm(request)}"'}


async def issue_token(request: web.Request) -> web.StreamResponse:
    """`GET /token`: grant what the authorizer allows of the requested scopes, as a JWT."""
    _require_auth_enabled(request)
    authorization = request.headers.get(hdrs.AUTHORIZATION) or None
    try:
        issued, _ = await grant_token(request, authorization, request.query.getall("scope", []))
    except InvalidCredentials:
        raise OciError(
            ErrorCode.UNAUTHORIZED,
            "invalid username or password",
            headers=_basic_challenge(request),
        ) from None
    body = {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": _rfc3339(issued),
    }
    return web.json_response(body, headers=NO_STORE)


def _oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": error, "error_description": description}
    return web.json_response(body, status=status, headers={**NO_STORE, **(headers or {})})


async def issue_oauth_token(request: web.Request) -> web.StreamResponse:
    """`POST /token`: the OAuth2 password grant (RFC 6749 4.3) over the same rules."""
    _require_auth_enabled(request)
    if request.content_type != FORM_CONTENT_TYPE:
        return _oauth_error(400, "invalid_request", f"expected {FORM_CONTENT_TYPE}")
    form = await request.post()
    if form.get("grant_type") != "password":
        # No refresh tokens are ever issued, so `refresh_token` is not supported either.
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=password")
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return _oauth_error(400, "invalid_request", "username and password are required")
    try:
        authorization = aiohttp.encode_basic_auth(username, password)
    except ValueError:
        return _oauth_error(400, "invalid_request", "invalid username")
    scopes = [scope for scope in form.getall("scope", []) if isinstance(scope, str)]
    try:
        issued, access = await grant_token(request, authorization, scopes)
    except InvalidCredentials:
        return _oauth_error(
            401, "invalid_grant", "invalid username or password", _basic_challenge(request)
        )
    granted = " ".join(
        f"repository:{entry['name']}:{','.join(entry['actions'])}" for entry in access
    )
    body = {
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": _rfc3339(issued),
        "scope": granted,
    }
    return web.json_response(body, headers=NO_STORE)
