"""Manifest rules: the push transaction, reads by tag or digest, deletes, referrers, listings.

A push share-locks the blob links and child manifests it needs until its manifest and its
reference rows commit (docs/consistency.md, "Manifest PUT"), so a GC or a delete running at
the same time either sees them referenced or has removed them first (and the push is refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from registry_common.db import manifests, tags
from registry_common.db.blobs import lock_links
from registry_common.db.manifests import ManifestEntry, ManifestRow, StoredManifest
from registry_common.db.repositories import ensure_repository
from registry_common.errors import (
    ManifestBlobUnknown,
    ManifestChildUnknown,
    ManifestInUse,
    ManifestInvalid,
    ManifestNotFound,
    TagNotFound,
)
from registry_common.oci.manifests import ManifestReference, ParsedManifest
from registry_common.oci.names import RepositoryName
from registry_common.registry.repository_store import require_repository

# How many digests an error names at most.
_REPORTED_DIGESTS = 10
# Bytes of annotations one page of referrers carries at most (besides its first entry).
REFERRERS_ANNOTATIONS_BUDGET = 4 * 1024 * 1024


async def find_manifest(
    pool: asyncpg.Pool,
    repository: RepositoryName,
    reference: ManifestReference,
    *,
    with_content: bool = True,
) -> ManifestRow:
    """The manifest a tag or digest names, in one indexed query; RepositoryNotFound, or
    TagNotFound / ManifestNotFound when there is none."""
    if reference.tag is not None:
        row = await manifests.manifest_by_tag(
            pool, repository.full, reference.tag, with_content=with_content
        )
    else:
        assert reference.digest is not None
        row = await manifests.manifest_by_digest(
            pool, repository.full, reference.digest, with_content=with_content
        )
    if row is None:
        await require_repository(pool, repository)
        raise TagNotFound if reference.tag is not None else ManifestNotFound
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
    (ManifestBlobUnknown) or has another size than its descriptor says (ManifestInvalid), or
    when a manifest an index lists is not in the repository (ManifestChildUnknown).
    """
    name = repository.full
    async with pool.acquire() as connection, connection.transaction():
        # FOR SHARE until commit: GC cannot unlink these blobs before manifest_blobs says they
        # are referenced (invariant 1).
        linked = await lock_links(connection, name, [blob.digest for blob in manifest.blobs])
        missing = [blob.digest for blob in manifest.blobs if blob.digest not in linked]
        if missing:
            raise ManifestBlobUnknown(digest=missing[0], missing=missing[:_REPORTED_DIGESTS])
        for blob in manifest.blobs:
            if linked[blob.digest] != blob.size:
                raise ManifestInvalid(
                    "a descriptor's size differs from the size of the blob it names",
                    digest=blob.digest,
                    descriptorSize=blob.size,
                    blobSize=linked[blob.digest],
                )
        # FOR SHARE until commit: a child cannot be deleted before manifest_children lists it
        # (invariant 6).
        present = await manifests.lock_manifests(connection, name, manifest.children)
        absent = [child for child in manifest.children if child not in present]
        if absent:
            raise ManifestChildUnknown(digest=absent[0], missing=absent[:_REPORTED_DIGESTS])
        # An empty index needs neither blobs nor children, so the repository may be new.
        await ensure_repository(connection, repository)
        await manifests.save_manifest(
            connection,
            StoredManifest(
                repository=name,
                digest=manifest.digest,
                media_type=manifest.media_type,
                content=content,
                subject=manifest.subject,
                artifact_type=manifest.artifact_type,
                annotations_json=json.dumps(manifest.annotations) if manifest.annotations else None,
            ),
        )
        await manifests.add_references(
            connection,
            [(name, manifest.digest, blob.digest) for blob in manifest.blobs],
            [(name, manifest.digest, child) for child in manifest.children],
        )
        if tag is not None:
            await tags.set_tag(connection, name, tag, manifest.digest)


async def delete_manifest(pool: asyncpg.Pool, repository: RepositoryName, digest: str) -> None:
    """Delete a manifest with its tags and blob references; its blobs stay for the GC.

    RepositoryNotFound or ManifestNotFound when it does not exist; ManifestInUse while an index
    of the repository lists it.
    """
    name = repository.full
    async with pool.acquire() as connection, connection.transaction():
        # FOR UPDATE: an index push listing this manifest waits, then finds it gone
        # (invariant 6).
        if not await manifests.lock_manifest_for_delete(connection, name, digest):
            await require_repository(connection, repository)
            raise ManifestNotFound
        parents = await manifests.parents_of(connection, name, digest, _REPORTED_DIGESTS)
        if parents:
            raise ManifestInUse(digest, parents)
        await manifests.delete_manifest_row(connection, name, digest)


async def manifests_newest_first(
    pool: asyncpg.Pool, repository: RepositoryName
) -> list[ManifestEntry]:
    """The repository's manifests, newest first; RepositoryNotFound when it does not exist."""
    await require_repository(pool, repository)
    return await manifests.manifests_newest_first(pool, repository.full)


@dataclass(frozen=True, slots=True)
class ReferrerPage:
    """One page of referrer descriptors; `next_after` is set when more follow."""

    manifests: list[dict[str, Any]]
    next_after: str | None


def _referrer_descriptor(row: manifests.ReferrerRow) -> dict[str, Any]:
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
    rows, candidates = await manifests.referrers(
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
