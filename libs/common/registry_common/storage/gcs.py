"""Object storage in a Google Cloud Storage bucket, through google-cloud-storage.

The client is blocking, so every call runs in a thread pool owned by the store, never on the
event loop. Writes are resumable uploads fed chunk by chunk: GCS makes an object visible only
when its upload is finalized, and an abandoned upload is cancelled instead, so a failed write
leaves the key as it was. With STORAGE_EMULATOR_HOST set (fake-gcs-server), the client talks to
the emulator anonymously.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, MutableSequence, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any, ParamSpec, TypeVar, cast

from google.api_core.exceptions import (
    GoogleAPIError,
    NotFound,
    RequestRangeNotSatisfiable,
    RetryError,
    ServerError,
    TooManyRequests,
    from_http_response,
)
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError, TransportError
from google.cloud import storage
from google.cloud.storage.exceptions import InvalidResponse
from google.cloud.storage.fileio import BlobWriter
from google.cloud.storage.retry import DEFAULT_RETRY

from registry_common.storage.base import (
    READ_CHUNK_SIZE,
    TEMP_PREFIX,
    ChunkHook,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    check_key,
    check_prefix,
    check_range,
    checked_chunks,
)

P = ParamSpec("P")
T = TypeVar("T")

MIB = 1024 * 1024
# fake-gcs-server accepts any project; the real service takes it from the credentials.
EMULATOR_PROJECT = "registry-local"
# A GCS compose request takes at most this many sources.
MAX_COMPOSE_SOURCES = 32
# Staged composes write their intermediate objects here and delete them afterwards.
COMPOSE_TEMP_PREFIX = f"{TEMP_PREFIX}compose/"
LIST_PAGE_SIZE = 1000
# Transient failures are retried with backoff for at most this long, then StorageUnavailable.
RETRY_TIMEOUT_SECONDS = 30.0
# requests' exceptions (ConnectionError, Timeout, ChunkedEncodingError) derive from OSError.
_UNAVAILABLE = (ServerError, TooManyRequests, RetryError, TransportError, OSError)

# Spelled out here because the class's `list` method shadows the builtin in its annotations.
ObjectPage = list[ObjectInfo]
Names = list[str]


def create_gcs_client() -> Any:
    """A storage client: anonymous on STORAGE_EMULATOR_HOST when set, else default credentials."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return storage.Client(project=EMULATOR_PROJECT, credentials=credentials)
    return storage.Client()


