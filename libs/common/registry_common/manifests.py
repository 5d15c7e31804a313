"""Manifest, tag and referrer rules: the push transaction, deletes, reads and listings.

The distribution service serves them over `/v2/`; the management service reuses the deletes
(deleteManifest, untag). Pushes follow the locking contract of db/blobs.py and db/manifests.py:
the links and child manifests a manifest needs are share-locked until the manifest and its
`manifest_blobs` and `manifest_children` rows commit, so GC or a delete running at the same time
either sees them referenced or has removed them first (and the push is refused).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from registry_common.db import Executor
from registry_common.db import manifests as manifest_rows
from registry_common.db import tags as tag_rows
from registry_common.db.blobs import lock_links
from registry_common.db.manifests import ManifestRow
from registry_common.db.repositories import ensure_repository, repository_exists
from registry_common.oci.errors import ErrorCode, OciError
from registry_common.oci.manifests import ManifestReference, ParsedManifest
from registry_common.oci.names import RepositoryName

# Largest page of tags or referrers; a larger `n` is clamped, a missing one means this.
MAX_PAGE_SIZE = 1000
# How many digests an error reply names at most.
_REPORTED_DIGESTS = 10
# Bytes of annotations one page of referrers carries at most (besides its first entry).
REFERRERS_ANNOTATIONS_BUDGET = 4 * 1024 * 1024
_PAGE_SIZE = re.compile(r"^[0-9]+$")


def invalid_parameter(message: str, **detail: Any) -> OciError:
    """400 for a malformed query parameter; the spec's UNSUPPORTED covers "an invalid set of
    parameters"."""
    return OciError(ErrorCode.UNSUPPORTED, message, detail=detail or None, status=400)


def page_size(value: str | None) -> int:
    """The `n` query parameter: a non-negative integer, clamped to MAX_PAGE_SIZE."""
    if value is None:
        return MAX_PAGE_SIZE
    if not _PAGE_SIZE.match(value):
        raise invalid_parameter("n must be a non-negative integer", n=value[:50])
    # Compare by length first: a thousand-digit n is just "more than the cap".
    return MAX_PAGE_SIZE if len(value) > 4 else min(int(value), MAX_PAGE_SIZE)


async def unknown_manifest(db: Executor, repository: RepositoryName) -> OciError:
    """The 404 for a manifest or tag not found: NAME_UNKNOWN when the repository itself does
    not exist, else MANIFEST_UNKNOWN."""
    if await repository_exists(db, repository):
        return OciError(ErrorCode.MANIFEST_UNKNOWN)
    return OciError(ErrorCode.NAME_UNKNOWN, detail={"name": repository.full})


async def find_manifest(
    pool: asyncpg.Pool,
    repository: RepositoryName,
    reference: ManifestReference,
    *,
    with_content: bool = True,
) -> ManifestRow:
    """The manifest a tag or digest names, in one indexed query; 404 when there is none."""
    if reference.tag is not None:
        row = await manifest_rows.manifest_by_tag(
            pool, repository.full, reference.tag, with_content=with_content
        )
    else:
        assert reference.digest is not None
        row = await manifest_rows.manifest_by_digest(
            pool, repository.full, reference.digest, with_content=with_content
        )
    if row is None:
        raise await unknown_manifest(pool, repository)
    return row


async def store_manifest(
    pool: asyncpg.Pool,
    repository: RepositoryName,
    manifest: ParsedManifest,
    content: bytes,
    *,
    tag: str | None = None,
) -> None:
    """Store a validated manifest (and point `tag` at it) in one transaction.

    Refused, with nothing stored, when a blob it references is not linked in the repository
    (MANIFEST_BLOB_UNKNOWN) or has another size than its descriptor says (MANIFEST_INVALID), or
    when a manifest an index lists is not in the repository (MANIFEST_UNKNOWN, 400).
    """
    name = repository.full
    async with pool.acquire() as connection, connection.transaction():
        # FOR SHARE until commit: GC cannot unlink these blobs before manifest_blobs says they
        # are referenced (DESIGN.md invariant 1).
        linked = await lock_links(connection, name, [blob.digest for blob in manifest.blobs])
        missing = [blob.digest for blob in manifest.blobs if blob.digest not in linked]
        if missing:
            raise OciError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                "manifest references blobs that are not pushed to this repository",
                detail={"digest": missing[0], "missing": missing[:_REPORTED_DIGESTS]},
            )
        for blob in manifest.blobs:
            if linked[blob.digest] != blob.size:
                raise OciError(
                    ErrorCode.MANIFEST_INVALID,
                    "a descriptor's size differs from the size of the blob it names",
                    detail={
                        "digest": blob.digest,
                        "descriptorSize": blob.size,
                        "blobSize": linked[blob.digest],
                    },
                )
        # FOR SHARE until commit: a child cannot be deleted before manifest_children lists it.
        present = await manifest_rows.lock_manifests(connection, name, manifest.children)
        absent = [child for child in manifest.children if child not in present]
        if absent:
            raise OciError(
                ErrorCode.MANIFEST_UNKNOWN,
                "index lists manifests that are not pushed to this repository",
                detail={"digest": absent[0], "missing": absent[:_REPORTED_DIGESTS]},
                status=400,
            )
        # An empty index needs neither blobs nor children, so the repository may be new.
        await ensure_repository(connection, repository)
        await manifest_rows.save_manifest(
            connection,
            name,
            manifest.digest,
            manifest.media_type,
            content,
            manifest.subject,
            manifest.artifact_type,
            json.dumps(manifest.annotations) if manifest.annotations else None,
        )
        await manifest_rows.add_manifest_blobs(
            connection, name, manifest.digest, [blob.digest for blob in manifest.blobs]
        )
        await manifest_rows.add_manifest_children(
            connection, name, manifest.digest, manifest.children
        )
        if tag is not None:
            await tag_rows.set_tag(connection, name, tag, manifest.digest)


