"""registry-migrate-d1: D1's tables into PostgreSQL, through a fake of Cloudflare's D1 API."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from rich.console import Console

from registry_common.jobs.base import JobContext, JobReport
from registry_common.jobs.index import index_manifests
from registry_common.settings import Settings
from registry_common.storage.filesystem import FilesystemStore
from registry_tools.migrate.d1 import BATCH_SIZE, D1Error, parse_d1_time
from registry_tools.migrate.progress import MigrationProgress, Outcome
from tests.fakes.d1_api import FakeD1Api
from tests.fixtures.distribution import sha256
from tests.fixtures.migration import (
    SmallRegistry,
    d1_env,
    run_command,
    run_d1_migration,
)


def _digest(seed: object) -> str:
    return sha256(str(seed).encode())


async def _table(db: asyncpg.Connection, sql: str) -> set[tuple[Any, ...]]:
    return {tuple(row) for row in await db.fetch(sql)}


async def test_d1_migration_copies_every_table_in_dependency_order(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection, legacy_registry: SmallRegistry
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_d1(d1_api)

    summary = await run_d1_migration(d1_api, db_url)

    assert summary.failed == 0, summary.render()
    for table, rows in legacy.rows.items():
        assert summary.kinds[table] == {Outcome.COPIED: len(rows)}, table
    assert await _table(db, "SELECT name, namespace FROM repositories") == {
        ("proj/app", "proj"),
        ("proj/tools", "proj"),
        ("other/lib", "other"),
    }
    # Manifest rows arrive without bytes; R2 or indexManifests fills them.
    assert await _table(
        db, "SELECT repository, digest, content IS NULL, media_type, size FROM manifests"
    ) == {(repository, digest, True, "", 0) for repository, digest in legacy.manifests}
    assert await _table(db, "SELECT repository, tag, digest FROM tags") == {
        (repository, tag, digest) for (repository, tag), digest in legacy.tags.items()
    }
    assert await _table(db, "SELECT repository, digest, size FROM blobs") == {
        (repository, digest, len(body)) for (repository, digest), body in legacy.blobs.items()
    }
    # Parents were read before children: every table's first query comes after its parent's.
    first_page = [
        next(i for i, query in enumerate(d1_api.queries) if f"FROM {table}\n" in query.sql)
        for table in ("repositories", "manifests", "tags", "blobs")
    ]
    assert first_page == sorted(first_page)


async def test_d1_times_are_kept_in_every_format_the_worker_wrote(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection
) -> None:
    digest = _digest("m")
    d1_api.insert("repositories", name="proj/a", namespace="proj", created_at="2023-04-05 06:07:08")
    d1_api.insert("repositories", name="proj/b", namespace="proj", created_at=1_700_000_000)
    d1_api.insert("repositories", name="proj/c", namespace="proj", created_at="yesterday")
    d1_api.insert(
        "manifests", repository="proj/a", digest=digest, created_at="2024-01-15T01:02:03Z"
    )
    d1_api.insert(
        "tags", repository="proj/a", tag="v1", digest=digest, created_at=1_710_000_000_000
    )
    d1_api.insert("blobs", repository="proj/a", digest=_digest("b"), size=3.0)

    started = datetime.now(UTC) - timedelta(seconds=5)
    summary = await run_d1_migration(d1_api, db_url)

    assert summary.failed == 0, summary.render()
    times = {row[0]: row[1] for row in await db.fetch("SELECT name, created_at FROM repositories")}
    assert times["proj/a"] == datetime(2023, 4, 5, 6, 7, 8, tzinfo=UTC)
    assert times["proj/b"] == datetime.fromtimestamp(1_700_000_000, UTC)
    assert times["proj/c"] >= started  # unreadable: the time of the import
    assert await db.fetchval("SELECT created_at FROM manifests") == datetime(
        2024, 1, 15, 1, 2, 3, tzinfo=UTC
    )
    tag_times = await db.fetchrow("SELECT created_at, updated_at FROM tags")
    assert tag_times is not None
    assert tuple(tag_times) == (datetime.fromtimestamp(1_710_000_000, UTC),) * 2
    assert await db.fetchval("SELECT size FROM blobs") == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15 00:00:00", datetime(2024, 1, 15, tzinfo=UTC)),
        ("2024-01-15 00:00:00.250", datetime(2024, 1, 15, 0, 0, 0, 250000, tzinfo=UTC)),
        ("2024-01-15T07:00:00+07:00", datetime(2024, 1, 15, tzinfo=UTC)),
        (1705276800, datetime(2024, 1, 15, tzinfo=UTC)),
        ("1705276800", datetime(2024, 1, 15, tzinfo=UTC)),
        (1705276800000, datetime(2024, 1, 15, tzinfo=UTC)),
        (None, None),
        ("not a time", None),
        (True, None),
    ],
)
def test_d1_time_values_are_read_as_utc(value: object, expected: datetime | None) -> None:
    assert parse_d1_time(value) == expected


async def test_d1_reads_1000_rows_per_request_in_key_order(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection
) -> None:
    total = 2 * BATCH_SIZE + 500
    d1_api.insert("repositories", name="proj/big", namespace="proj")
    d1_api.database.executemany(
        "INSERT INTO blobs (repository, digest, size) VALUES ('proj/big', ?, ?)",
        [(_digest(i), i) for i in range(total)],
    )
    d1_api.database.commit()

    summary = await run_d1_migration(d1_api, db_url)

    assert summary.kinds["blobs"] == {Outcome.COPIED: total}
    assert await db.fetchval("SELECT count(*) FROM blobs") == total
    pages = [query for query in d1_api.queries if "FROM blobs\n" in query.sql]
    assert len(pages) == 3
    assert all(f"LIMIT {BATCH_SIZE}" in query.sql for query in pages)
    ordered = sorted(_digest(i) for i in range(total))
    # Each page starts after the last key of the one before (keyset, not OFFSET).
    assert [query.params for query in pages] == [
        ["", ""],
        ["proj/big", ordered[BATCH_SIZE - 1]],
        ["proj/big", ordered[2 * BATCH_SIZE - 1]],
    ]


async def test_d1_rerun_skips_rows_that_exist_and_never_overwrites_them(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection, legacy_registry: SmallRegistry
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_d1(d1_api)
    await run_d1_migration(d1_api, db_url)
    await db.execute("UPDATE blobs SET size = 7 WHERE repository = 'proj/tools'")
    await db.execute("DELETE FROM tags WHERE repository = 'proj/tools'")

    summary = await run_d1_migration(d1_api, db_url)

    assert summary.failed == 0
    assert summary.total(Outcome.COPIED) == 1  # only the deleted tag comes back
    assert summary.total(Outcome.SKIPPED) == sum(map(len, legacy.rows.values())) - 1
    assert await db.fetchval("SELECT DISTINCT size FROM blobs WHERE repository = 'proj/tools'") == 7


async def test_d1_dry_run_reports_what_it_would_copy_and_writes_nothing(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection, legacy_registry: SmallRegistry
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_d1(d1_api)
    await db.execute("INSERT INTO repositories (name, namespace) VALUES ('proj/app', 'proj')")

    summary = await run_d1_migration(d1_api, db_url, dry_run=True)

    assert summary.dry_run
    assert summary.kinds["repositories"] == {Outcome.COPIED: 2, Outcome.SKIPPED: 1}
    assert summary.kinds["blobs"][Outcome.COPIED] == len(legacy.rows["blobs"])
    for table in ("manifests", "tags", "blobs"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await db.fetchval("SELECT count(*) FROM repositories") == 1


async def test_d1_rows_that_cannot_be_stored_are_reported_and_the_rest_is_copied(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection
) -> None:
    digest = _digest("m")
    d1_api.insert("repositories", name="proj/app", namespace="proj")
    d1_api.insert("repositories", name="Proj/Upper", namespace="Proj")
    d1_api.insert("repositories", name="single", namespace="single")
    # The namespace of this registry is always the project of the name.
    d1_api.insert("repositories", name="proj/moved", namespace="elsewhere")
    d1_api.insert("manifests", repository="proj/app", digest=digest)
    d1_api.insert("manifests", repository="proj/ghost", digest=digest)
    d1_api.insert("manifests", repository="proj/app", digest="sha256:XYZ")
    d1_api.insert("tags", repository="proj/app", tag="v1", digest=digest)
    d1_api.insert("tags", repository="proj/app", tag="dangling", digest=_digest("gone"))
    d1_api.insert("tags", repository="proj/app", tag="-bad", digest=digest)
    d1_api.insert("blobs", repository="proj/app", digest=_digest("b"), size=10)
    d1_api.insert("blobs", repository="proj/app", digest=_digest("n"), size=-1)
    d1_api.insert("blobs", repository="proj/ghost", digest=_digest("b"), size=10)

    summary = await run_d1_migration(d1_api, db_url)

    assert summary.kinds["repositories"] == {Outcome.COPIED: 2, Outcome.FAILED: 2}
    assert summary.kinds["manifests"] == {Outcome.COPIED: 1, Outcome.FAILED: 2}
    assert summary.kinds["tags"] == {Outcome.COPIED: 1, Outcome.FAILED: 2}
    assert summary.kinds["blobs"] == {Outcome.COPIED: 1, Outcome.FAILED: 2}
    assert summary.failed == 8
    report = "\n".join(summary.failures)
    assert "tags proj/app/dangling: the manifest it points to is not in the registry" in report
    assert "manifests proj/ghost/" in report
    assert "invalid repository name 'Proj/Upper'" in report
    assert "invalid digest 'sha256:XYZ'" in report
    assert await db.fetchval("SELECT namespace FROM repositories WHERE name = 'proj/moved'") == (
        "proj"
    )


async def test_d1_transient_api_errors_are_retried(
    d1_api: FakeD1Api, db_url: str, legacy_registry: SmallRegistry
) -> None:
    legacy_registry.legacy.load_d1(d1_api)
    d1_api.fail_next(503, times=2)
    d1_api.fail_next(429)

    summary = await run_d1_migration(d1_api, db_url)

    assert summary.failed == 0
    assert summary.total(Outcome.COPIED) == sum(map(len, legacy_registry.legacy.rows.values()))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cloudflare_api_token": "wrong"}, "HTTP 403: Authentication error"),
        ({"d1_database_id": "00000000-0000-0000-0000-000000000000"}, "HTTP 404"),
    ],
)
async def test_d1_refused_queries_stop_the_run(
    d1_api: FakeD1Api, db_url: str, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(D1Error, match=message):
        await run_d1_migration(d1_api, db_url, **config)


async def test_d1_progress_bar_shows_rows_bytes_rate_and_eta_on_a_terminal(
    d1_api: FakeD1Api, db_url: str, legacy_registry: SmallRegistry
) -> None:
    legacy_registry.legacy.load_d1(d1_api)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150, color_system=None)

    await run_d1_migration(d1_api, db_url, progress=MigrationProgress(console))

    shown = screen.getvalue()
    blobs = len(legacy_registry.legacy.rows["blobs"])
    assert f"{blobs}/{blobs} rows" in shown
    assert "rows/s" in shown
    assert "ETA" in shown
    assert "received" in shown
    assert "B/s" in shown


async def test_d1_index_manifests_fills_bytes_of_imported_manifests_from_the_bucket(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection, settings: Settings
) -> None:
    """The other way to fill manifest rows imported without bytes: the Go service's copy of the
    bucket (`<repository>/manifests/<digest>`), read by indexManifests."""
    manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
    manifest += b'"manifests":[]}'
    digest = sha256(manifest)
    d1_api.insert("repositories", name="proj/app", namespace="proj")
    d1_api.insert("manifests", repository="proj/app", digest=digest)
    await run_d1_migration(d1_api, db_url)
    assert settings.storage_path is not None
    settings.storage_path.mkdir(parents=True)
    store = FilesystemStore(settings.storage_path)

    async def chunks() -> Any:
        yield manifest

    await store.write(f"proj/app/manifests/{digest}", chunks())
    pool = await asyncpg.create_pool(db_url, min_size=0, max_size=2)
    try:
        await index_manifests(JobContext(pool, store, settings), JobReport())
    finally:
        await pool.close()

    row = await db.fetchrow("SELECT content, media_type, size FROM manifests")
    assert row is not None
    assert tuple(row) == (manifest, "application/vnd.oci.image.index.v1+json", len(manifest))


async def test_registry_migrate_d1_command_migrates_reruns_and_exits_by_outcome(
    d1_api: FakeD1Api, db_url: str, db: asyncpg.Connection, legacy_registry: SmallRegistry
) -> None:
    legacy = legacy_registry.legacy
    legacy.load_d1(d1_api)
    env = {"DB_URL": db_url, **d1_env(d1_api)}
    rows = sum(map(len, legacy.rows.values()))

    dry = await run_command("registry-migrate-d1", env, "--dry-run")
    assert dry.code == 0, dry.stderr
    assert "dry run, nothing written" in dry.stdout
    assert dry.total("copied") == rows
    assert await db.fetchval("SELECT count(*) FROM repositories") == 0

    first = await run_command("registry-migrate-d1", env)
    assert first.code == 0, first.stderr
    assert (first.total("copied"), first.total("failed")) == (rows, 0)

    d1_api.insert("tags", repository="proj/app", tag="dangling", digest=_digest("gone"))
    second = await run_command("registry-migrate-d1", env)
    assert second.code == 1
    assert (second.total("copied"), second.total("skipped"), second.total("failed")) == (
        0,
        rows,
        1,
    )
    assert "proj/app/dangling" in second.stdout


@pytest.mark.parametrize(
    ("missing", "variable"),
    [("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_TOKEN"), ("DB_URL", "DB_URL")],
)
async def test_registry_migrate_d1_command_names_a_missing_variable(
    d1_api: FakeD1Api, db_url: str, missing: str, variable: str
) -> None:
    env = {"DB_URL": db_url, **d1_env(d1_api)}
    del env[missing]

    result = await run_command("registry-migrate-d1", env)

    assert result.code == 2
    assert f"configuration error: {variable}" in result.stderr
    assert d1_api.queries == []
