"""schema.sql applies to an empty database, again without change, and keeps the seed's tables."""

from __future__ import annotations

import asyncpg

from registry_common.db.schema import apply_schema
from tests.fixtures.database import admin_execute, with_database

SEED_COLUMNS = {
    "repositories": {"name", "namespace", "created_at"},
    "manifests": {"repository", "digest", "created_at"},
    "tags": {"repository", "tag", "digest", "created_at"},
    "blobs": {"repository", "digest", "size", "created_at"},
    "manifest_blobs": {"repository", "manifest_digest", "blob_digest"},
    "project_storage_usage": {"namespace", "size", "updated_at"},
}
ADDED_COLUMNS = {
    "manifests": {"content", "media_type", "size", "subject", "artifact_type"},
    "upload_sessions": {"id", "repository", "size", "hash_state"},
    "manifest_children": {"parent_digest", "child_digest"},
    "blob_objects": {"digest", "size", "created_at"},
}


async def _columns(connection: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await connection.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    )
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    return columns


async def test_schema_has_seed_tables_and_additions(db: asyncpg.Connection) -> None:
    columns = await _columns(db)
    for table, expected in {**SEED_COLUMNS}.items():
        assert expected <= columns[table], table
    for table, expected in ADDED_COLUMNS.items():
        assert expected <= columns[table], table


async def test_applying_schema_twice_changes_nothing(db_url: str, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO repositories (name, namespace) VALUES ('p/app', 'p')")
    before = await _columns(db)
    await apply_schema(db_url)
    await apply_schema(db_url)
    assert await _columns(db) == before
    assert await db.fetchval("SELECT count(*) FROM repositories") == 1


async def test_schema_applies_to_an_empty_database(postgres_server_url: str) -> None:
    name = "registry_empty_schema_check"
    await admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_execute(postgres_server_url, f'CREATE DATABASE "{name}"')
    try:
        url = with_database(postgres_server_url, name)
        await apply_schema(url)
        connection = await asyncpg.connect(url)
        try:
            assert set(SEED_COLUMNS) <= set(await _columns(connection))
        finally:
            await connection.close()
    finally:
        await admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
