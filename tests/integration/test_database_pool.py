"""The test database pool (tests/fixtures/database.py) hands every test a database as empty and
as unreachable by earlier tests as a fresh clone of the template.

These tests run a pool of their own over a template with what schema.sql does not have yet: a
sequence, an identity column, a RESTRICT foreign key and a self-reference. Whether a database
was recycled or cloned anew is told by its OID, which a rename keeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.fixtures.database import (
    DatabasePool,
    PooledDatabase,
    admin_execute,
    open_pool,
    scratch_database,
)

TEMPLATE_SCHEMA = """
CREATE SEQUENCE numbers;
CREATE TABLE parents (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text UNIQUE);
CREATE TABLE children (
    parent bigint NOT NULL REFERENCES parents (id) ON DELETE RESTRICT,
    tag text NOT NULL,
    number bigint NOT NULL DEFAULT nextval('numbers')
);
CREATE INDEX children_tag_idx ON children (tag);
CREATE TABLE nodes (id int PRIMARY KEY, parent int REFERENCES nodes (id));
"""

# Changes beyond rows, each of which the pool must notice.
SCHEMA_CHANGES = {
    "create-table": "CREATE TABLE extra (id int)",
    "add-column": "ALTER TABLE children ADD COLUMN extra text",
    "drop-index": "DROP INDEX children_tag_idx",
    "set-default": "ALTER TABLE children ALTER COLUMN tag SET DEFAULT 'x'",
    "create-function": "CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
    "create-schema": "CREATE SCHEMA elsewhere",
    "comment": "COMMENT ON TABLE parents IS 'changed'",
    "grant": "GRANT SELECT ON parents TO PUBLIC",
    "large-object": "SELECT lo_create(0)",
    "database-setting": "ALTER DATABASE {database} SET work_mem = '8MB'",
    "database-comment": "COMMENT ON DATABASE {database} IS 'changed'",
}


@pytest.fixture(scope="module")
def pool_template(postgres_server_url: str) -> Iterator[str]:
    """A template database with TEMPLATE_SCHEMA."""

    async def create(url: str) -> None:
        await admin_execute(url, TEMPLATE_SCHEMA)

    with scratch_database(postgres_server_url, "pool_template", create) as name:
        yield name


@pytest.fixture(scope="module")
def pool(postgres_server_url: str, pool_template: str) -> Iterator[DatabasePool]:
    """A pool of clones of `pool_template`, for every test of this module."""
    with open_pool(postgres_server_url, pool_template) as database_pool:
        yield database_pool


@pytest.fixture
async def admin(postgres_server_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the server's maintenance database."""
    connection = await asyncpg.connect(postgres_server_url)
    yield connection
    await connection.close()


async def database_oid(admin: asyncpg.Connection, name: str) -> int | None:
    oid: int | None = await admin.fetchval("SELECT oid FROM pg_database WHERE datname = $1", name)
    return oid


async def fill(connection: asyncpg.Connection) -> None:
    """Rows in every table, a used sequence, and a session advisory lock."""
    await connection.execute("""
        INSERT INTO parents (name) VALUES ('a'), ('b');
        INSERT INTO children (parent, tag) SELECT id, name FROM parents;
        INSERT INTO nodes VALUES (1, NULL), (2, 1);
        SELECT nextval('numbers');
        SELECT pg_advisory_lock(7);
    """)


async def borrow(pool: DatabasePool) -> tuple[PooledDatabase, asyncpg.Connection]:
    database = await pool.acquire()
    return database, await asyncpg.connect(pool.url(database))


async def test_a_recycled_database_is_empty_with_its_sequences_restarted(
    pool: DatabasePool, admin: asyncpg.Connection
) -> None:
    first, connection = await borrow(pool)
    first_oid = await database_oid(admin, first.name)
    await fill(connection)
    await pool.release(first)
    connection.terminate()

    second, connection = await borrow(pool)
    try:
        assert await database_oid(admin, second.name) == first_oid  # recycled
        for table in ("parents", "children", "nodes"):
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        assert await connection.fetchval("SELECT nextval('numbers')") == 1
        assert (
            await connection.fetchval("INSERT INTO parents (name) VALUES ('c') RETURNING id") == 1
        )
        assert await connection.fetchval("SELECT pg_try_advisory_lock(7)") is True
    finally:
        await connection.close()
        await pool.release(second)


async def test_a_released_database_is_out_of_reach_of_what_its_test_left(
    pool: DatabasePool, admin: asyncpg.Connection
) -> None:
    first, leftover = await borrow(pool)
    old_url = pool.url(first)
    await pool.release(first)

    assert first.name != old_url.rsplit("/", 1)[1]
    assert await database_oid(admin, old_url.rsplit("/", 1)[1]) is None
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
        await leftover.fetchval("SELECT 1")  # its session was terminated
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(old_url)  # and its name is gone
    leftover.terminate()


@pytest.mark.parametrize("change", SCHEMA_CHANGES.values(), ids=SCHEMA_CHANGES.keys())
async def test_a_database_whose_schema_changed_is_replaced_by_a_fresh_clone(
    pool: DatabasePool, admin: asyncpg.Connection, change: str
) -> None:
    first, connection = await borrow(pool)
    first_oid = await database_oid(admin, first.name)
    await connection.execute(change.format(database=f'"{first.name}"'))
    await connection.close()
    await pool.release(first)

    second, connection = await borrow(pool)
    try:
        assert await database_oid(admin, second.name) != first_oid
        assert await connection.fetchval("SELECT to_regclass('extra')") is None
        assert await connection.fetchval("SELECT count(*) FROM pg_largeobject_metadata") == 0
        assert await connection.fetchval("SELECT current_setting('work_mem')") != "8MB"
    finally:
        await connection.close()
        await pool.release(second)
    assert await database_oid(admin, first.name) is None  # dropped


async def test_a_database_dropped_by_its_test_is_forgotten(
    pool: DatabasePool, admin: asyncpg.Connection
) -> None:
    first, connection = await borrow(pool)
    await connection.close()
    await admin.execute(f'DROP DATABASE "{first.name}"')
    await pool.release(first)
    second, connection = await borrow(pool)
    await connection.close()
    await pool.release(second)
    assert await database_oid(admin, second.name) is not None
