"""The whole URL surface of the management service, in one table.

Every method is `POST /api/<method>` with a JSON body; `GET /api/openapi.json` describes them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry_common.auth import Permission
from registry_management import api
from registry_management.api import Endpoint
from registry_management.models import (
    ManifestList,
    ManifestRequest,
    ProjectRequest,
    ProjectStorage,
    RepositoryInfo,
    RepositoryList,
    RepositoryRequest,
    TagList,
    TagRequest,
)
from registry_management.openapi import OPENAPI_DOCUMENT, OPENAPI_PATH, build_openapi, serve_openapi

ENDPOINTS: tuple[Endpoint[Any], ...] = (
    Endpoint(
        "/api/list",
        ProjectRequest,
        RepositoryList,
        Permission.LIST,
        api.list_repositories,
        "List the repositories of a project",
    ),
    Endpoint(
        "/api/get",
        RepositoryRequest,
        RepositoryInfo,
        Permission.GET,
        api.get_repository,
        "Get a repository and the total size of its blobs",
    ),
    Endpoint(
        "/api/getTags",
        RepositoryRequest,
        TagList,
        Permission.GET,
        api.get_tags,
        "List a repository's tags, newest first",
    ),
    Endpoint(
        "/api/getManifests",
        RepositoryRequest,
        ManifestList,
        Permission.GET,
        api.get_manifests,
        "List a repository's manifests, newest first",
    ),
    Endpoint(
        "/api/getProjectStorage",
        ProjectRequest,
        ProjectStorage,
        Permission.GET,
        api.get_project_storage,
        "Get a project's storage total, as counted by the daily calculateProjectStorage job",
    ),
    Endpoint(
        "/api/deleteManifest",
        ManifestRequest,
        None,
        Permission.PUSH,
        api.delete_manifest,
        "Delete a manifest and the tags that point to it (its blobs are left to the GC)",
    ),
    Endpoint(
        "/api/delete",
        RepositoryRequest,
        None,
        Permission.PUSH,
        api.delete,
        "Delete a repository and everything in it; finishes even if the client goes away",
    ),
    Endpoint(
        "/api/untag",
        TagRequest,
        None,
        Permission.PUSH,
        api.untag,
        "Remove a tag (the manifest stays)",
    ),
)


def add_routes(app: web.Application) -> None:
    """Register every route of the service."""
    for endpoint in ENDPOINTS:
        app.router.add_post(endpoint.path, api.serve(endpoint))
    app[OPENAPI_DOCUMENT] = build_openapi(ENDPOINTS)
    app.router.add_get(OPENAPI_PATH, serve_openapi)
