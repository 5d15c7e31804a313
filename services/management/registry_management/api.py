"""Handlers of the management API (`POST /api/<method>`, JSON in, JSON out).

Every endpoint goes through `serve`: read the JSON object, validate it with the endpoint's
request model, check the project name, ask the authorizer for the endpoint's permission, then
run the endpoint's operation and wrap its result in the envelope. Operations are thin: they
turn the request into a repository name, call the library, and shape the result model. Errors
are raised as ApiError; the app's error renderer answers them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from aiohttp import hdrs, web
from pydantic import ValidationError

from registry_common.auth import AUTHORIZER, Permission
from registry_common.http import DB_POOL, OBJECT_STORE, SETTINGS, Handler, set_request_project
from registry_common.oci.digests import is_digest
from registry_common.oci.names import RepositoryName, is_project_name, is_repository_name, is_tag
from registry_common.registry import manifest_store, repository_store, tag_store
from registry_common.settings import AuthMode
from registry_management.models import (
    FORBIDDEN,
    MANIFEST_NOT_FOUND,
    REPOSITORY_NOT_FOUND,
    TAG_NOT_FOUND,
    ApiError,
    ApiRequest,
    ApiResult,
    ManifestItem,
    ManifestList,
    ManifestRequest,
    ProjectRequest,
    ProjectStorage,
    RepositoryInfo,
    RepositoryItem,
    RepositoryList,
    RepositoryRequest,
    TagItem,
    TagList,
    TagRequest,
    required,
    success_body,
)

JSON_CONTENT_TYPE = "application/json"

RequestT = TypeVar("RequestT", bound=ApiRequest)
T = TypeVar("T")

# Work that must finish even when its request does not (see run_to_completion).
BACKGROUND_TASKS = web.AppKey("background_tasks", set[asyncio.Task[Any]])

log = structlog.get_logger("registry.management")


@dataclass(frozen=True)
class Endpoint(Generic[RequestT]):
    """One method of the API: its path, models, permission and operation."""

    path: str
    request_model: type[RequestT]
    result_model: type[ApiResult] | None
    permission: Permission
    operation: Callable[[web.Request, RequestT], Awaitable[ApiResult | None]]
    summary: str

    @property
    def name(self) -> str:
        """The method name, `list`, `getTags`, ... (the OpenAPI operationId)."""
        return self.path.rsplit("/", 1)[1]


def serve(endpoint: Endpoint[Any]) -> Handler:
    """The aiohttp handler of `endpoint`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = parse_body(endpoint.request_model, await read_json_object(request))
        if not is_project_name(body.project):
            # No project can have this name, so no one may use it; and it is never logged.
            raise ApiError(FORBIDDEN)
        set_request_project(request, body.project)
        await authorize(request, body.project, endpoint.permission)
        result = await endpoint.operation(request, body)
        return web.json_response(success_body(result))

    return handle


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 415 or 400 ApiError otherwise."""
    if request.content_type != JSON_CONTENT_TYPE:
        raise ApiError("content type must be application/json", status=415)
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError("malformed json", status=400) from None
    if not isinstance(body, dict):
        raise ApiError("request body must be a json object", status=400)
    return body


def parse_body(model: type[RequestT], body: dict[str, Any]) -> RequestT:
    """Validate `body`: the first missing, null or empty field answers `<field> required`;
    a field of another JSON type than string is a malformed request (400)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=True)[0]
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] in ("missing", "string_too_short") or error.get("input") is None:
            raise ApiError(required(field)) from None
        raise ApiError(f"invalid request: {field}: {error['msg'].lower()}", status=400) from None


async def authorize(request: web.Request, project: str, permission: Permission) -> None:
    """Ask the authorizer whether the caller's `Authorization` (any scheme, passed as is) has
    `permission` in `project`; `iam: forbidden` when not. AUTH_MODE=none allows everything."""
    if request.app[SETTINGS].auth_mode is AuthMode.NONE:
        return
    authorization = request.headers.get(hdrs.AUTHORIZATION) or None
    decision = await request.app[AUTHORIZER].authorize(authorization, project, permission)
    if not decision.allowed:
        raise ApiError(FORBIDDEN)


