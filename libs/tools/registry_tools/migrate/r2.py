"""`registry-migrate-r2`: copy the Cloudflare generation's R2 objects into this registry.

The Worker kept one object per blob and per manifest, per repository:
`<repository>/blobs/<digest>`, `<repository>/manifests/<digest>` and, for a manifest pushed by
tag, `<repository>/manifests/<tag>` (the same bytes again). Chunked uploads lived under
`_uploads/`, which is skipped. Every other object is listed (S3 ListObjectsV2) and handed to
WORKERS parallel workers:

- a blob is streamed into storage (bounded memory, whatever its size) while its digest is
  computed; a mismatch is reported and nothing is kept. It lands once per digest at
  `blobs/<algorithm>/<xx>/<hex>` (blob_store.commit_blob); each further repository holding
  the same digest only gets a link row;
- a manifest goes into PostgreSQL with its bytes and its media type (the object's
  Content-Type), filling in a row `registry-migrate-d1` imported without bytes;
- a tag-addressed manifest gets its SHA-256 digest computed, is stored like the others, and
  becomes a tag row.

What is already there is skipped before anything is downloaded: a blob stored under its
digest and linked to the repository, a manifest whose bytes are stored, an existing tag
(never moved: it may have been re-pushed since).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry_common.db import migration
from registry_common.db.blobs import link_blob, lock_object
from registry_common.db.manifests import StoredManifest, save_manifest
from registry_common.db.pool import create_pool
from registry_common.db.repositories import ensure_repository
from registry_common.errors import ManifestInvalid
from registry_common.oci import media_types as mt
from registry_common.oci.digests import digest_of, is_digest
from registry_common.oci.manifests import MAX_MANIFEST_SIZE, parse_manifest
from registry_common.oci.names import RepositoryName, is_repository_name, is_tag
from registry_common.registry.blob_store import commit_blob
from registry_common.settings import ConfigError, Settings
from registry_common.storage import create_object_store
from registry_common.storage.base import ObjectStore, StorageError
from registry_common.storage.layout import blob_key, upload_blob_key
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

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

COMMAND = "registry-migrate-r2"
DEFAULT_R2_BUCKET = "deploys-registry"
DEFAULT_WORKERS = 8
UPLOADS_PREFIX = "_uploads/"
# Size of the pieces a blob is streamed in: memory per worker stays around this.
STREAM_CHUNK_SIZE = 1024 * 1024
# Listed objects waiting for a worker, per worker.
QUEUE_PER_WORKER = 4
_IDENTIFIER = r"^[A-Za-z0-9-]{1,64}$"
_BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,62}$"
# The types R2 or S3 answer for an object stored without one: treated as "not said".
_UNSPECIFIED_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})

log = structlog.get_logger("registry.migrate.r2")


class R2Config(BaseSettings):
    """Where the R2 bucket is and how many copies run at once."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    r2_account_id: str | None = Field(default=None, pattern=_IDENTIFIER)
    r2_access_key_id: SecretStr = Field(min_length=1)
    r2_secret_access_key: SecretStr = Field(min_length=1)
    r2_bucket: str = Field(default=DEFAULT_R2_BUCKET, pattern=_BUCKET_NAME)
    # Tests point this at an S3 server on loopback; R2_ACCOUNT_ID is then not needed.
    r2_endpoint_url: str | None = None
    workers: int = Field(default=DEFAULT_WORKERS, ge=1, le=256)

    @field_validator("r2_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    def endpoint_url(self) -> str:
        """R2_ENDPOINT_URL, else the account's R2 endpoint; ConfigError without either."""
        if self.r2_endpoint_url:
            return self.r2_endpoint_url
        if not self.r2_account_id:
            raise ConfigError("R2_ACCOUNT_ID", "required (or set R2_ENDPOINT_URL)")
        return f"https://{self.r2_account_id}.r2.cloudflarestorage.com"


@asynccontextmanager
async def open_r2_client(config: R2Config) -> AsyncIterator[S3Client]:
    """An S3 client for R2: path-style addressing, region `auto`, checksums only where the
    API requires them (R2 does not implement every checksum botocore adds by default)."""
    client_config = AioConfig(
        s3={"addressing_style": "path"},
        max_pool_connections=config.workers + 2,
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=30,
        read_timeout=120,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with get_session().create_client(
        "s3",
        region_name="auto",
        endpoint_url=config.endpoint_url(),
        aws_access_key_id=config.r2_access_key_id.get_secret_value(),
        aws_secret_access_key=config.r2_secret_access_key.get_secret_value(),
        config=client_config,
    ) as client:
        yield client


# --- What an R2 key holds. ---


class ObjectKind(StrEnum):
    """The kinds of objects the Worker wrote, as the summary names them."""

    BLOB = "blobs"
    MANIFEST = "manifests"
    # A manifest stored under a tag: it becomes a tag row.
    TAG = "tags"
    OTHER = "other"


class InvalidKey(Exception):
    """An object key that is not one the Worker wrote."""


@dataclass(frozen=True, slots=True)
class LegacyKey:
    """A parsed `<repository>/blobs/<digest>` or `<repository>/manifests/<reference>`."""

    kind: ObjectKind
    repository: str
    # A digest, or the tag of a TAG key.
    reference: str


def parse_legacy_key(key: str) -> LegacyKey:
    """What the object at `key` is; InvalidKey for anything else."""
    repository, folder, reference = _split_key(key)
    if not is_repository_name(repository):
        raise InvalidKey(f"invalid repository name {repository!r:.300}")
    if folder == "blobs":
        if not is_digest(reference):
            raise InvalidKey(f"invalid blob digest {reference!r:.200}")
        return LegacyKey(ObjectKind.BLOB, repository, reference)
    if is_digest(reference):
        return LegacyKey(ObjectKind.MANIFEST, repository, reference)
    if is_tag(reference):
        return LegacyKey(ObjectKind.TAG, repository, reference)
    raise InvalidKey(f"manifest reference {reference!r:.200} is neither a digest nor a tag")


def _split_key(key: str) -> tuple[str, str, str]:
    parts = key.split("/")
    if len(parts) < 4 or parts[-2] not in ("blobs", "manifests"):
        raise InvalidKey("not <repository>/blobs/<digest> or <repository>/manifests/<reference>")
    return "/".join(parts[:-2]), parts[-2], parts[-1]


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One listed R2 object."""

    key: str
    size: int
    last_modified: datetime | None


class _ObjectFailed(Exception):
    """This object cannot be migrated; the message says why. Others go on."""


def imported_manifest(
    repository: str,
    digest: str,
    content: bytes,
    content_type: str,
    created_at: datetime | None,
) -> StoredManifest:
    """A manifest as stored: its bytes, the media type it was pushed with (the object's
    Content-Type; guessed from the document when there is none), and its subject, artifact
    type and annotations when the document says them. Bytes that fail this registry's strict
    validation are kept all the same: they are what clients pulled until now."""
    media_type = mt.content_type_essence(content_type)
    if not mt.is_media_type(media_type) or media_type in _UNSPECIFIED_TYPES:
        media_type = mt.guess_media_type(content, "")
        log.warning("manifest_media_type_guessed", repository=repository, digest=digest)
    algorithm = digest.split(":", 1)[0]
    try:
        parsed = parse_manifest(content, media_type, algorithm=algorithm)
        subject, artifact_type = parsed.subject, parsed.artifact_type
        annotations: dict[str, Any] = dict(parsed.annotations)
    except ManifestInvalid:
        subject, artifact_type, annotations = _lenient_fields(content)
    return StoredManifest(
        repository=repository,
        digest=digest,
        media_type=media_type,
        content=content,
        subject=subject,
        artifact_type=artifact_type,
        annotations_json=json.dumps(annotations) if annotations else None,
        created_at=created_at,
    )


def _lenient_fields(content: bytes) -> tuple[str | None, str | None, dict[str, Any]]:
    """Subject digest, artifact type and string annotations of a document that is JSON but
    not a valid manifest, as far as they are well-formed."""
    try:
        document = json.loads(content)
    except ValueError:
        return None, None, {}
    if not isinstance(document, dict):
        return None, None, {}
    subject_field = document.get("subject")
    subject = subject_field.get("digest") if isinstance(subject_field, dict) else None
    artifact_type = document.get("artifactType")
    annotations = document.get("annotations")
    return (
        subject if isinstance(subject, str) and is_digest(subject) else None,
        artifact_type
        if isinstance(artifact_type, str) and mt.is_media_type(artifact_type)
        else None,
        {key: value for key, value in annotations.items() if isinstance(value, str)}
        if isinstance(annotations, dict)
        else {},
    )


class _DigestLocks:
    """One asyncio lock per digest being worked on, so two repositories holding the same blob
    do not download it twice at once; entries go when unused (memory stays bounded)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, digest: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(digest, (asyncio.Lock(), 0))
        self._locks[digest] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[digest]
            if users == 1:
                del self._locks[digest]
            else:
                self._locks[digest] = (lock, users - 1)


# --- The migration. ---


class R2Migration:
    """One run: lists the bucket and migrates each object on a pool of workers."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        pool: asyncpg.Pool,
        store: ObjectStore,
        summary: MigrationSummary,
        progress: MigrationProgress,
        *,
        dry_run: bool = False,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._pool = pool
        self._store = store
        self._summary = summary
        self._dry_run = dry_run
        self._objects = progress.task("objects", "objects", 0)
        self._bytes = progress.task("bytes", BYTES, 0)
        self._digest_locks = _DigestLocks()
        for kind in ObjectKind:
            summary.add_kind(kind.value)

    async def run(self, workers: int) -> None:
        """List every object and migrate it with `workers` copies at a time.

        Listing errors stop the run (raised); an object that fails is counted and the run goes
        on.
        """
        queue: asyncio.Queue[SourceObject | None] = asyncio.Queue(workers * QUEUE_PER_WORKER)
        tasks = [asyncio.create_task(self._work(queue)) for _ in range(workers)]
        try:
            await self._list_into(queue)
            for _ in tasks:
                await queue.put(None)
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _list_into(self, queue: asyncio.Queue[SourceObject | None]) -> None:
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket):
            for entry in page.get("Contents", []):
                key = entry.get("Key", "")
                if key.startswith(UPLOADS_PREFIX):
                    self._summary.ignored += 1
                    continue
                size = entry.get("Size", 0)
                self._objects.grow_total(1)
                self._bytes.grow_total(size)
                await queue.put(SourceObject(key, size, entry.get("LastModified")))

    async def _work(self, queue: asyncio.Queue[SourceObject | None]) -> None:
        while (source := await queue.get()) is not None:
            transferred = await self._migrate_object(source)
            self._objects.advance()
            self._bytes.advance(max(source.size - transferred, 0))

    async def _migrate_object(self, source: SourceObject) -> int:
        """Migrate one object, counting its outcome; the bytes it downloaded."""
        try:
            key = parse_legacy_key(source.key)
        except InvalidKey as exc:
            self._summary.fail(ObjectKind.OTHER.value, source.key, str(exc))
            return 0
        counter = _TransferCounter(self._bytes)
        try:
            if key.kind is ObjectKind.BLOB:
                outcome = await self._migrate_blob(source, key, counter)
            elif key.kind is ObjectKind.MANIFEST:
                outcome = await self._migrate_manifest(source, key, counter)
            else:
                outcome = await self._migrate_tag(source, key, counter)
        except _ObjectFailed as exc:
            self._summary.fail(key.kind.value, source.key, str(exc))
        except Exception as exc:
            # Storage, database or R2 trouble with this object: report it and go on, so one
            # bad object does not stop a run over millions.
            log.exception("migration_object_error", key=source.key)
            self._summary.fail(key.kind.value, source.key, f"{type(exc).__name__}: {exc}")
        else:
            self._summary.record(key.kind.value, outcome)
        return counter.total

    # --- Blobs. ---

    async def _migrate_blob(
        self, source: SourceObject, key: LegacyKey, counter: _TransferCounter
    ) -> Outcome:
        repository, digest = RepositoryName(key.repository), key.reference
        async with self._digest_locks.hold(digest):
            stored = await self._blob_stored(digest)
            link_size = await migration.blob_link_size(self._pool, repository.full, digest)
            if stored and link_size == source.size:
                return Outcome.SKIPPED
            if self._dry_run:
                if stored:
                    return Outcome.LINKED
                self._summary.bytes_copied += source.size
                return Outcome.COPIED
            if stored and await self._link_stored_blob(repository, digest):
                return Outcome.LINKED
            size = await self._copy_blob(source, repository, digest, counter)
            self._summary.bytes_copied += size
            return Outcome.COPIED

    async def _blob_stored(self, digest: str) -> bool:
        return (
            await migration.blob_object_recorded(self._pool, digest)
            and await self._store.stat(blob_key(digest)) is not None
        )

    async def _link_stored_blob(self, repository: RepositoryName, digest: str) -> bool:
        """Link bytes already stored under `digest`; False when they went meanwhile (GC)."""
        async with self._pool.acquire() as connection, connection.transaction():
            # FOR SHARE until commit: GC cannot delete the object before the link exists.
            size = await lock_object(connection, digest)
            if size is None or await self._store.stat(blob_key(digest)) is None:
                return False
            await ensure_repository(connection, repository)
            await link_blob(connection, repository.full, digest, size)
            await migration.correct_blob_link_size(connection, repository.full, digest, size)
        return True

    async def _copy_blob(
        self,
        source: SourceObject,
        repository: RepositoryName,
        digest: str,
        counter: _TransferCounter,
    ) -> int:
        algorithm = digest.split(":", 1)[0]
        hasher = hashlib.new(algorithm)
        staging_key = upload_blob_key(secrets.token_hex(16), "migrate")

        def on_chunk(chunk: bytes) -> None:
            hasher.update(chunk)
            counter.add(len(chunk))

        reply = await self._s3.get_object(Bucket=self._bucket, Key=source.key)
        async with reply["Body"] as body:
            size = await self._store.write(
                staging_key, body.iter_chunks(STREAM_CHUNK_SIZE), on_chunk=on_chunk
            )
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            await self._store.delete(staging_key)
            raise _ObjectFailed(f"digest mismatch: the content's digest is {actual}")
        try:
            await commit_blob(self._pool, self._store, repository, digest, size, staging_key)
        except BaseException:
            # Left behind otherwise until upload expiry removes it.
            with suppress(StorageError):
                await asyncio.shield(self._store.delete(staging_key))
            raise
        await migration.correct_blob_link_size(self._pool, repository.full, digest, size)
        return size

    # --- Manifests and tags. ---

    async def _migrate_manifest(
        self, source: SourceObject, key: LegacyKey, counter: _TransferCounter
    ) -> Outcome:
        digest = key.reference
        if await migration.manifest_has_content(self._pool, key.repository, digest):
            return Outcome.SKIPPED
        if self._dry_run:
            self._summary.bytes_copied += source.size
            return Outcome.COPIED
        content, content_type = await self._read_manifest(source, counter)
        actual = digest_of(content, digest.split(":", 1)[0])
        if actual != digest:
            raise _ObjectFailed(f"digest mismatch: the content's digest is {actual}")
        manifest = imported_manifest(
            key.repository, digest, content, content_type, source.last_modified
        )
        stored = await self._store_manifest(manifest)
        return Outcome.COPIED if stored else Outcome.SKIPPED

    async def _migrate_tag(
        self, source: SourceObject, key: LegacyKey, counter: _TransferCounter
    ) -> Outcome:
        tag = key.reference
        if await migration.tag_exists(self._pool, key.repository, tag):
            return Outcome.SKIPPED
        if self._dry_run:
            return Outcome.COPIED
        content, content_type = await self._read_manifest(source, counter)
        manifest = imported_manifest(
            key.repository, digest_of(content), content, content_type, source.last_modified
        )
        created = await self._store_manifest(manifest, tag=tag)
        return Outcome.COPIED if created else Outcome.SKIPPED

    async def _store_manifest(self, manifest: StoredManifest, *, tag: str | None = None) -> bool:
        """Store the manifest (and create `tag`); True when the manifest, or the tag when one is
        given, was created by this call."""
        async with self._pool.acquire() as connection, connection.transaction():
            await ensure_repository(connection, RepositoryName(manifest.repository))
            stored = await save_manifest(connection, manifest)
            created = tag is not None and await migration.insert_tag(
                connection, manifest.repository, tag, manifest.digest, manifest.created_at
            )
        if stored:
            self._summary.bytes_copied += len(manifest.content)
        return created if tag is not None else stored

    async def _read_manifest(
        self, source: SourceObject, counter: _TransferCounter
    ) -> tuple[bytes, str]:
        """The object's bytes (a manifest: at most MAX_MANIFEST_SIZE) and its Content-Type."""
        if source.size > MAX_MANIFEST_SIZE:
            raise _ObjectFailed(f"larger than the manifest limit of {MAX_MANIFEST_SIZE} bytes")
        reply = await self._s3.get_object(Bucket=self._bucket, Key=source.key)
        content_type = reply.get("ContentType", "")
        chunks: list[bytes] = []
        async with reply["Body"] as body:
            async for chunk in body.iter_chunks(STREAM_CHUNK_SIZE):
                counter.add(len(chunk))
                if counter.total > MAX_MANIFEST_SIZE:
                    raise _ObjectFailed(
                        f"larger than the manifest limit of {MAX_MANIFEST_SIZE} bytes"
                    )
                chunks.append(chunk)
        return b"".join(chunks), content_type


class _TransferCounter:
    """Bytes one object has downloaded so far, shown on the byte bar as they arrive."""

    def __init__(self, bar: ProgressTask) -> None:
        self._bar = bar
        self.total = 0

    def add(self, amount: int) -> None:
        self.total += amount
        self._bar.advance(amount)


async def run(config: R2Config, settings: Settings, summary: MigrationSummary) -> None:
    """Open R2, the database and the storage, and migrate with a progress bar on a terminal."""
    # Every worker may hold a connection; a few more serve the listing and the skip checks.
    pool_size = max(settings.db_pool_max_size, config.workers + 2)
    pool = await create_pool(settings.model_copy(update={"db_pool_max_size": pool_size}))
    store = create_object_store(settings)
    try:
        async with open_r2_client(config) as s3:
            log.info(
                "r2_migration_started",
                endpoint=config.endpoint_url(),
                bucket=config.r2_bucket,
                workers=config.workers,
                dry_run=summary.dry_run,
            )
            with MigrationProgress() as progress:
                run = R2Migration(
                    s3, config.r2_bucket, pool, store, summary, progress, dry_run=summary.dry_run
                )
                await run.run(config.workers)
    finally:
        await store.close()
        await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `registry-migrate-r2`."""
    dry_run = parse_arguments(
        COMMAND,
        "Copy the registry's blobs and manifests from Cloudflare R2 into this registry's "
        "storage (BUCKET_NAME or STORAGE_PATH) and database (DB_URL).",
        argv,
    )
    try:
        config = load_config(R2Config)
        config.endpoint_url()
        settings = load_registry_settings()
        settings.require_db_url()
        settings.check_storage()
    except ConfigError as exc:
        exit_on_config_error(COMMAND, exc)
    summary = MigrationSummary(
        COMMAND, dry_run=dry_run, bytes_label="bytes to copy" if dry_run else "bytes copied"
    )
    run_command(COMMAND, settings, summary, lambda: run(config, settings, summary))