async def delete_manifest(pool: asyncpg.Pool, repository: RepositoryName, digest: str) -> None:
    """Delete a manifest with its tags and blob references; its blobs stay for GC.

    404 when it does not exist; 409 DENIED while an index of the repository lists it.
    """
    name = repository.full
    async with pool.acquire() as connection, connection.transaction():
        # FOR UPDATE: an index push listing this manifest waits, then finds it gone.
        if not await manifest_rows.lock_manifest_for_delete(connection, name, digest):
            raise await unknown_manifest(connection, repository)
        parents = await manifest_rows.parents_of(connection, name, digest, _REPORTED_DIGESTS)
        if parents:
            raise OciError(
                ErrorCode.DENIED,
                "manifest is listed by an index of this repository; delete the index first",
                detail={"digest": digest, "indexes": parents},
                status=409,
            )
        await manifest_rows.delete_manifest_row(connection, name, digest)


async def delete_tag(pool: asyncpg.Pool, repository: RepositoryName, tag: str) -> None:
    """Remove a tag, never the manifest it points to; 404 when there is no such tag."""
    if not await tag_rows.delete_tag(pool, repository.full, tag):
        raise await unknown_manifest(pool, repository)


@dataclass(frozen=True, slots=True)
class TagPage:
    """One page of a repository's tags; `next_after` is set when more follow."""

    tags: list[str]
    next_after: str | None


async def list_tags(
    pool: asyncpg.Pool, repository: RepositoryName, *, limit: int, after: str | None
) -> TagPage:
    """Tags in byte order after `after`, at most `limit`; NAME_UNKNOWN for a repository that
    does not exist."""
    tags = (
        await tag_rows.list_tags(pool, repository.full, after=after, limit=limit + 1)
        if limit > 0
        else []
    )
    if not tags and not await repository_exists(pool, repository):
        raise OciError(ErrorCode.NAME_UNKNOWN, detail={"name": repository.full})
    if len(tags) > limit:
        return TagPage(tags[:limit], tags[limit - 1])
    return TagPage(tags, None)


@dataclass(frozen=True, slots=True)
class ReferrerPage:
    """One page of referrer descriptors; `next_after` is set when more follow."""

    manifests: list[dict[str, Any]]
    next_after: str | None


def _referrer_descriptor(row: manifest_rows.ReferrerRow) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "mediaType": row.media_type,
        "digest": row.digest,
        "size": row.size,
    }
    if row.artifact_type is not None:
        descriptor["artifactType"] = row.artifact_type
    annotations = json.loads(row.annotations_json) if row.annotations_json else None
    if isinstance(annotations, dict) and annotations:
        descriptor["annotations"] = annotations
    return descriptor


async def list_referrers(
    pool: asyncpg.Pool,
    repository: RepositoryName,
    subject: str,
    *,
    artifact_type: str | None,
    limit: int,
    after: str | None,
) -> ReferrerPage:
    """Descriptors of the manifests of `repository` whose subject is `subject`, in digest
    order after `after`, at most `limit` (fewer when their annotations are large). An unknown
    repository or subject has none."""
    if limit == 0:
        return ReferrerPage([], None)
    rows, candidates = await manifest_rows.referrers(
        pool,
        repository.full,
        subject,
        artifact_type=artifact_type,
        after=after,
        limit=limit + 1,
        annotations_budget=REFERRERS_ANNOTATIONS_BUDGET,
    )
    page = rows[:limit]
    more = candidates > len(page)
    return ReferrerPage(
        [_referrer_descriptor(row) for row in page], page[-1].digest if more else None
    )
