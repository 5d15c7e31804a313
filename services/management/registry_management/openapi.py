"""The OpenAPI 3.1 document of the management API, generated from its pydantic models and
route table, and served at `GET /api/openapi.json`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from registry_management.api import Endpoint
from registry_management.models import ErrorReply, reply_model

OPENAPI_PATH = "/api/openapi.json"
OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict[str, Any])
_REF_TEMPLATE = "#/components/schemas/{model}"

# Replies other than 200 for a POST method, all with the error envelope.
_ERROR_STATUSES = {
    "400": "Malformed request: the body is not JSON, not an object, or a field is not a string.",
    "413": "Request body too large.",
    "415": "Content-Type is not application/json.",
    "500": "Unexpected failure (`internal error`; details only in the service's log).",
    "503": "PostgreSQL, storage or the Deploys API is unreachable; retry later.",
}

_DESCRIPTION = """\
The JSON API of the registry used by the Deploys dashboard. Every method is a `POST` with a
JSON object body (`Content-Type: application/json`). A success answers
`{"ok": true, "result": {...}}` (or `{"ok": true}`); an application error (`project required`,
`iam: forbidden`, `repository not found`, ...) answers HTTP 200 with
`{"ok": false, "error": {"message": "..."}}`. The caller's `Authorization` header, whatever its
scheme, is passed to the Deploys API to check the permission each method names.
Timestamps are RFC 3339 in UTC."""


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_openapi(endpoints: Sequence[Endpoint[Any]]) -> dict[str, Any]:
    """The document for `endpoints`."""
    replies = {endpoint.path: reply_model(endpoint.result_model) for endpoint in endpoints}
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorReply, "serialization")]
    for endpoint in endpoints:
        wanted.append((endpoint.request_model, "validation"))
        wanted.append((replies[endpoint.path], "serialization"))
    refs, definitions = models_json_schema(wanted, ref_template=_REF_TEMPLATE)
    error_ref = refs[(ErrorReply, "serialization")]

    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        reply_ref = refs[(replies[endpoint.path], "serialization")]
        responses: dict[str, Any] = {
            "200": {
                "description": "The result, or an application error.",
                "content": _json_content({"oneOf": [reply_ref, error_ref]}),
            }
        }
        for status, description in _ERROR_STATUSES.items():
            responses[status] = {"description": description, "content": _json_content(error_ref)}
        paths[endpoint.path] = {
            "post": {
                "operationId": endpoint.name,
                "summary": endpoint.summary,
                "description": f"Requires the `{endpoint.permission.value}` permission "
                "on the project.",
                "security": [{"deploysAuthorization": []}],
                "requestBody": {
                    "required": True,
                    "content": _json_content(refs[(endpoint.request_model, "validation")]),
                },
                "responses": responses,
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Registry management API", "version": "1", "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "deploysAuthorization": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "Passed as is to the Deploys API (`me.authorized`).",
                }
            },
        },
    }


async def serve_openapi(request: web.Request) -> web.Response:
    """`GET /api/openapi.json`."""
    return web.json_response(request.app[OPENAPI_DOCUMENT])
