"""Sending blob bytes: byte ranges, `sendfile` from the filesystem, streams from GCS."""

from __future__ import annotations

import asyncio
import os
import re
import select
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from registry_common.errors import BlobUnknown
from registry_common.http import OBJECT_STORE
from registry_common.oci.errors import ErrorCode
from registry_common.registry import blob_store
from registry_distribution.errors import OciError

# A client whose socket accepts nothing for this long is given up on.
SEND_STALL_SECONDS = 60
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


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


def _sendfile_blocking(socket_fd: int, file_fd: int, offset: int, count: int) -> int:
    """Copy `count` bytes of a file to a socket inside the kernel (os.sendfile). Runs in a worker
    thread: the socket is non-blocking, so a full send buffer is waited out with poll()."""
    poller = select.poll()
    poller.register(socket_fd, select.POLLOUT)
    sent = 0
    while sent < count:
        try:
            done = os.sendfile(socket_fd, file_fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            if not poller.poll(SEND_STALL_SECONDS * 1000):
                raise TimeoutError("the client stopped reading") from None
            continue
        if done == 0:
            raise ConnectionError("the file ended before the blob's size")
        sent += done
    return sent


async def _send_file(
    request: web.Request, response: web.StreamResponse, path: Path, offset: int, count: int
) -> int:
    """Send the body from `path` with sendfile, past aiohttp's writer (uvloop implements no
    loop.sendfile, and copying through Python costs a third more CPU per byte)."""
    try:
        file = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise BlobUnknown from None
    try:
        await response.prepare(request)
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        if transport.get_write_buffer_size():
            # The headers must be on the wire before body bytes written past the transport
            # (uvloop writes at once when it can, so this is rare): with no room allowed, the
            # transport pauses the writer until its buffer is empty.
            transport.set_write_buffer_limits(high=0, low=0)
            try:
                await request.writer.drain()
            finally:
                transport.set_write_buffer_limits()
            if transport.get_write_buffer_size():
                raise ConnectionResetError("the client went away")
        socket_fd = transport.get_extra_info("socket").fileno()
        return await asyncio.to_thread(_sendfile_blocking, socket_fd, file.fileno(), offset, count)
    finally:
        file.close()


async def send_blob(
    request: web.Request,
    digest: str,
    size: int,
    cache_control: str,
    on_sent: Callable[[int], None] = lambda _: None,
) -> web.StreamResponse:
    """Send a blob's bytes (whole or the requested range); `on_sent` gets the number of body
    bytes once they are sent."""
    headers = {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Cache-Control": cache_control,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }
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
    content = await blob_store.open_blob(request.app[OBJECT_STORE], digest, start, length)
    if content.path is not None:
        sent = await _send_file(request, response, content.path, start, length)
    else:
        await response.prepare(request)
        await response.write(content.first)
        sent = len(content.first)
        if content.rest is not None:
            async for chunk in content.rest:
                await response.write(chunk)
                sent += len(chunk)
    await response.write_eof()
    on_sent(sent)
    return response
