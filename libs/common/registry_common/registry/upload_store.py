"""Upload rules: sessions, chunks, resumable digest state, verification before anything is
visible.

A chunk is stored as its own object under `uploads/<id>/` and recorded in the session with a
compare-and-set on the offset, so PATCHes of one upload may reach different replicas and a
stale or racing chunk is refused rather than spliced in (docs/consistency.md, "Uploads").
Finishing composes the chunks, verifies the digest, and only then commits the blob
(blob_store.commit_blob).

Sessions are storage nobody is billed for, so each project is bounded (UploadLimits): open
sessions, bytes held by them (checked by the database under a row lock, so every replica sees
the same count: invariant 11 of docs/consistency.md), and an age past which a session is
expired however busy it is.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from registry_common import metrics
from registry_common.db import uploads
from registry_common.db.uploads import AppendOutcome, UploadSession
from registry_common.errors import (
    DigestMismatch,
    RangeInvalid,
    SizeInvalid,
    UploadInvalid,
    UploadLimitExceeded,
    UploadUnknown,
)
from registry_common.oci.digests import Digest, ResumableHasher
from registry_common.oci.names import RepositoryName
from registry_common.registry.blob_store import commit_blob
from registry_common.settings import Settings
from registry_common.storage.base import ObjectStore, SizeLimitExceeded
from registry_common.storage.layout import upload_blob_key, upload_part_key, upload_prefix

# More chunks than this in one upload is abuse, not a client: each one is a row entry and an
# object to compose.
MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """What one project's upload sessions may hold."""

    sessions: int
    staged_bytes: int
    max_age: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """UPLOAD_SESSIONS_PER_PROJECT, UPLOAD_BYTES_PER_PROJECT and UPLOAD_MAX_AGE."""
        return cls(
            settings.upload_sessions_per_project,
            settings.upload_bytes_per_project,
            settings.upload_max_age,
        )


async def start_upload(
    pool: asyncpg.Pool, repository: RepositoryName, limits: UploadLimits
) -> UploadSession:
    """Open an upload session in `repository`; UploadLimitExceeded when its project has as
    many open as it may."""
    hasher = ResumableHasher("sha256")
    session = await uploads.create_upload(
        pool, repository.full, repository.project, hasher.export_state(), limits.sessions
    )
    if session is None:
        raise UploadLimitExceeded(
            f"the project has {limits.sessions} uploads in progress, as many as it may; "
            "finish or cancel some",
            limit=limits.sessions,
        )
    return session


async def upload_status(
    pool: asyncpg.Pool, repository: RepositoryName, upload_id: str, limits: UploadLimits
) -> UploadSession:
    """The session `upload_id` of `repository`; UploadUnknown when there is none (a session of
    another repository is unknown here) or it is older than the limits allow."""
    try:
        session_id = uuid.UUID(upload_id)
    except ValueError:
        raise UploadUnknown from None
    session = await uploads.get_upload(pool, session_id, repository.full, limits.max_age)
    if session is None:
        raise UploadUnknown
    return session


async def append_chunk(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    upload_id: str,
    chunks: AsyncIterable[bytes],
    limits: UploadLimits,
    *,
    start: int | None = None,
    length: int | None = None,
) -> UploadSession:
    """Store one chunk of the upload and record it; returns the updated session.

    `start` and `length` come from `Content-Range` when the client sent one: the chunk must
    start where the upload stands and carry exactly that many bytes. A chunk that would take
    the project's staged bytes past its limit is refused (UploadLimitExceeded), as a whole.
    """
    session = await upload_status(pool, repository, upload_id, limits)
    return await _append(pool, store, session, chunks, limits, start=start, length=length)


async def _append(
    pool: asyncpg.Pool,
    store: ObjectStore,
    session: UploadSession,
    chunks: AsyncIterable[bytes],
    limits: UploadLimits,
    *,
    start: int | None,
    length: int | None,
) -> UploadSession:
    if start is not None and start != session.size:
        raise RangeInvalid(session.size)
    if len(session.part_keys) >= MAX_PARTS:
        raise UploadInvalid(f"an upload takes at most {MAX_PARTS} chunks")
    room = limits.staged_bytes - session.staged_in_project
    if length is not None and length > room:
        raise _over_limit(limits)
    hasher = ResumableHasher("sha256", session.hash_state)
    key = upload_part_key(str(session.id), len(session.part_keys), secrets.token_hex(4))
    written = await _write_exact(store, key, chunks, hasher.update, length, room=room)
    if written == 0:
        await store.delete(key)
        return session
    outcome, staged = await uploads.append_part(
        pool, session, key, written, hasher.export_state(), limits.staged_bytes
    )
    if outcome is not AppendOutcome.APPENDED:
        await store.delete(key)
        if outcome is AppendOutcome.OVER_LIMIT:
            raise _over_limit(limits)
        current = await uploads.get_upload(pool, session.id, session.repository, limits.max_age)
        if current is None:
            raise UploadUnknown
        raise RangeInvalid(current.size)
    metrics.UPLOAD_STAGED_BYTES.labels(session.project).set(staged)
    return UploadSession(
        id=session.id,
        repository=session.repository,
        size=session.size + written,
        part_keys=[*session.part_keys, key],
        hash_state=hasher.export_state(),
        created_at=session.created_at,
        staged_in_project=staged,
    )


def _over_limit(limits: UploadLimits) -> UploadLimitExceeded:
    return UploadLimitExceeded(
        f"the project's uploads in progress would hold more than {limits.staged_bytes} bytes; "
        "finish or cancel some",
        limit=limits.staged_bytes,
    )


