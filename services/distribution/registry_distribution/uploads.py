"""Blob uploads: `POST`, `PATCH`, `PUT`, `GET` and `DELETE /v2/<name>/blobs/uploads/...`."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from registry_common import metrics
from registry_common.db.uploads import UploadSession
from registry_common.http import DB_POOL, OBJECT_STORE, SETTINGS
from registry_common.oci.digests import parse_digest
from registry_common.oci.errors import ErrorCode
from registry_common.oci.names import RepositoryName, is_repository_name
from registry_common.registry import blob_store, upload_store
from registry_distribution.access import (
    AccessRefused,
    Action,
    authorize,
    grant_of,
    repository_of,
)
from registry_distribution.errors import OciError, range_header

# Advertised, not enforced: bigger chunks mean fewer objects to compose.
CHUNK_MIN_LENGTH = 1024 * 1024
BODY_CHUNK_SIZE = 1024 * 1024
_CONTENT_RANGE = re.compile(r"^(?:bytes )?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$")


def _upload_location(repository: RepositoryName, upload_id: uuid.UUID) -> str:
    return f"/v2/{repository}/blobs/uploads/{upload_id}"


def _session_headers(repository: RepositoryName, session: UploadSession) -> dict[str, str]:
    return {
        "Location": _upload_location(repository, session.id),
        "Docker-Upload-UUID": str(session.id),
        "Range": range_header(session.size),
    }


def _blob_created(repository: RepositoryName, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": f"/v2/{repository}/blobs/{digest}", "Docker-Content-Digest": digest},
    )


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(BODY_CHUNK_SIZE):
        yield chunk


def _has_body(request: web.Request) -> bool:
    return request.body_exists and request.content_length != 0


def _limits(request: web.Request) -> upload_store.UploadLimits:
    return upload_store.UploadLimits.from_settings(request.app[SETTINGS])


def _count_upload(request: web.Request, size: int) -> None:
    project_id = grant_of(request).project_id
    metrics.UPLOAD_BYTES.labels(project_id).inc(size)
    metrics.UPLOAD_COUNT.labels(project_id).inc()


async def _try_mount(request: web.Request, repository: RepositoryName) -> web.Response | None:
    """Link the `mount` digest from `from` (or, without `from`, from a repository of the same
    project); None when that is not possible and a regular upload should start."""
    digest = parse_digest(request.query["mount"])
    source: RepositoryName | None = None
    if "from" in request.query:
        if not is_repository_name(request.query["from"]):
            return None
        source = RepositoryName(request.query["from"])
        try:
            await authorize(request, source, Action.PULL)
        except AccessRefused:
            return None  # not allowed to read the source: no proof of possession
    size = await blob_store.mount_blob(
        request.app[DB_POOL], request.app[OBJECT_STORE], repository, str(digest), source
    )
    if size is None:
        return None
    return _blob_created(repository, str(digest))


async def start_upload(request: web.Request) -> web.StreamResponse:
    """Open an upload session, or upload monolithically, or mount from another repository."""
    repository = repository_of(request)
    pool = request.app[DB_POOL]
    if "mount" in request.query:
        mounted = await _try_mount(request, repository)
        if mounted is not None:
            return mounted
    if "digest" in request.query:
        digest = parse_digest(request.query["digest"])
        size = await upload_store.upload_whole(
            pool, request.app[OBJECT_STORE], repository, digest, _body_chunks(request)
        )
        _count_upload(request, size)
        return _blob_created(repository, str(digest))
    session = await upload_store.start_upload(pool, repository, _limits(request))
    headers = _session_headers(repository, session)
    headers["OCI-Chunk-Min-Length"] = str(CHUNK_MIN_LENGTH)
    return web.Response(status=202, headers=headers)


def _content_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) from `Content-Range`, or (None, None) when absent (streamed chunk)."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None, request.content_length
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise OciError(ErrorCode.RANGE_INVALID, "malformed Content-Range", status=416)
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise OciError(ErrorCode.RANGE_INVALID, "Content-Range ends before it starts", status=416)
    length = end - start + 1
    if request.content_length is not None and request.content_length != length:
        raise OciError(ErrorCode.SIZE_INVALID, "Content-Length does not match Content-Range")
    return start, length


async def append_chunk(request: web.Request) -> web.StreamResponse:
    """Append a chunk to an upload session."""
    repository = repository_of(request)
    start, length = _content_range(request)
    session = await upload_store.append_chunk(
        request.app[DB_POOL],
        request.app[OBJECT_STORE],
        repository,
        request.match_info["upload_id"],
        _body_chunks(request),
        _limits(request),
        start=start,
        length=length,
    )
    return web.Response(status=202, headers=_session_headers(repository, session))


async def finish_upload(request: web.Request) -> web.StreamResponse:
    """Finish an upload with its digest (and an optional last chunk)."""
    repository = repository_of(request)
    if "digest" not in request.query:
        raise OciError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required")
    digest = parse_digest(request.query["digest"])
    start, length = _content_range(request) if _has_body(request) else (None, None)
    size = await upload_store.finish_upload(
        request.app[DB_POOL],
        request.app[OBJECT_STORE],
        repository,
        request.match_info["upload_id"],
        digest,
        _limits(request),
        _body_chunks(request) if _has_body(request) else None,
        start=start,
        length=length,
    )
    _count_upload(request, size)
    return _blob_created(repository, str(digest))


async def upload_status(request: web.Request) -> web.StreamResponse:
    """Report how much of an upload was received."""
    repository = repository_of(request)
    session = await upload_store.upload_status(
        request.app[DB_POOL], repository, request.match_info["upload_id"], _limits(request)
    )
    return web.Response(status=204, headers=_session_headers(repository, session))


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    """Abandon an upload session and its data."""
    await upload_store.cancel_upload(
        request.app[DB_POOL],
        request.app[OBJECT_STORE],
        repository_of(request),
        request.match_info["upload_id"],
        _limits(request),
    )
    return web.Response(status=204)
