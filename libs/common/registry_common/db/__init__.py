"""PostgreSQL access: the pool, the schema, and one module of SQL per aggregate."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# One connection (typically inside a transaction), direct or borrowed from the pool.
Connection = asyncpg.Connection | PoolConnectionProxy
# Either a pool (each call borrows a connection) or one connection.
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