async def finish_upload(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    upload_id: str,
    digest: Digest,
    limits: UploadLimits,
    chunks: AsyncIterable[bytes] | None = None,
    *,
    start: int | None = None,
    length: int | None = None,
) -> int:
    """Finish an upload with its digest, and `chunks` when the request carries (the last part
    of) the data: verify, commit the blob, remove the session; returns the blob size.

    On a mismatch the session and its data are removed and DigestMismatch is raised: nothing
    of the upload remains.
    """
    session = await upload_status(pool, repository, upload_id, limits)
    if chunks is None:
        return await _finish(pool, store, repository, session, digest)
    return await _finish_with_body(
        pool, store, repository, session, digest, chunks, limits, start=start, length=length
    )


async def cancel_upload(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    upload_id: str,
    limits: UploadLimits,
) -> None:
    """Abandon an upload: its session and all its temporary data."""
    await discard_session(pool, store, await upload_status(pool, repository, upload_id, limits))


async def _finish(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    session: UploadSession,
    digest: Digest,
) -> int:
    if len(session.part_keys) == 1:
        assembled = session.part_keys[0]  # one chunk is the blob already: no copy
    else:
        assembled = upload_blob_key(str(session.id), secrets.token_hex(4))
    if digest.algorithm == "sha256":
        actual = ResumableHasher("sha256", session.hash_state).digest()
        if actual != str(digest):
            await discard_session(pool, store, session)
            raise _mismatch(digest, actual)
    if assembled not in session.part_keys:
        await store.compose(session.part_keys, assembled)
    if digest.algorithm != "sha256":
        actual = await _digest_of_object(store, assembled, digest.algorithm)
        if actual != str(digest):
            await discard_session(pool, store, session)
            raise _mismatch(digest, actual)
    await commit_blob(pool, store, repository, str(digest), session.size, assembled)
    await discard_session(pool, store, session)
    return session.size


async def _finish_with_body(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    session: UploadSession,
    digest: Digest,
    chunks: AsyncIterable[bytes],
    limits: UploadLimits,
    *,
    start: int | None,
    length: int | None,
) -> int:
    """When the PUT carries all of the data (POST then PUT, the usual push of a small layer)
    the body is verified as it streams and committed directly, without a chunk to record and
    compose."""
    if session.size or session.part_keys or start not in (None, 0):
        session = await _append(pool, store, session, chunks, limits, start=start, length=length)
        return await _finish(pool, store, repository, session, digest)
    key = upload_blob_key(str(session.id), secrets.token_hex(4))
    try:
        size = await _store_verified(store, key, digest, chunks, length)
    except (DigestMismatch, SizeInvalid):
        await discard_session(pool, store, session)
        raise
    await commit_blob(pool, store, repository, str(digest), size, key)
    await discard_session(pool, store, session)
    return size


async def upload_whole(
    pool: asyncpg.Pool,
    store: ObjectStore,
    repository: RepositoryName,
    digest: Digest,
    chunks: AsyncIterable[bytes],
) -> int:
    """Monolithic upload (POST with the body): stream, verify, commit; returns the size."""
    key = upload_blob_key(secrets.token_hex(16), "whole")
    size = await _store_verified(store, key, digest, chunks, None)
    await commit_blob(pool, store, repository, str(digest), size, key)
    return size


async def _store_verified(
    store: ObjectStore,
    key: str,
    digest: Digest,
    chunks: AsyncIterable[bytes],
    length: int | None,
) -> int:
    """Write `chunks` at `key` hashing them; DigestMismatch (nothing left) on a mismatch,
    SizeInvalid when `length` was declared and the body differs."""
    hasher = hashlib.new(digest.algorithm)
    size = await _write_exact(store, key, chunks, hasher.update, length)
    actual = f"{digest.algorithm}:{hasher.hexdigest()}"
    if actual != str(digest):
        await store.delete(key)
        raise _mismatch(digest, actual)
    return size


async def discard_session(pool: asyncpg.Pool, store: ObjectStore, session: UploadSession) -> None:
    """Remove a session and all its temporary data (finished, cancelled or expired)."""
    staged = await uploads.delete_upload(pool, session.id, session.repository)
    if staged is not None:
        metrics.UPLOAD_STAGED_BYTES.labels(session.project).set(staged)
    await store.delete_prefix(upload_prefix(str(session.id)))


async def _write_exact(
    store: ObjectStore,
    key: str,
    chunks: AsyncIterable[bytes],
    on_chunk: Callable[[bytes], None],
    length: int | None,
    *,
    room: int | None = None,
) -> int:
    """Write `chunks` at `key`; SizeInvalid (nothing left) when `length` was declared (by
    Content-Range) and the body has another length, UploadLimitExceeded when the body is
    longer than `room` (what the project may still stage)."""
    limit = length if room is None or (length is not None and length <= room) else room
    try:
        size = await store.write(key, chunks, on_chunk=on_chunk, max_size=limit)
    except SizeLimitExceeded:
        if limit != length:
            raise UploadLimitExceeded(
                "the project's uploads in progress would hold more bytes than it may"
            ) from None
        raise SizeInvalid("body is longer than its Content-Range") from None
    if length is not None and size != length:
        await store.delete(key)
        raise SizeInvalid(
            "body length does not match Content-Range", declared=length, received=size
        )
    return size


async def _digest_of_object(store: ObjectStore, key: str, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    async for chunk in store.read(key):
        hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def _mismatch(expected: Digest, actual: str) -> DigestMismatch:
    return DigestMismatch(expected=str(expected), actual=actual)
