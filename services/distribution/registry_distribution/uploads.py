"""Blob uploads: `POST`, `PATCH`, `PUT`, `GET` and `DELETE /v2/<name>/blobs/uploads/...`."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from registry_common import metrics
from registry_common import uploads as upload_rules
from registry_common.blobs import mount_blob
from registry_common.db.blobs import repository_in_project_linking
from registry_common.db.uploads import UploadSession, get_upload
from registry_common.http import DB_POOL, OBJECT_STORE
from registry_common.oci.digests import parse_digest
from registry_common.oci.errors import ErrorCode, OciError
from registry_common.oci.names import RepositoryName, is_repository_name
from registry_distribution.access import Action, authorize, grant_of, repository_of

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
        "Range": upload_rules.range_header(session.size),
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


def _count_upload(request: web.Request, size: int) -> None:
    project_id = grant_of(request).project_id
    metrics.UPLOAD_BYTES.labels(project_id).inc(size)
    metrics.UPLOAD_COUNT.labels(project_id).inc()


async def _session_of(request: web.Request) -> UploadSession:
    """The session named in the URL, only if it belongs to this repository."""
    try:
        upload_id = uuid.UUID(request.match_info["upload_id"])
    except ValueError:
        raise OciError(ErrorCode.BLOB_UPLOAD_UNKNOWN) from None
    session = await get_upload(request.app[DB_POOL], upload_id, repository_of(request).full)
    if session is None:
        raise OciError(ErrorCode.BLOB_UPLOAD_UNKNOWN)
    return session


async def _try_mount(request: web.Request, repository: RepositoryName) -> web.Response | None:
    """Link the `mount` digest from `from` (or, without `from`, from a repository of the same
    project); None when that is not possible and a regular upload should start."""
    digest = parse_digest(request.query["mount"])
    pool = request.app[DB_POOL]
    source = request.query.get("from")
    if source is not None:
        if not is_repository_name(source):
            return None
        source_name = RepositoryName(source)
        try:
            await authorize(request, source_name, Action.PULL)
        except OciError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                raise
            return None  # not allowed to read the source: no proof of possession
    else:
        source = await repository_in_project_linking(pool, repository.project, str(digest))
        if source is None:
            return None
    size = await mount_blob(pool, request.app[OBJECT_STORE], repository, str(digest), source)
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
        size = await upload_rules.upload_whole(
            pool, request.app[OBJECT_STORE], repository, digest, _body_chunks(request)
        )
        _count_upload(request, size)
        return _blob_created(repository, str(digest))
    session = await upload_rules.start_upload(pool, repository)
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
    session = await _session_of(request)
    start, length = _content_range(request)
    session = await upload_rules.append_chunk(
        request.app[DB_POOL],
        request.app[OBJECT_STORE],
        session,
        _body_chunks(request),
        start=start,
        length=length,
    )
    return web.Response(status=202, headers=_session_headers(repository, session))


async def finish_upload(request: web.Request) -> web.StreamResponse:
    """Finish an upload with its digest (and an optional last chunk)."""
    repository = repository_of(request)
    session = await _session_of(request)
    if "digest" not in request.query:
        raise OciError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required")
    digest = parse_digest(request.query["digest"])
    pool = request.app[DB_POOL]
    store = request.app[OBJECT_STORE]
    if _has_body(request):
        start, length = _content_range(request)
        size = await upload_rules.finish_with_body(
            pool,
            store,
            repository,
            session,
            digest,
            _body_chunks(request),
            start=start,
            length=length,
        )
    else:
        size = await upload_rules.finish_upload(pool, store, repository, session, digest)
    _count_upload(request, size)
    return _blob_created(repository, str(digest))


async def upload_status(request: web.Request) -> web.StreamResponse:
    """Report how much of an upload was received."""
    repository = repository_of(request)
    session = await _session_of(request)
    return web.Response(status=204, headers=_session_headers(repository, session))


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    """Abandon an upload session and its data."""
    session = await _session_of(request)
    await upload_rules.discard_upload(request.app[DB_POOL], request.app[OBJECT_STORE], session)
    return web.Response(status=204)
