"""Blobs: `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>`, and sending blob bytes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from registry_common import metrics
from registry_common.db.blobs import (
    UnlinkOutcome,
    linked_blob_size,
    touch_interval,
    unlink_unreferenced,
)
from registry_common.http import DB_POOL, OBJECT_STORE, SETTINGS
from registry_common.oci.digests import parse_digest
from registry_common.oci.errors import ErrorCode, OciError
from registry_common.oci.names import RepositoryName
from registry_common.storage.base import ObjectNotFound
from registry_common.storage.layout import blob_key
from registry_distribution.access import grant_of, repository_of

# Digest-addressed bytes never change.
IMMUTABLE = "max-age=31536000, immutable"
# uvloop has no loop.sendfile, so aiohttp copies through a thread: big pieces, few hops.
SEND_CHUNK_SIZE = 512 * 1024
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")

log = structlog.get_logger("registry.blobs")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range, None for the whole blob.

    A header this does not understand (several ranges, other units) is ignored, as RFC 9110
    allows; a range that cannot be satisfied is 416 with the blob size.
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> OciError:
    return OciError(
        ErrorCode.RANGE_INVALID,
        "requested range not satisfiable",
        status=416,
        headers={"Content-Range": f"bytes */{size}"},
    )


def _is_internal_client(request: web.Request) -> bool:
    address = request.headers.get("X-Real-Ip") or request.remote or ""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


class _CountedFileResponse(web.FileResponse):
    """A FileResponse (sendfile) that reports how many body bytes it sent."""

    def __init__(self, path: Path, on_sent: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._on_sent = on_sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method != "HEAD" and self.status in (200, 206):
            self._on_sent(self.content_length or 0)
        return writer


async def send_blob(
    request: web.Request,
    digest: str,
    size: int,
    cache_control: str,
    on_sent: Callable[[int], None] = lambda _: None,
) -> web.StreamResponse:
    """Send a blob's bytes (whole or the requested range); `on_sent` gets the number of body
    bytes once they are sent."""
    store = request.app[OBJECT_STORE]
    key = blob_key(digest)
    headers = {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Cache-Control": cache_control,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }
    path = store.local_path(key)
    if path is not None:
        # sendfile, with aiohttp's own Range, If-Range and HEAD handling.
        # aiohttp prepares (sends) it after the handler returns.
        return _CountedFileResponse(path, on_sent, headers=headers, chunk_size=SEND_CHUNK_SIZE)

    byte_range = parse_range(request.headers.get("Range"), size)
    start, end = byte_range if byte_range is not None else (0, size - 1)
    length = max(end - start + 1, 0)
    response = web.StreamResponse(status=206 if byte_range else 200, headers=headers)
    response.content_length = length
    if byte_range is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    chunks = store.read(key, offset=start, length=length)
    try:
        first = await anext(chunks, b"")
    except ObjectNotFound:
        log.error("blob_object_missing", digest=digest)
        raise OciError(ErrorCode.BLOB_UNKNOWN) from None
    await response.prepare(request)
    sent = 0
    await response.write(first)
    sent += len(first)
    async for chunk in chunks:
        await response.write(chunk)
        sent += len(chunk)
    await response.write_eof()
    on_sent(sent)
    return response


async def linked_size(request: web.Request, repository: RepositoryName) -> tuple[str, int]:
    """The digest in the URL and the size of that blob if `repository` links it (refreshing
    the link's grace clock); BLOB_UNKNOWN otherwise."""
    digest = str(parse_digest(request.match_info["digest"]))
    size = await linked_blob_size(
        request.app[DB_POOL],
        repository.full,
        digest,
        touch_interval(request.app[SETTINGS].gc_grace_period),
    )
    if size is None:
        raise OciError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
    return digest, size


async def get_blob(request: web.Request) -> web.StreamResponse:
    """Serve a linked blob, whole or a byte range (`GET` and `HEAD`)."""
    repository = repository_of(request)
    digest, size = await linked_size(request, repository)
    project_id = grant_of(request).project_id
    cdn_domain = request.app[SETTINGS].cdn_domain
    if cdn_domain and request.method == "GET" and not _is_internal_client(request):
        metrics.DOWNLOAD_COUNT.labels(project_id).inc()
        metrics.EGRESS_BYTES.labels(project_id).inc(size)
        raise web.HTTPTemporaryRedirect(
            f"https://{cdn_domain}/{repository}/blobs/{digest}",
            headers={"Docker-Content-Digest": digest, "Cache-Control": "no-store"},
        )

    def count_download(sent: int) -> None:
        metrics.DOWNLOAD_COUNT.labels(project_id).inc()
        metrics.EGRESS_BYTES.labels(project_id).inc(sent)

    return await send_blob(request, digest, size, IMMUTABLE, count_download)


async def delete_blob(request: web.Request) -> web.StreamResponse:
    """Unlink a blob from the repository (202); its bytes go later through GC."""
    repository = repository_of(request)
    digest = str(parse_digest(request.match_info["digest"]))
    async with request.app[DB_POOL].acquire() as connection, connection.transaction():
        outcome = await unlink_unreferenced(connection, repository.full, digest)
    if outcome is UnlinkOutcome.MISSING:
        raise OciError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
    if outcome is UnlinkOutcome.REFERENCED:
        raise OciError(
            ErrorCode.DENIED,
            "blob is referenced by a manifest of this repository; delete the manifest first",
            status=409,
        )
    return web.Response(status=202)
