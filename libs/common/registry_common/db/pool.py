"""The asyncpg connection pool shared by a process's request handlers and jobs."""

from __future__ import annotations

import asyncpg

from registry_common.settings import Settings

# PostgreSQL errors that mean "the database is unreachable", not "the query was wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset: nothing to undo. asyncpg's default reset (unlock advisory locks, close
    cursors, unlisten, RESET ALL) is a second round trip on every release; this code sets no
    session state, and the one session-level advisory lock (jobs.runner) is released by its
    holder. Open transactions are still rolled back by asyncpg itself."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """Open a pool to DB_URL; connections open lazily, so a down database does not stop start."""
    pool = await asyncpg.create_pool(
        settings.require_db_url(),
        min_size=0,
        max_size=settings.db_pool_max_size,
        command_timeout=60,
        # Statements are short and parameterised; cache them per connection.
        statement_cache_size=256,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
    )
    return pool


async def ping(pool: asyncpg.Pool) -> None:
    """Raise unless a trivial query round-trips within a few seconds."""
    async with pool.acquire(timeout=5) as connection:
        await connection.fetchval("SELECT 1", timeout=5)