class GcsStore(ObjectStore):
    """Objects in one bucket; the object name is the key.

    `upload_chunk_size` (a multiple of 256 KiB) is what each upload request carries and bounds
    a write's memory; reads download `read_window` bytes per request and fetch the next window
    while the current one is consumed, so a read holds at most two windows. Building the
    default client looks up credentials, so construct the store at start-up, not per request.
    """

    def __init__(
        self,
        bucket_name: str,
        client: Any | None = None,
        *,
        upload_chunk_size: int = 8 * MIB,
        read_window: int = 8 * MIB,
        max_workers: int = 32,
        ping_timeout: float = 2.0,
    ) -> None:
        self._owns_client = client is None
        self._client = create_gcs_client() if client is None else client
        self._bucket = self._client.bucket(bucket_name)
        self._upload_chunk_size = upload_chunk_size
        self._read_window = read_window
        self._ping_timeout = ping_timeout
        self._retry = DEFAULT_RETRY.with_timeout(RETRY_TIMEOUT_SECONDS)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="gcs-store"
        )

    @property
    def bucket_name(self) -> str:
        """The bucket holding the objects."""
        return cast(str, self._bucket.name)

    async def ping(self) -> None:
        """List at most one object, without retries, so readiness answers within the timeout.

        Listing needs only `storage.objects.list`, which the registry needs anyway, where
        reading the bucket's metadata would need `storage.buckets.get` as well. A failed probe
        is not retried: the readiness probe itself is.
        """
        try:
            await asyncio.wrap_future(self._executor.submit(self._list_one))
        except (GoogleAPIError, GoogleAuthError, OSError) as exc:
            raise StorageUnavailable(f"bucket {self.bucket_name} does not answer: {exc}") from exc

    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        on_chunk: ChunkHook | None = None,
        max_size: int | None = None,
    ) -> int:
        """Stream `chunks` into a resumable upload, finalized only after the last chunk passed."""
        writer = BlobWriter(
            self._bucket.blob(check_key(key)),
            chunk_size=self._upload_chunk_size,
            ignore_flush=True,
            retry=self._retry,
            content_type="application/octet-stream",
        )
        size = 0
        pending: concurrent.futures.Future[Any] | None = None
        try:
            async for chunk in checked_chunks(key, chunks, on_chunk=on_chunk, max_size=max_size):
                size += len(chunk)
                if not chunk:
                    continue
                if pending is not None:
                    await self._wait(pending)
                # Sent while the next chunk is read from the source. Memory stays within the
                # writer's buffer (one upload chunk) plus two source chunks.
                pending = self._executor.submit(writer.write, chunk)
            if pending is not None:
                await self._wait(pending)
            pending = self._executor.submit(writer.close)
            await self._wait(pending)
        except BaseException as exc:
            cleanup = self._executor.submit(_abandon_upload, writer, pending)
            if not isinstance(exc, asyncio.CancelledError):
                with suppress(Exception):
                    await asyncio.wrap_future(cleanup)
            raise
        return size

    async def read(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield `key`'s bytes from `offset`, at most `length` of them (see `ObjectStore.read`)."""
        blob = self._bucket.blob(check_key(key))
        check_range(offset, length)
        stop = None if length is None else offset + length
        if offset == stop:
            # Nothing to download, but a missing key must still raise.
            if await self.stat(key) is None:
                raise ObjectNotFound(key)
            return
        position = offset
        source = blob
        window: concurrent.futures.Future[bytes] | None = self._executor.submit(
            self._download, source, position, self._window_end(position, stop)
        )
        try:
            while window is not None:
                data = await self._wait(window)
                requested = self._window_end(position, stop) - position
                position += len(data)
                window = None
                if len(data) == requested and position != stop:
                    if source is blob and blob.generation is not None:
                        # Later windows come from the generation the first one saw, so a
                        # concurrent overwrite cannot splice two contents together.
                        source = self._bucket.blob(key, generation=blob.generation)
                    window = self._executor.submit(
                        self._download, source, position, self._window_end(position, stop)
                    )
                for start in range(0, len(data), READ_CHUNK_SIZE):
                    yield data[start : start + READ_CHUNK_SIZE]
        finally:
            if window is not None:
                window.cancel()

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and update time of `key`, or None when it does not exist."""
        blob = await self._call(self._bucket.get_blob, check_key(key), retry=self._retry)
        return None if blob is None else _object_info(blob)

    async def delete(self, key: str) -> bool:
        """Remove `key`; True when it existed."""
        blob = self._bucket.blob(check_key(key))
        try:
            await self._call(blob.delete, retry=self._retry)
        except ObjectNotFound:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`, a listing page at a time."""
        removed = 0
        async for page in self._pages(prefix):
            results = await asyncio.gather(*(self.delete(info.key) for info in page))
            removed += sum(results)
        return removed

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""
        async for page in self._pages(prefix):
            for info in page:
                yield info

    async def copy(self, source: str, destination: str) -> None:
        """Server-side copy (a rewrite, which works for any size and storage class)."""
        await self._call(self._rewrite, check_key(source), check_key(destination))

    async def compose(self, sources: Sequence[str], destination: str) -> int:
        """Concatenate server-side; more than 32 sources are composed in stages.

        Each stage composes groups of 32 into temporary objects under `.tmp/compose/`, which
        are deleted at the end, whether the compose succeeded or not.
        """
        names: Sequence[str] = [check_key(source) for source in sources]
        check_key(destination)
        if not names:
            await self._call(
                self._bucket.blob(destination).upload_from_string, b"", retry=self._retry
            )
            return 0
        if len(names) == 1:
            return await self._call(self._rewrite, names[0], destination)
        temporaries: Names = []
        try:
            while len(names) > MAX_COMPOSE_SOURCES:
                names = await self._compose_stage(names, temporaries)
            return await self._call(self._compose, names, destination)
        finally:
            if temporaries:
                await asyncio.gather(
                    *(self.delete(name) for name in temporaries), return_exceptions=True
                )

    async def close(self) -> None:
        """Wait for the store's threads to finish, then release them and the client."""
        await asyncio.to_thread(self._shutdown)

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._wait(self._executor.submit(function, *args, **kwargs))

    @staticmethod
    async def _wait(future: concurrent.futures.Future[T]) -> T:
        try:
            return await asyncio.wrap_future(future)
        except Exception as exc:
            error = _storage_error(exc)
            if error is None:
                raise
            raise error from exc

    async def _pages(self, prefix: str) -> AsyncIterator[ObjectPage]:
        check_prefix(prefix)
        pages = self._client.list_blobs(
            self._bucket, prefix=prefix, page_size=LIST_PAGE_SIZE, retry=self._retry
        ).pages
        while (page := await self._call(_next_page, pages)) is not None:
            infos = [_object_info(blob) for blob in page if not blob.name.startswith(TEMP_PREFIX)]
            if infos:
                yield infos

    async def _compose_stage(
        self, names: Sequence[str], temporaries: MutableSequence[str]
    ) -> Sequence[str]:
        """Compose `names` by groups of 32 into temporaries; return the next stage's sources."""
        groups = [
            names[start : start + MAX_COMPOSE_SOURCES]
            for start in range(0, len(names), MAX_COMPOSE_SOURCES)
        ]
        stage: Names = []
        calls = []
        for group in groups:
            if len(group) == 1:
                stage.append(group[0])
                continue
            temporary = f"{COMPOSE_TEMP_PREFIX}{uuid.uuid4().hex}"
            temporaries.append(temporary)
            stage.append(temporary)
            calls.append(self._call(self._compose, group, temporary))
        # Wait for every group, even after a failure, so that no temporary appears after the
        # clean-up has deleted the others.
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return stage

    def _window_end(self, position: int, stop: int | None) -> int:
        end = position + self._read_window
        return end if stop is None else min(end, stop)

    def _list_one(self) -> None:
        blobs = self._client.list_blobs(
            self._bucket, max_results=1, timeout=self._ping_timeout, retry=None
        )
        next(iter(blobs), None)

    def _download(self, blob: Any, start: int, end: int) -> bytes:
        """Bytes `start` to `end` (exclusive) of `blob`; empty when `start` is past its end."""
        try:
            data = blob.download_as_bytes(
                start=start, end=end - 1, raw_download=True, checksum=None, retry=self._retry
            )
        except RequestRangeNotSatisfiable:
            return b""
        return cast(bytes, data)

    def _compose(self, names: Sequence[str], destination: str) -> int:
        target = self._bucket.blob(destination)
        # Composing onto one of the sources appends: retrying after a lost reply would append
        # twice, so only a compose into a fresh name is retried.
        retry = None if destination in names else self._retry
        target.compose([self._bucket.blob(name) for name in names], retry=retry)
        return int(target.size)

    def _rewrite(self, source: str, destination: str) -> int:
        source_blob = self._bucket.blob(source)
        target = self._bucket.blob(destination)
        token, _, total = target.rewrite(source_blob, retry=self._retry)
        while token is not None:
            token, _, total = target.rewrite(source_blob, token=token, retry=self._retry)
        return int(total)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        if self._owns_client:
            self._client.close()


def _storage_error(exc: Exception) -> StorageError | None:
    """The storage error a client exception stands for, or None when it is not one."""
    if isinstance(exc, InvalidResponse) and exc.response is not None:
        # Upload requests fail with the media layer's own type; read its HTTP status.
        exc = from_http_response(exc.response)  # type: ignore[no-untyped-call]
    if isinstance(exc, NotFound):
        return ObjectNotFound(str(exc))
    if isinstance(exc, _UNAVAILABLE):
        return StorageUnavailable(str(exc))
    return None


def _abandon_upload(writer: Any, pending: concurrent.futures.Future[Any] | None) -> None:
    """Cancel a resumable upload that must never be finalized."""
    if pending is not None:
        concurrent.futures.wait([pending])
    try:
        with suppress(Exception):
            writer.terminate()
    finally:
        if not writer.closed:
            # terminate() closes the buffer only after its DELETE request succeeded. An open
            # buffer would let the writer's finalizer (IOBase.__del__ calls close()) finalize
            # the partial upload, making it visible.
            writer._buffer.close()


def _next_page(pages: Any) -> list[Any] | None:
    page = next(pages, None)
    return None if page is None else list(page)


def _object_info(blob: Any) -> ObjectInfo:
    return ObjectInfo(key=blob.name, size=int(blob.size), updated=cast(datetime, blob.updated))