def repository_name(body: RepositoryRequest) -> RepositoryName:
    """`<project>/<repository>`; a name no repository can have is not found."""
    full = f"{body.project}/{body.repository}"
    if not is_repository_name(full):
        raise ApiError(REPOSITORY_NOT_FOUND)
    return RepositoryName(full)


async def run_to_completion(app: web.Application, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` in a task of its own that the request's cancellation (client gone, timeout,
    shutdown) does not reach; the app keeps a reference and waits for it before closing."""
    task = asyncio.ensure_future(work)
    tasks = app[BACKGROUND_TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_orphaned_outcome)
        raise


def _log_orphaned_outcome(task: asyncio.Task[Any]) -> None:
    """Log how work ended whose request was gone (nobody else sees its outcome)."""
    if task.cancelled():
        log.warning("background_work_cancelled")
    elif (error := task.exception()) is not None:
        log.error("background_work_failed", exc_info=error)
    else:
        log.info("background_work_finished_after_request")


async def background_tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: wait for work started by run_to_completion before resources close."""
    tasks: set[asyncio.Task[Any]] = set()
    app[BACKGROUND_TASKS] = tasks
    yield
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


# --- Operations ---


async def list_repositories(request: web.Request, body: ProjectRequest) -> RepositoryList:
    """The project's repositories, by name."""
    entries = await repository_store.list_repositories(request.app[DB_POOL], body.project)
    return RepositoryList(
        items=[
            RepositoryItem(name=entry.name.path, created_at=entry.created_at) for entry in entries
        ]
    )


async def get_repository(request: web.Request, body: RepositoryRequest) -> RepositoryInfo:
    """A repository and the bytes of the blobs it links."""
    name = repository_name(body)
    summary = await repository_store.repository_summary(request.app[DB_POOL], name)
    return RepositoryInfo(name=name.path, size=summary.size, created_at=summary.created_at)


async def get_tags(request: web.Request, body: RepositoryRequest) -> TagList:
    """The repository's tags, newest first."""
    name = repository_name(body)
    entries = await tag_store.tags_newest_first(request.app[DB_POOL], name)
    return TagList(
        name=name.path,
        items=[
            TagItem(tag=entry.tag, digest=entry.digest, created_at=entry.created_at)
            for entry in entries
        ],
    )


async def get_manifests(request: web.Request, body: RepositoryRequest) -> ManifestList:
    """The repository's manifests, newest first."""
    name = repository_name(body)
    entries = await manifest_store.manifests_newest_first(request.app[DB_POOL], name)
    return ManifestList(
        name=name.path,
        items=[ManifestItem(digest=entry.digest, created_at=entry.created_at) for entry in entries],
    )


async def get_project_storage(request: web.Request, body: ProjectRequest) -> ProjectStorage:
    """The project's total from the last calculateProjectStorage run (0 before the first)."""
    stored = await repository_store.project_storage(request.app[DB_POOL], body.project)
    if stored is None:
        return ProjectStorage(size=0)
    return ProjectStorage(size=stored.size, updated_at=stored.updated_at)


async def delete_manifest(request: web.Request, body: ManifestRequest) -> None:
    """Delete a manifest and the tags pointing to it; its blobs are left to the GC."""
    name = repository_name(body)
    if not is_digest(body.digest):
        raise ApiError(MANIFEST_NOT_FOUND)
    await manifest_store.delete_manifest(request.app[DB_POOL], name, body.digest)


async def untag(request: web.Request, body: TagRequest) -> None:
    """Remove one tag; its manifest stays."""
    name = repository_name(body)
    if not is_tag(body.tag):
        raise ApiError(TAG_NOT_FOUND)
    await tag_store.delete_tag(request.app[DB_POOL], name, body.tag)


async def delete(request: web.Request, body: RepositoryRequest) -> None:
    """Delete a repository and everything in it; finishes even if the client goes away."""
    name = repository_name(body)
    app = request.app
    await run_to_completion(
        app, repository_store.delete_repository(app[DB_POOL], app[OBJECT_STORE], name)
    )
