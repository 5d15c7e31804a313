"""The object storage interface every backend implements, and the errors it raises.

Keys are `/`-separated paths such as `blobs/sha256/ab/ab12...` (see `layout`): no leading `/`,
no empty, `.` or `..` segment, no backslash or NUL, and nothing under `.tmp/`, which backends
keep for their temporary data. Every backend rejects other keys with ValueError, so a key that
works on one works on all. Writes are atomic: a key holds either its complete previous content
or its complete new content, never a prefix, and a write that fails (a hook raised, the stream
broke, the size limit was hit, the task was cancelled) leaves the key as it was.

Reads follow slicing rules, like `content[offset:offset + length]`: a length past the end is
cut short, and a range that starts at or past the end yields no bytes. Only a missing key raises
ObjectNotFound.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from registry_common.errors import Unavailable

# Size of the pieces `read` yields.
READ_CHUNK_SIZE = 1024 * 1024

# Keys under this prefix belong to the backends (temporary files, staged composes).
TEMP_PREFIX = ".tmp/"


class StorageError(Exception):
    """Base of the storage errors."""


class ObjectNotFound(StorageError):
    """The key (or a source of a copy or compose) does not exist."""


class StorageUnavailable(StorageError, Unavailable):
    """The backend cannot be reached or answered with a server error: retry later."""


class SizeLimitExceeded(StorageError):
    """A streamed write went over its `max_size`; nothing was stored."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What `stat` and `list` tell about one object."""

    key: str
    size: int
    updated: datetime


ChunkHook = Callable[[bytes], None]


def check_key(key: str) -> str:
    """Return `key` unchanged when it is a valid object key (see the module doc), else raise."""
    if not key:
        raise ValueError("empty object key")
    _check_segments(key, key.split("/"))
    return key


def check_prefix(prefix: str) -> str:
    """Return `prefix` unchanged when keys may start with it, else raise ValueError.

    Like a key, except that it may be empty and its last segment may be empty or partial
    (`uploads/`, `uploads/ab`).
    """
    if prefix:
        segments = prefix.split("/")
        _check_segments(prefix, segments[:-1])
        _check_characters(prefix, segments[-1])
    return prefix


async def checked_chunks(
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    on_chunk: ChunkHook | None,
    max_size: int | None,
) -> AsyncIterator[bytes]:
    """`chunks` as given, once each is counted against `max_size` and shown to `on_chunk`.

    The part of `write` every backend shares: SizeLimitExceeded as soon as the total goes over
    `max_size`, before the offending chunk reaches the hook or the backend.
    """
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise SizeLimitExceeded(f"{key}: more than {max_size} bytes")
        if on_chunk is not None:
            on_chunk(chunk)
        yield chunk


def check_range(offset: int, length: int | None) -> None:
    """ValueError unless `offset` and `length` (when given) are not negative."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"invalid range: offset {offset}, length {length}")


def _check_segments(text: str, segments: list[str]) -> None:
    if segments and segments[0] + "/" == TEMP_PREFIX:
        raise ValueError(f"object key {text!r} is under the reserved {TEMP_PREFIX!r}")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValueError(f"object key {text!r} has an empty, '.' or '..' segment")
        _check_characters(text, segment)


def _check_characters(text: str, segment: str) -> None:
    if "\\" in segment or "\0" in segment:
        raise ValueError(f"object key {text!r} contains a backslash or NUL")


class ObjectStore(ABC):
    """Blob bytes and temporary upload data, on one backend."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise StorageUnavailable unless the backend answers (readiness)."""

    @abstractmethod
    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        on_chunk: ChunkHook | None = None,
        max_size: int | None = None,
    ) -> int:
        """Store the streamed bytes at `key`, replacing it atomically; return the byte count.

        `on_chunk` sees every chunk before it is stored (e.g. to feed a digest); if it raises,
        the write is abandoned. Going over `max_size` raises SizeLimitExceeded. Memory use is
        bounded by the chunk size, whatever the total.
        """

    @abstractmethod
    def read(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Yield the bytes of `key` from `offset`, `length` of them (all when None).

        Pieces are at most READ_CHUNK_SIZE long. A range past the end is cut short; one that
        starts at or past the end yields nothing. Raises ObjectNotFound on the first iteration
        when the key is missing, ValueError for a negative offset or length.
        """

    async def read_all(self, key: str) -> bytes:
        """The whole content of a small object."""
        return b"".join([chunk async for chunk in self.read(key)])

    @abstractmethod
    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time of `key`, or None when it does not exist."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove `key`; True when it existed."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`; return how many."""
        keys = [info.key async for info in self.list(prefix)]
        removed = 0
        for key in keys:
            removed += await self.delete(key)
        return removed

    @abstractmethod
    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order (never `.tmp/` ones)."""

    @abstractmethod
    async def copy(self, source: str, destination: str) -> None:
        """Copy an object inside the backend, without moving its bytes through this process.

        Raises ObjectNotFound when `source` is missing.
        """

    async def move(self, source: str, destination: str) -> None:
        """Make `source`'s content appear at `destination` and drop `source`.

        Raises ObjectNotFound when `source` is missing.
        """
        await self.copy(source, destination)
        await self.delete(source)

    @abstractmethod
    async def compose(self, sources: Sequence[str], destination: str) -> int:
        """Store the concatenation of `sources` (in order, any number) at `destination`.

        Returns the resulting size. The sources are left in place. No sources store an empty
        object. A missing source raises ObjectNotFound and leaves `destination` as it was.
        """

    def local_path(self, key: str) -> Path | None:
        """A filesystem path holding `key`'s bytes, for sendfile; None when there is none."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release clients and threads."""
