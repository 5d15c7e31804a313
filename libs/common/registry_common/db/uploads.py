"""SQL of upload sessions and of each project's upload usage.

Every replica may receive any request of an upload, so the session (offset, chunk keys, digest
state) lives here. A chunk is appended with compare-and-set on the offset: of two racing PATCHes
at the same offset one wins and the other is told the range is stale.

`upload_usage` counts, per project, the open sessions and the bytes they hold; the statements
that open, grow and close sessions keep it exact, and the limits are checked against it under
its row lock, so replicas racing each other cannot go past them (invariant 11 of
docs/consistency.md). Locks are taken session row first, usage row second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from registry_common.db import Connection, Executor


@dataclass(frozen=True, slots=True)
class UploadSession:
    """One upload in progress; `staged_in_project` is what all open sessions of its project
    held when it was read."""

    id: uuid.UUID
    repository: str
    size: int
    part_keys: list[str]
    hash_state: bytes | None
    created_at: datetime
    staged_in_project: int = 0

    @property
    def project(self) -> str:
        """The project the session's repository belongs to."""
        return self.repository.split("/", 1)[0]


def _session(row: asyncpg.Record) -> UploadSession:
    return UploadSession(
        id=row["id"],
        repository=row["repository"],
        size=row["size"],
        part_keys=list(row["part_keys"]),
        hash_state=row["hash_state"],
        created_at=row["created_at"],
        staged_in_project=row["staged_bytes"] or 0,
    )


async def create_upload(
    db: Executor, repository: str, project: str, hash_state: bytes, max_sessions: int
) -> UploadSession | None:
    """Open a session for `repository`; None when `project` already has `max_sessions` open.

    One statement: the usage row is incremented only while under the limit (locking it), and
    the session is inserted only when it was.
    """
    row = await db.fetchrow(
        """
        WITH usage AS (
            INSERT INTO upload_usage AS u (project, sessions) VALUES ($3, 1)
            ON CONFLICT (project) DO UPDATE SET sessions = u.sessions + 1
            WHERE u.sessions < $4
            RETURNING staged_bytes
        ), s AS (
            INSERT INTO upload_sessions (id, repository, hash_state)
            SELECT $1, $2, $5 WHERE EXISTS (SELECT 1 FROM usage)
            RETURNING *
        )
        SELECT s.id, s.repository, s.size, s.part_keys, s.hash_state, s.created_at,
               (SELECT staged_bytes FROM usage) AS staged_bytes
        FROM s
        """,
        uuid.uuid4(),
        repository,
        project,
        max_sessions,
        hash_state,
    )
    return None if row is None else _session(row)


async def get_upload(
    db: Executor, upload_id: uuid.UUID, repository: str, max_age: timedelta
) -> UploadSession | None:
    """The session, only when it belongs to `repository` and is younger than `max_age` (an
    older one is expired, whatever its activity)."""
    row = await db.fetchrow(
        """
        SELECT s.id, s.repository, s.size, s.part_keys, s.hash_state, s.created_at,
               u.staged_bytes
        FROM upload_sessions s
        LEFT JOIN upload_usage u ON u.project = split_part(s.repository, '/', 1)
        WHERE s.id = $1 AND s.repository = $2 AND s.created_at > now() - $3::interval
        """,
        upload_id,
        repository,
        max_age,
    )
    return None if row is None else _session(row)


class AppendOutcome(StrEnum):
    APPENDED = "appended"
    STALE = "stale"  # the session moved (or is gone) since it was read
    OVER_LIMIT = "over limit"  # the project's staged bytes would pass the limit


async def append_part(
    pool: asyncpg.Pool,
    session: UploadSession,
    part_key: str,
    added: int,
    hash_state: bytes,
    max_staged_bytes: int,
) -> tuple[AppendOutcome, int]:
    """Record a stored chunk if the session is still where `session` saw it and the project's
    staged bytes stay within `max_staged_bytes`; the outcome, and the project's staged bytes."""
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            outcome, staged = await _append_part(
                connection, session, part_key, added, hash_state, max_staged_bytes
            )
        except BaseException:
            await transaction.rollback()
            raise
        if outcome is AppendOutcome.APPENDED:
            await transaction.commit()
        else:
            await transaction.rollback()  # a refused chunk leaves the session as it was
    return outcome, staged


async def _append_part(
    connection: Connection,
    session: UploadSession,
    part_key: str,
    added: int,
    hash_state: bytes,
    max_staged_bytes: int,
) -> tuple[AppendOutcome, int]:
    # The session row first (compare-and-set on the offset), then the usage row.
    moved = await connection.fetchval(
        """
        UPDATE upload_sessions
        SET size = size + $5, part_keys = array_append(part_keys, $4), hash_state = $6,
            updated_at = now()
        WHERE id = $1 AND repository = $2 AND size = $3 AND cardinality(part_keys) = $7
        RETURNING 1
        """,
        session.id,
        session.repository,
        session.size,
        part_key,
        added,
        hash_state,
        len(session.part_keys),
    )
    if moved is None:
        return AppendOutcome.STALE, session.staged_in_project
    staged: int | None = await connection.fetchval(
        """
        UPDATE upload_usage SET staged_bytes = staged_bytes + $2
        WHERE project = $1 AND staged_bytes + $2 <= $3
        RETURNING staged_bytes
        """,
        session.project,
        added,
        max_staged_bytes,
    )
    if staged is None:
        return AppendOutcome.OVER_LIMIT, session.staged_in_project
    return AppendOutcome.APPENDED, staged


async def delete_upload(db: Executor, upload_id: uuid.UUID, repository: str) -> int | None:
    """Remove the session row; the project's staged bytes after it, or None when it was gone."""
    staged: int | None = await db.fetchval(
        """
        WITH gone AS (
            DELETE FROM upload_sessions WHERE id = $1 AND repository = $2 RETURNING size
        )
        UPDATE upload_usage
        SET sessions = greatest(sessions - 1, 0),
            staged_bytes = greatest(staged_bytes - (SELECT size FROM gone), 0)
        WHERE project = split_part($2, '/', 1) AND EXISTS (SELECT 1 FROM gone)
        RETURNING staged_bytes
        """,
        upload_id,
        repository,
    )
    return staged


async def expired_uploads(
    db: Executor, updated_before: datetime, created_before: datetime, limit: int
) -> list[UploadSession]:
    """Sessions untouched since `updated_before`, or opened before `created_before` whatever
    their activity; oldest first."""
    rows = await db.fetch(
        """
        SELECT s.id, s.repository, s.size, s.part_keys, s.hash_state, s.created_at,
               NULL::bigint AS staged_bytes
        FROM upload_sessions s
        WHERE s.updated_at < $1 OR s.created_at < $2
        ORDER BY s.updated_at
        LIMIT $3
        """,
        updated_before,
        created_before,
        limit,
    )
    return [_session(row) for row in rows]


async def existing_upload_ids(db: Executor, upload_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `upload_ids` still have a session row."""
    rows = await db.fetch("SELECT id FROM upload_sessions WHERE id = ANY($1::uuid[])", upload_ids)
    return {row["id"] for row in rows}
