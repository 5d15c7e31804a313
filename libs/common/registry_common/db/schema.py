"""Apply schema.sql; also the `registry-migrate` command (`make db`)."""

from __future__ import annotations

import asyncio
import sys
from importlib.resources import files

import asyncpg

from registry_common.settings import ConfigError, load_settings

# Any constant shared by every process that applies the schema; serialises concurrent applies.
_SCHEMA_LOCK_KEY = 0x5245_4749_5354_5259  # "REGISTRY"


def schema_sql() -> str:
    """The text of schema.sql as shipped with this package."""
    return files("registry_common.db").joinpath("schema.sql").read_text()


async def apply_schema(dsn: str) -> None:
    """Create or complete every table and index; safe to run again and from several processes."""
    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK_KEY)
            await connection.execute(schema_sql())
    finally:
        await connection.close()


def main() -> None:
    """Entry point of `registry-migrate`: apply schema.sql to DB_URL."""
    try:
        dsn = load_settings().require_db_url()
        asyncio.run(apply_schema(dsn))
    except ConfigError as exc:
        sys.exit(f"registry-migrate: configuration error: {exc}")
    except (OSError, asyncpg.PostgresError) as exc:
        sys.exit(f"registry-migrate: cannot apply schema: {exc}")
    print("registry-migrate: schema applied")
