"""Apply schema.sql to a database (the `registry-schema` command of registry_tools runs it)."""

from __future__ import annotations

from importlib.resources import files

import asyncpg

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
