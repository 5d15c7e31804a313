"""PostgreSQL access: the pool, the schema, and one module of SQL per aggregate."""

from __future__ import annotations

import asyncpg

# Either a pool (each call borrows a connection) or a connection inside a transaction.
Executor = asyncpg.Pool | asyncpg.Connection
