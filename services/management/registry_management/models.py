"""Requests and replies of the management API, and its one error type.

The same models validate requests, shape replies and generate the OpenAPI document
(openapi.py), so the document cannot drift from what the service does. Field names and the
envelope are those of the seed service's README: `{"ok": true, "result": {...}}`, or
`{"ok": false, "error": {"message": "..."}}`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, create_model
from pydantic.alias_generators import to_camel

from registry_common.oci.names import MAX_NAME_LENGTH, PROJECT_NAME, TAG

# --- Errors ---

FORBIDDEN = "iam: forbidden"
REPOSITORY_NOT_FOUND = "repository not found"
MANIFEST_NOT_FOUND = "manifest not found"
TAG_NOT_FOUND = "tag not found"
# Followed by the indexes' digests and "; delete the index first".
MANIFEST_IN_INDEX = "manifest is referenced by an index in this repository"
INTERNAL_ERROR = "internal error"


def required(field: str) -> str:
    """The message for a missing or empty request field: `project required`, ..."""
    return f"{field} required"


class ApiError(Exception):
    """An error of the management API: application errors answer HTTP 200, request errors
    (method, content type, malformed JSON) 4xx; the app's error renderer shapes the reply."""

    def __init__(self, message: str, *, status: int = 200, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}

    def reply(self) -> dict[str, Any]:
        """The JSON body."""
        return ErrorReply(error=ErrorDetail(message=self.message)).model_dump(mode="json")


# --- Requests ---


class ApiRequest(BaseModel):
    """Base of the request bodies; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")


# The grammar of names, tags and digests (registry_common.oci), for the document only: a value
# outside it is not a malformed request but one no project, repository, manifest or tag can
# match (`iam: forbidden`, `... not found`).
_COMPONENT = PROJECT_NAME.pattern.removeprefix("^").removesuffix("$")
_PROJECT_SCHEMA = {"pattern": PROJECT_NAME.pattern, "maxLength": MAX_NAME_LENGTH}
_PATH_SCHEMA = {"pattern": f"^{_COMPONENT}(?:/{_COMPONENT})*$", "maxLength": MAX_NAME_LENGTH - 2}
_DIGEST_SCHEMA = {"pattern": "^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"}
_TAG_SCHEMA = {"pattern": TAG.pattern}

# A missing, null or empty value answers `<field> required` (HTTP 200, like other application
# errors); a value of another JSON type is a malformed request (400).
Project = Annotated[
    str,
    Field(
        min_length=1,
        description="The Deploys project (the first component of its repositories' names).",
        examples=["my-project"],
        json_schema_extra=_PROJECT_SCHEMA,
    ),
]
Repository = Annotated[
    str,
    Field(
        min_length=1,
        description="The repository's name without the project prefix.",
        examples=["my-image"],
        json_schema_extra=_PATH_SCHEMA,
    ),
]


class ProjectRequest(ApiRequest):
    """A request about a project."""

    project: Project


class RepositoryRequest(ProjectRequest):
    """A request about one repository of a project."""

    repository: Repository


class ManifestRequest(RepositoryRequest):
    """A request about one manifest of a repository."""

    digest: Annotated[
        str,
        Field(
            min_length=1,
            description="The manifest's digest, `algorithm:hex`.",
            examples=["sha256:" + "a" * 64],
            json_schema_extra=_DIGEST_SCHEMA,
        ),
    ]


class TagRequest(RepositoryRequest):
    """A request about one tag of a repository."""

    tag: Annotated[str, Field(min_length=1, examples=["latest"], json_schema_extra=_TAG_SCHEMA)]


# --- Results ---


def rfc3339(value: datetime) -> str:
    """`2024-01-15T00:00:00Z`: RFC 3339, UTC, whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_TIMESTAMP_SCHEMA = {"type": "string", "format": "date-time", "examples": ["2024-01-15T00:00:00Z"]}
Timestamp = Annotated[
    datetime, PlainSerializer(rfc3339, return_type=str), WithJsonSchema(_TIMESTAMP_SCHEMA)
]


class ApiResult(BaseModel):
    """Base of the results: camelCase field names on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class RepositoryItem(ApiResult):
    name: str = Field(description="Without the project prefix.")
    created_at: Timestamp


class RepositoryList(ApiResult):
    items: list[RepositoryItem] = Field(description="Sorted by name.")


class RepositoryInfo(ApiResult):
    name: str = Field(description="Without the project prefix.")
    size: int = Field(description="Total bytes of the blobs linked to the repository.")
    created_at: Timestamp


class TagItem(ApiResult):
    tag: str
    digest: str
    created_at: Timestamp = Field(description="When the tag started pointing at `digest`.")


class TagList(ApiResult):
    name: str
    items: list[TagItem] = Field(description="Newest first.")


class ManifestItem(ApiResult):
    digest: str
    created_at: Timestamp


class ManifestList(ApiResult):
    name: str
    items: list[ManifestItem] = Field(description="Newest first.")


def _without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ProjectStorage(ApiResult):
    size: int = Field(description="Bytes of the distinct blobs the project's repositories link.")
    # Left out of the reply (never null) until the job has counted the project.
    updated_at: Annotated[Timestamp | None, WithJsonSchema(_TIMESTAMP_SCHEMA)] = Field(
        default=None,
        description="When calculateProjectStorage counted it; absent before its first run.",
        json_schema_extra=_without_default,
    )


# --- Envelopes ---

ResultT = TypeVar("ResultT", bound=ApiResult)


class ResultReply(BaseModel, Generic[ResultT]):
    """Success with a result."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    ok: Literal[True] = True
    result: ResultT


class OkReply(BaseModel):
    """Success without a result."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    ok: Literal[True] = True


class ErrorDetail(BaseModel):
    message: str


class ErrorReply(BaseModel):
    """Failure: HTTP 200 for application errors, 4xx for malformed requests, 5xx otherwise."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    ok: Literal[False] = False
    error: ErrorDetail


def reply_model(result: type[ApiResult] | None) -> type[BaseModel]:
    """The model of the success reply carrying `result` (named `<Result>Reply`)."""
    if result is None:
        return OkReply
    generic: Any = ResultReply
    model: type[BaseModel] = create_model(f"{result.__name__}Reply", __base__=generic[result])
    return model


def success_body(result: ApiResult | None) -> dict[str, Any]:
    """The JSON body of a success."""
    if result is None:
        return OkReply().model_dump(mode="json")
    # The shape of ResultReply[type(result)], without building that class per reply.
    return {"ok": True, "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
