"""indexManifests: record which blobs (and child manifests) each manifest references.

Pushes record this in their own transaction; the job covers manifests that arrived another way
(imported from the Go service, whose rows may even lack the bytes: those are read from the old
service's object layout `<repository>/manifests/<digest>` and stored). A manifest that cannot be
parsed is logged and skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator

import structlog

from registry_common.db import manifest_index
from registry_common.db.manifests import add_references
from registry_common.errors import ManifestInvalid
from registry_common.jobs.base import JobContext, JobReport
from registry_common.oci.digests import digest_of
from registry_common.oci.manifests import MAX_MANIFEST_SIZE, parse_manifest
from registry_common.oci.media_types import guess_media_type
from registry_common.storage.base import ObjectNotFound, ObjectStore
from registry_common.storage.layout import legacy_manifest_key

BATCH_SIZE = 500
# Bytes of manifest content held in memory at once (a manifest is at most 4 MiB).
CONTENT_BUDGET = 16 * 1024 * 1024

log = structlog.get_logger("registry.jobs.index")


async def index_manifests(context: JobContext, report: JobReport) -> None:
    """Fill manifest_blobs (and manifest_children) for manifests that have none."""
    after = ("", "")
    while True:
        batch = await manifest_index.unindexed_manifests(context.pool, after, BATCH_SIZE)
        if not batch:
            return
        after = (batch[-1].repository, batch[-1].digest)
        report.add("scanned", len(batch))
        for part in _within_budget(batch):
            await _index_slice(context, part, report)


def _within_budget(
    rows: list[manifest_index.UnindexedManifest],
) -> Iterator[list[manifest_index.UnindexedManifest]]:
    """Consecutive slices of `rows` whose contents together fit CONTENT_BUDGET."""
    part: list[manifest_index.UnindexedManifest] = []
    budget = 0
    for row in rows:
        size = row.size or 0
        if part and budget + size > CONTENT_BUDGET:
            yield part
            part, budget = [], 0
        part.append(row)
        budget += size
    if part:
        yield part


async def _index_slice(
    context: JobContext, rows: list[manifest_index.UnindexedManifest], report: JobReport
) -> None:
    stored = await manifest_index.manifest_contents(
        context.pool, [(row.repository, row.digest) for row in rows if row.size is not None]
    )
    blob_refs: list[tuple[str, str, str]] = []
    child_refs: list[tuple[str, str, str]] = []
    for row in rows:
        key = (row.repository, row.digest)
        content = stored.get(key)
        media_type = row.media_type
        if content is None:
            content = await _legacy_content(context.store, row.repository, row.digest)
            if content is None:
                report.add("missing_content")
                continue
            media_type = guess_media_type(content, media_type)
            await manifest_index.fill_missing_content(
                context.pool, row.repository, row.digest, content, media_type
            )
            report.add("content_filled")
        try:
            parsed = parse_manifest(content, guess_media_type(content, media_type))
        except ManifestInvalid as exc:
            log.warning(
                "manifest_unparseable",
                repository=row.repository,
                digest=row.digest,
                error=exc.message,
            )
            report.add("unparseable")
            continue
        blob_refs += [(row.repository, row.digest, blob.digest) for blob in parsed.blobs]
        child_refs += [(row.repository, row.digest, child) for child in parsed.children]
        report.add("indexed")
    async with context.pool.acquire() as connection, connection.transaction():
        await add_references(connection, blob_refs, child_refs)


async def _legacy_content(store: ObjectStore, repository: str, digest: str) -> bytes | None:
    key = legacy_manifest_key(repository, digest)
    try:
        info = await store.stat(key)
        if info is None or info.size > MAX_MANIFEST_SIZE:
            return None
        content = await store.read_all(key)
    except (ObjectNotFound, ValueError):
        return None
    if digest_of(content, digest.split(":", 1)[0]) != digest:
        log.warning("legacy_manifest_digest_mismatch", repository=repository, digest=digest)
        return None
    return content
