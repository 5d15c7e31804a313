"""`registry-schema` (`make db`): apply schema.sql to DB_URL."""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from registry_common.db.schema import apply_schema
from registry_common.settings import ConfigError, load_settings

COMMAND = "registry-schema"


def main() -> None:
    """Entry point of `registry-schema`: apply schema.sql to DB_URL."""
    try:
        dsn = load_settings().require_db_url()
        asyncio.run(apply_schema(dsn))
    except ConfigError as exc:
        sys.exit(f"{COMMAND}: configuration error: {exc}")
    except (OSError, asyncpg.PostgresError) as exc:
        sys.exit(f"{COMMAND}: cannot apply schema: {exc}")
    print(f"{COMMAND}: schema applied")
