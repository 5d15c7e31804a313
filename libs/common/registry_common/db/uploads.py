"""SQL of upload sessions.

Every replica may receive any request of an upload, so the session (offset, chunk keys, digest
state) lives here. A chunk is appended with compare-and-set on the offset: of two racing PATCHes
at the same offset one wins and the other is told the range is stale.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from registry_common.db import Executor


@dataclass(frozen=True, slots=True)
class UploadSession:
    """One upload in progress."""

    id: uuid.UUID
    repository: str
    size: int
    part_keys: list[str]
    hash_state: bytes | None
    created_at: datetime


async def create_upload(db: Executor, repository: str, hash_state: bytes) -> UploadSession:
    """Open a session for `repository`."""
    row = await db.fetchrow(
        """
        INSERT INTO upload_sessions (id, repository, hash_state) VALUES ($1, $2, $3)
        RETURNING id, repository, size, part_keys, hash_state, created_at
        """,
        uuid.uuid4(),
        repository,
        hash_state,
    )
    assert row is not None
    return _session(row)


async def get_upload(db: Executor, upload_id: uuid.UUID, repository: str) -> UploadSession | None:
    """The session, only when it belongs to `repository`."""
    row = await db.fetchrow(
        """
        SELECT id, repository, size, part_keys, hash_state, created_at FROM upload_sessions
        WHERE id = $1 AND repository = $2
        """,
        upload_id,
        repository,
    )
    return None if row is None else _session(row)


def _session(row: asyncpg.Record) -> UploadSession:
    return UploadSession(
        id=row["id"],
        repository=row["repository"],
        size=row["size"],
        part_keys=list(row["part_keys"]),
        hash_state=row["hash_state"],
        created_at=row["created_at"],
    )


async def append_part(
    db: Executor,
    session: UploadSession,
    part_key: str,
    added: int,
    hash_state: bytes,
) -> bool:
    """Record a stored chunk if the session is still where `session` saw it; False otherwise."""
    status: str = await db.execute(
        """
        UPDATE upload_sessions
        SET size = size + $5, part_keys = array_append(part_keys, $4), hash_state = $6,
            updated_at = now()
        WHERE id = $1 AND repository = $2 AND size = $3 AND cardinality(part_keys) = $7
        """,
        session.id,
        session.repository,
        session.size,
        part_key,
        added,
        hash_state,
        len(session.part_keys),
    )
    return status == "UPDATE 1"


async def delete_upload(db: Executor, upload_id: uuid.UUID, repository: str) -> bool:
    """Remove the session row; True when it existed."""
    status: str = await db.execute(
        "DELETE FROM upload_sessions WHERE id = $1 AND repository = $2", upload_id, repository
    )
    return status == "DELETE 1"


async def expired_uploads(
    db: Executor, updated_before: datetime, limit: int
) -> list[UploadSession]:
    """Sessions untouched since `updated_before`, oldest first."""
    rows = await db.fetch(
        """
        SELECT id, repository, size, part_keys, hash_state, created_at FROM upload_sessions
        WHERE updated_at < $1
        ORDER BY updated_at
        LIMIT $2
        """,
        updated_before,
        limit,
    )
    return [_session(row) for row in rows]


async def existing_upload_ids(db: Executor, upload_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `upload_ids` still have a session row."""
    rows = await db.fetch("SELECT id FROM upload_sessions WHERE id = ANY($1::uuid[])", upload_ids)
    return {row["id"] for row in rows}
