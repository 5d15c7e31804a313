"""Object storage in a local directory: one file per key, replaced atomically.

Every write goes to a fresh file under `<root>/.tmp/` (same filesystem, so the final rename is
atomic) and is renamed onto the key only once complete; readers never see a partial file.
All file I/O runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, ParamSpec, TypeVar

from registry_common.storage.base import (
    READ_CHUNK_SIZE,
    TEMP_PREFIX,
    ChunkHook,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageUnavailable,
    check_key,
    check_prefix,
    check_range,
    checked_chunks,
)

P = ParamSpec("P")
T = TypeVar("T")

# Largest span handed to one copy_file_range call; the kernel may copy less and we loop.
_COPY_STEP = 1 << 30
# copy_file_range errors that mean "not supported here", answered with a plain copy.
_NO_COPY_FILE_RANGE = {errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}
# Errors that mean a path does not name a regular file.
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_EPOCH = datetime.fromtimestamp(0, UTC)


class _Entry(NamedTuple):
    sort_key: str  # the name, with "/" appended for folders, so siblings sort in key order
    name: str
    is_dir: bool
    size: int
    updated: datetime


class FilesystemStore(ObjectStore):
    """Objects as files under `root`: key `a/b/c` is the file `<root>/a/b/c`.

    The root must exist (`create_object_store` creates it at start-up); the store never creates
    it, so an unmounted volume shows up as StorageUnavailable instead of silently filling the
    disk underneath.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()
        self._temp_dir = self._root / TEMP_PREFIX.rstrip("/")

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return self._root

    async def ping(self) -> None:
        """Raise StorageUnavailable unless a file can be created and removed under the root."""
        try:
            await asyncio.to_thread(self._probe)
        except OSError as exc:
            raise StorageUnavailable(
                f"storage directory {self._root} is not usable: {exc}"
            ) from exc

    async def write(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        on_chunk: ChunkHook | None = None,
        max_size: int | None = None,
    ) -> int:
        """Stream `chunks` into a temporary file and rename it onto `key` once all passed."""
        path = self._path(key)
        temp_path, file = await _run_blocking(self._create_temp)
        size = 0
        try:
            async for chunk in checked_chunks(key, chunks, on_chunk=on_chunk, max_size=max_size):
                size += len(chunk)
                if chunk:
                    await _run_blocking(file.write, chunk)
            await _run_blocking(_commit, file, temp_path, path)
        except BaseException:
            # Shielded so that a second cancellation cannot leave the temporary file behind.
            await asyncio.shield(asyncio.to_thread(_discard, file, temp_path))
            raise
        return size

    async def read(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield `key`'s bytes from `offset`, at most `length` of them (see `ObjectStore.read`)."""
        path = self._path(key)
        check_range(offset, length)
        file = await _run_blocking(_open_at, path, key, offset)
        try:
            remaining = length
            while remaining is None or remaining > 0:
                wanted = READ_CHUNK_SIZE if remaining is None else min(READ_CHUNK_SIZE, remaining)
                data = await _run_blocking(file.read, wanted)
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            # Closing a file opened for reading does not wait on the disk.
            file.close()

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time of `key`'s file, or None when there is no such file."""
        path = self._path(key)
        return await _run_blocking(_stat, path, key)

    async def delete(self, key: str) -> bool:
        """Remove `key`'s file; True when it existed."""
        path = self._path(key)
        return await _run_blocking(_remove_file, path) == 1

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`, and the folders this empties."""
        check_prefix(prefix)
        return await _run_blocking(self._delete_prefix, prefix)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order, one folder read at a time."""
        check_prefix(prefix)
        folder, _, name_start = prefix.rpartition("/")
        key_prefix = f"{folder}/" if folder else ""
        async for info in self._walk(self._root / folder, key_prefix, name_start):
            yield info

    async def copy(self, source: str, destination: str) -> None:
        """Copy `source`'s file (copy_file_range when possible), then rename it into place."""
        source_path, destination_path = self._path(source), self._path(destination)
        await _run_blocking(self._build, [(source_path, source)], destination_path)

    async def move(self, source: str, destination: str) -> None:
        """Rename `source`'s file onto `destination` (atomic, no copy)."""
        source_path, destination_path = self._path(source), self._path(destination)
        await _run_blocking(_move, source_path, destination_path, source)

    async def compose(self, sources: Sequence[str], destination: str) -> int:
        """Concatenate the sources' files into a temporary file, then rename it into place."""
        parts = [(self._path(source), source) for source in sources]
        destination_path = self._path(destination)
        return await _run_blocking(self._build, parts, destination_path)

    def local_path(self, key: str) -> Path | None:
        """The file holding `key`, for sendfile; None when there is none.

        This checks with one stat(2) call on the calling thread: the interface is synchronous,
        and on a local disk that call does not wait for the device.
        """
        path = self._path(key)
        return path if path.is_file() else None

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    def _probe(self) -> None:
        temp_path, file = self._create_temp()
        file.close()
        temp_path.unlink()

    def _create_temp(self) -> tuple[Path, io.BufferedWriter]:
        # No `parents=True`: a missing root must fail, not be recreated.
        self._temp_dir.mkdir(exist_ok=True)
        temp_path = self._temp_dir / uuid.uuid4().hex
        return temp_path, temp_path.open("xb")

    def _build(self, parts: Sequence[tuple[Path, str]], destination: Path) -> int:
        """Write the concatenation of `parts` (path, key) at `destination`; return its size."""
        temp_path, file = self._create_temp()
        try:
            for path, key in parts:
                _append_file(path, key, file)
            file.flush()
            size = os.fstat(file.fileno()).st_size
            _commit(file, temp_path, destination)
        except BaseException:
            _discard(file, temp_path)
            raise
        return size

    async def _walk(
        self, directory: Path, key_prefix: str, name_start: str = ""
    ) -> AsyncIterator[ObjectInfo]:
        for entry in await _run_blocking(_scan, directory):
            if not entry.name.startswith(name_start) or self._is_temp(key_prefix, entry.name):
                continue
            key = key_prefix + entry.name
            if entry.is_dir:
                async for info in self._walk(directory / entry.name, f"{key}/"):
                    yield info
            else:
                yield ObjectInfo(key=key, size=entry.size, updated=entry.updated)

    def _delete_prefix(self, prefix: str) -> int:
        folder, _, name_start = prefix.rpartition("/")
        directory = self._root / folder
        removed = 0
        for entry in _scan(directory):
            if not entry.name.startswith(name_start) or self._is_temp(folder, entry.name):
                continue
            path = directory / entry.name
            removed += _remove_tree(path) if entry.is_dir else _remove_file(path)
        if folder and not name_start:
            # The prefix named a folder (`uploads/<id>/`): drop it too once empty. A concurrent
            # write may have refilled it, in which case it stays.
            with suppress(OSError):
                directory.rmdir()
        return removed

    @staticmethod
    def _is_temp(parent_key: str, name: str) -> bool:
        return not parent_key and f"{name}/" == TEMP_PREFIX


async def _run_blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `function` in a worker thread; an OSError there means the disk is unusable."""
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except OSError as exc:
        raise StorageUnavailable(str(exc)) from exc


def _open_at(path: Path, key: str, offset: int) -> io.BufferedReader:
    try:
        file = path.open("rb")
    except _MISSING as exc:
        raise ObjectNotFound(key) from exc
    file.seek(offset)
    return file


def _stat(path: Path, key: str) -> ObjectInfo | None:
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return ObjectInfo(
        key=key, size=status.st_size, updated=datetime.fromtimestamp(status.st_mtime, UTC)
    )


def _commit(file: io.BufferedWriter, temp_path: Path, destination: Path) -> None:
    """Make the temporary file durable, then rename it onto `destination`."""
    file.flush()
    os.fsync(file.fileno())
    file.close()
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(temp_path, destination)
    except FileNotFoundError:
        # A concurrent delete_prefix removed the freshly emptied parent folder; make it again.
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, destination)


def _discard(file: io.BufferedWriter, temp_path: Path) -> None:
    """Drop an abandoned temporary file."""
    with suppress(OSError):
        file.close()
    temp_path.unlink(missing_ok=True)


def _append_file(path: Path, key: str, out: io.BufferedWriter) -> None:
    """Append the content of the file at `path` (object `key`) to `out`."""
    try:
        source = path.open("rb")
    except _MISSING as exc:
        raise ObjectNotFound(key) from exc
    with source:
        out.flush()  # copy_file_range works on descriptors: buffered bytes must land first
        copied = 0
        try:
            while step := os.copy_file_range(source.fileno(), out.fileno(), _COPY_STEP):
                copied += step
        except OSError as exc:
            if copied or exc.errno not in _NO_COPY_FILE_RANGE:
                raise
            shutil.copyfileobj(source, out, READ_CHUNK_SIZE)


def _move(source: Path, destination: Path, source_key: str) -> None:
    if not source.is_file():
        raise ObjectNotFound(source_key)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except FileNotFoundError as exc:
        raise ObjectNotFound(source_key) from exc


def _scan(directory: Path) -> list[_Entry]:
    """The regular files and folders of `directory` in key order; empty when it is missing."""
    entries: list[_Entry] = []
    try:
        with os.scandir(directory) as scan:
            for item in scan:
                with suppress(FileNotFoundError):  # removed while we looked
                    if item.is_dir(follow_symlinks=False):
                        entries.append(_Entry(f"{item.name}/", item.name, True, 0, _EPOCH))
                    elif item.is_file(follow_symlinks=False):
                        status = item.stat(follow_symlinks=False)
                        updated = datetime.fromtimestamp(status.st_mtime, UTC)
                        entries.append(_Entry(item.name, item.name, False, status.st_size, updated))
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort(key=lambda entry: entry.sort_key)
    return entries


def _remove_file(path: Path) -> int:
    """Unlink `path`; 1 when it was there, else 0."""
    try:
        path.unlink()
    except _MISSING:
        return 0
    return 1


def _remove_tree(directory: Path) -> int:
    """Remove the files under `directory` and the folders this empties; return the file count."""
    removed = 0
    for current, _folders, files in os.walk(directory, topdown=False):
        for name in files:
            removed += _remove_file(Path(current, name))
        with suppress(OSError):
            os.rmdir(current)
    return removed
