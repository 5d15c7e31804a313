"""`registry-migrate-d1`: copy the Cloudflare generation's D1 tables into PostgreSQL.

Reads `repositories`, `manifests`, `tags` and `blobs` (in that order, so every row's parent
is imported before it) through Cloudflare's D1 HTTP query API, 1000 rows per request in key
order (keyset pagination: each page starts after the last key of the previous one), and
inserts each page in one transaction. Rows already in PostgreSQL are skipped, never
overwritten. Manifest rows arrive without their bytes: `registry-migrate-r2` (or the
indexManifests job, from `<repository>/manifests/<digest>` in the bucket) fills them in.
A dry run only checks which rows exist: a row whose parent is missing counts as to be copied
there, and fails in a real run.

D1 columns read (the Worker's schema): repositories(name, namespace, created_at),
manifests(repository, digest, created_at), tags(repository, tag, digest, created_at),
blobs(repository, digest, size, created_at). Times are SQLite `CURRENT_TIMESTAMP` text
(`YYYY-MM-DD HH:MM:SS`, UTC), ISO 8601, or Unix seconds; a missing or unreadable one becomes
the time of the import.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiohttp
import asyncpg
import structlog
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry_common.db import Connection, migration
from registry_common.db.pool import create_pool
from registry_common.oci.digests import is_digest
from registry_common.oci.names import is_repository_name, is_tag
from registry_common.settings import ConfigError, Settings
from registry_tools.migrate.cli import (
    check_http_url,
    exit_on_config_error,
    load_config,
    load_registry_settings,
    parse_arguments,
    run_command,
)
from registry_tools.migrate.progress import (
    BYTES,
    MigrationProgress,
    MigrationSummary,
    Outcome,
    ProgressTask,
)

COMMAND = "registry-migrate-d1"
DEFAULT_D1_DATABASE_ID = "67b907e7-9d0d-4846-851e-8e7da80acbad"
DEFAULT_API_BASE = "https://api.cloudflare.com/client/v4"
BATCH_SIZE = 1000
# Transient failures (connection errors, 429, 5xx) are retried this many times, backing off.
RETRIES = 4
RETRY_DELAY_SECONDS = 1.0
# A Retry-After longer than this is cut short (the API's rate limit window is minutes long).
MAX_RETRY_AFTER_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 60.0
_IDENTIFIER = r"^[A-Za-z0-9-]{1,64}$"
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")
# Numbers above this are milliseconds, not seconds (year 5138 in seconds).
_MILLISECONDS_FROM = 10**11

log = structlog.get_logger("registry.migrate.d1")


class D1Config(BaseSettings):
    """Where the D1 database is; every field reads the upper-case variable of its name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    cloudflare_api_token: SecretStr = Field(min_length=1)
    cloudflare_account_id: str = Field(pattern=_IDENTIFIER)
    d1_database_id: str = Field(default=DEFAULT_D1_DATABASE_ID, pattern=_IDENTIFIER)
    # Tests point this at a fake on loopback.
    cloudflare_api_base: str = DEFAULT_API_BASE

    @field_validator("cloudflare_api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        return check_http_url(value)

    @property
    def query_url(self) -> str:
        """The database's query endpoint."""
        return (
            f"{self.cloudflare_api_base}/accounts/{self.cloudflare_account_id}"
            f"/d1/database/{self.d1_database_id}/query"
        )


class D1Error(Exception):
    """The D1 API refused a query or answered something that is not a D1 result."""


@dataclass(frozen=True, slots=True)
class D1Page:
    """The rows of one query and the size of the reply that carried them."""

    rows: list[dict[str, Any]]
    reply_bytes: int


class D1Client:
    """Runs SQL through `POST .../d1/database/<id>/query` with the API token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: D1Config,
        *,
        retries: int = RETRIES,
        retry_delay: float = RETRY_DELAY_SECONDS,
    ) -> None:
        self._session = session
        self._url = config.query_url
        self._headers = {
            "Authorization": f"Bearer {config.cloudflare_api_token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        self._retries = retries
        self._retry_delay = retry_delay

    async def query(self, sql: str, params: Sequence[str] = ()) -> D1Page:
        """The rows `sql` selects (as objects), retrying transient failures."""
        body = json.dumps({"sql": sql, "params": list(params)})
        attempt = 0
        while True:
            try:
                return await self._post(body)
            except _TransientError as exc:
                if attempt >= self._retries:
                    message = f"D1 API unavailable after {attempt + 1} attempts: {exc}"
                    raise D1Error(message) from exc
                delay = self._retry_delay * 2**attempt
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS))
                log.warning("d1_query_retry", error=str(exc), attempt=attempt + 1, delay=delay)
                attempt += 1
                await asyncio.sleep(delay)  # back-off before retrying, not synchronisation

    async def _post(self, body: str) -> D1Page:
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as reply:
                raw = await reply.read()
                status = reply.status
                retry_after = reply.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
        if status == 429 or status >= 500:
            raise _TransientError(f"HTTP {status}", _retry_after(retry_after))
        try:
            envelope = json.loads(raw)
        except ValueError:
            raise D1Error(f"D1 API answered HTTP {status} with a body that is not JSON") from None
        if status != 200 or not isinstance(envelope, dict) or envelope.get("success") is not True:
            raise D1Error(f"D1 API answered HTTP {status}: {_error_message(envelope)}")
        results = envelope.get("result")
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise D1Error("D1 API answered without a query result")
        first = results[0]
        rows = first.get("results")
        if first.get("success") is not True or not isinstance(rows, list):
            raise D1Error("D1 query did not succeed")
        if not all(isinstance(row, dict) for row in rows):
            raise D1Error("D1 API answered rows that are not objects")
        return D1Page(rows, len(raw))


class _TransientError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Seconds the API asked to wait (Retry-After of a 429), if it said.
        self.retry_after = retry_after


def _retry_after(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def _error_message(envelope: Any) -> str:
    if isinstance(envelope, dict):
        errors = envelope.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", "unknown error"))[:500]
    return "unknown error"


# --- Reading D1 values. ---


class InvalidRow(Exception):
    """A D1 row that cannot become a row of this registry; the message says why."""


def parse_d1_time(value: Any) -> datetime | None:
    """A D1 time (SQLite text, ISO 8601, Unix seconds) in UTC; None if missing or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value >= _MILLISECONDS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return parse_d1_time(float(text))
    parsed: datetime | None = None
    for time_format in _TIME_FORMATS:
        try:
            # SQLite's CURRENT_TIMESTAMP is UTC without saying so; the zone is added below.
            parsed = datetime.strptime(text, time_format)
            break
        except ValueError:
            continue
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _text(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise InvalidRow(f"{column} is not text: {value!r:.80}")
    return value


def _time(row: dict[str, Any], table: str, key: str) -> datetime | None:
    value = row.get("created_at")
    parsed = parse_d1_time(value)
    if parsed is None and value is not None:
        log.warning("d1_time_unreadable", table=table, item=key, value=str(value)[:80])
    return parsed


def _repository(row: dict[str, Any], column: str = "repository") -> str:
    name = _text(row, column)
    if not is_repository_name(name):
        raise InvalidRow(f"invalid repository name {name!r:.300}")
    return name


def _digest(row: dict[str, Any]) -> str:
    digest = _text(row, "digest")
    if not is_digest(digest):
        raise InvalidRow(f"invalid digest {digest!r:.200}")
    return digest


def repository_row(row: dict[str, Any]) -> migration.RepositoryRow:
    """A `repositories` row; the namespace is the name's project (the rule every query of this
    registry relies on), whatever D1 says."""
    name = _repository(row, "name")
    project = name.split("/", 1)[0]
    namespace = row.get("namespace")
    if namespace != project:
        log.warning("d1_namespace_replaced", repository=name, d1=str(namespace)[:80], used=project)
    return migration.RepositoryRow(name, project, _time(row, "repositories", name))


def manifest_row(row: dict[str, Any]) -> migration.ManifestStub:
    """A `manifests` row."""
    repository, digest = _repository(row), _digest(row)
    return migration.ManifestStub(
        repository, digest, _time(row, "manifests", f"{repository}@{digest}")
    )


def tag_row(row: dict[str, Any]) -> migration.TagRow:
    """A `tags` row."""
    repository, digest = _repository(row), _digest(row)
    tag = _text(row, "tag")
    if not is_tag(tag):
        raise InvalidRow(f"invalid tag {tag!r:.200}")
    return migration.TagRow(repository, tag, digest, _time(row, "tags", f"{repository}:{tag}"))


def blob_row(row: dict[str, Any]) -> migration.BlobLinkRow:
    """A `blobs` row."""
    repository, digest = _repository(row), _digest(row)
    size = row.get("size")
    if isinstance(size, float) and size.is_integer():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRow(f"invalid size {size!r:.80}")
    return migration.BlobLinkRow(
        repository, digest, size, _time(row, "blobs", f"{repository}@{digest}")
    )


# --- The tables, in dependency order. ---

RowT = TypeVar("RowT")
KeyT = TypeVar("KeyT")


@dataclass(frozen=True)
class D1Table(Generic[RowT, KeyT]):
    """How one table is read from D1 and written to PostgreSQL."""

    name: str
    count_sql: str
    # Selects a page of BATCH_SIZE rows after the key given as parameters ?1 (and ?2).
    page_sql: str
    # The D1 columns of the key, in order; the last row's values start the next page.
    key_columns: tuple[str, ...]
    convert: Callable[[dict[str, Any]], RowT]
    key_of: Callable[[RowT], KeyT]
    insert: Callable[[Connection, list[RowT]], Awaitable[set[KeyT]]]
    existing: Callable[[Connection, list[KeyT]], Awaitable[set[KeyT]]]
    # Why a row that is neither inserted nor present was refused.
    missing_parent: str


def _repository_key(row: migration.RepositoryRow) -> str:
    return row.name


def _manifest_key(row: migration.ManifestStub) -> tuple[str, str]:
    return (row.repository, row.digest)


def _tag_key(row: migration.TagRow) -> tuple[str, str]:
    return (row.repository, row.tag)


def _blob_key(row: migration.BlobLinkRow) -> tuple[str, str]:
    return (row.repository, row.digest)


REPOSITORIES: D1Table[migration.RepositoryRow, str] = D1Table(
    name="repositories",
    count_sql="SELECT count(*) AS count FROM repositories",
    page_sql=f"""
        SELECT name, namespace, created_at FROM repositories
        WHERE name > ?1
        ORDER BY name LIMIT {BATCH_SIZE}
    """,  # noqa: S608 - a constant, not a value
    key_columns=("name",),
    convert=repository_row,
    key_of=_repository_key,
    insert=migration.insert_repositories,
    existing=migration.existing_repositories,
    missing_parent="not inserted",
)
MANIFESTS: D1Table[migration.ManifestStub, tuple[str, str]] = D1Table(
    name="manifests",
    count_sql="SELECT count(*) AS count FROM manifests",
    page_sql=f"""
        SELECT repository, digest, created_at FROM manifests
        WHERE repository > ?1 OR (repository = ?1 AND digest > ?2)
        ORDER BY repository, digest LIMIT {BATCH_SIZE}
    """,  # noqa: S608 - a constant, not a value
    key_columns=("repository", "digest"),
    convert=manifest_row,
    key_of=_manifest_key,
    insert=migration.insert_manifests,
    existing=migration.existing_manifests,
    missing_parent="its repository is not in the registry",
)
TAGS: D1Table[migration.TagRow, tuple[str, str]] = D1Table(
    name="tags",
    count_sql="SELECT count(*) AS count FROM tags",
    page_sql=f"""
        SELECT repository, tag, digest, created_at FROM tags
        WHERE repository > ?1 OR (repository = ?1 AND tag > ?2)
        ORDER BY repository, tag LIMIT {BATCH_SIZE}
    """,  # noqa: S608 - a constant, not a value
    key_columns=("repository", "tag"),
    convert=tag_row,
    key_of=_tag_key,
    insert=migration.insert_tags,
    existing=migration.existing_tags,
    missing_parent="the manifest it points to is not in the registry",
)
BLOBS: D1Table[migration.BlobLinkRow, tuple[str, str]] = D1Table(
    name="blobs",
    count_sql="SELECT count(*) AS count FROM blobs",
    page_sql=f"""
        SELECT repository, digest, size, created_at FROM blobs
        WHERE repository > ?1 OR (repository = ?1 AND digest > ?2)
        ORDER BY repository, digest LIMIT {BATCH_SIZE}
    """,  # noqa: S608 - a constant, not a value
    key_columns=("repository", "digest"),
    convert=blob_row,
    key_of=_blob_key,
    insert=migration.insert_blob_links,
    existing=migration.existing_blob_links,
    missing_parent="its repository is not in the registry",
)

# Parents before children: tags need their manifest, manifests and links their repository.
TABLES: tuple[D1Table[Any, Any], ...] = (REPOSITORIES, MANIFESTS, TAGS, BLOBS)


# --- The migration. ---


async def migrate_d1(
    client: D1Client,
    pool: asyncpg.Pool,
    summary: MigrationSummary,
    progress: MigrationProgress,
    *,
    dry_run: bool = False,
) -> None:
    """Copy every table of TABLES from D1 into PostgreSQL, counting outcomes in `summary`.

    A D1 or PostgreSQL error stops the run (raised); rows that cannot be stored are counted
    as failed and the run goes on.
    """
    bytes_task = progress.task("received", BYTES)
    tasks: dict[str, ProgressTask] = {}
    for table in TABLES:
        summary.add_kind(table.name)
        page = await client.query(table.count_sql)
        bytes_task.advance(page.reply_bytes)
        count = page.rows[0].get("count") if page.rows else None
        tasks[table.name] = progress.task(
            table.name, "rows", count if isinstance(count, int) else None
        )
    for table in TABLES:
        await _migrate_table(client, pool, table, summary, tasks[table.name], bytes_task, dry_run)


async def _migrate_table(
    client: D1Client,
    pool: asyncpg.Pool,
    table: D1Table[RowT, KeyT],
    summary: MigrationSummary,
    task: ProgressTask,
    bytes_task: ProgressTask,
    dry_run: bool,
) -> None:
    # Every key is non-empty text, so "" sorts before all of them.
    after = [""] * len(table.key_columns)
    while True:
        page = await client.query(table.page_sql, after)
        bytes_task.advance(page.reply_bytes)
        summary.bytes_copied += page.reply_bytes
        if not page.rows:
            return
        last = page.rows[-1]
        after = [str(last.get(column, "")) for column in table.key_columns]
        await _store_page(pool, table, page.rows, summary, dry_run)
        task.advance(len(page.rows))
        if len(page.rows) < BATCH_SIZE:
            return


async def _store_page(
    pool: asyncpg.Pool,
    table: D1Table[RowT, KeyT],
    raw_rows: list[dict[str, Any]],
    summary: MigrationSummary,
    dry_run: bool,
) -> None:
    converted: dict[KeyT, RowT] = {}
    for raw in raw_rows:
        try:
            row = table.convert(raw)
        except InvalidRow as exc:
            summary.fail(table.name, _describe(raw, table.key_columns), str(exc))
            continue
        converted[table.key_of(row)] = row
    if not converted:
        return
    keys = list(converted)
    async with pool.acquire() as connection, connection.transaction():
        inserted = set() if dry_run else await table.insert(connection, list(converted.values()))
        present = await table.existing(connection, [key for key in keys if key not in inserted])
    for key in keys:
        if key in inserted:
            summary.record(table.name, Outcome.COPIED)
        elif key in present:
            summary.record(table.name, Outcome.SKIPPED)
        elif dry_run:
            summary.record(table.name, Outcome.COPIED)
        else:
            summary.fail(table.name, _describe_key(key), table.missing_parent)


def _describe(raw: dict[str, Any], columns: tuple[str, ...]) -> str:
    return "/".join(str(raw.get(column))[:200] for column in columns)


def _describe_key(key: object) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)


async def run(config: D1Config, settings: Settings, summary: MigrationSummary) -> None:
    """Open the D1 client and the database pool and migrate, with a progress bar on a terminal."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    pool = await create_pool(settings)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = D1Client(session, config)
            with MigrationProgress() as progress:
                await migrate_d1(client, pool, summary, progress, dry_run=summary.dry_run)
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `registry-migrate-d1`."""
    dry_run = parse_arguments(
        COMMAND,
        "Copy the registry's metadata from Cloudflare D1 into PostgreSQL (DB_URL).",
        argv,
    )
    try:
        config = load_config(D1Config)
        settings = load_registry_settings()
        settings.require_db_url()
    except ConfigError as exc:
        exit_on_config_error(COMMAND, exc)
    summary = MigrationSummary(COMMAND, dry_run=dry_run, bytes_label="bytes received from D1")
    run_command(COMMAND, settings, summary, lambda: run(config, settings, summary))
