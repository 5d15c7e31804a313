"""The registry's domain errors: what went wrong, in the registry's own terms.

The rules (`registry/`), the OCI parsers (`oci/`), storage and auth raise these; they know
nothing of HTTP. Each service maps them, in one table of its own, to what its clients read:
the distribution service to OCI error codes and statuses, the management service to its
envelope messages. `message` is a sentence for people; `detail` holds the facts a client may
act on (digests, sizes), safe to show to the caller who caused the error.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base of the domain errors."""

    default_message = "registry error"

    def __init__(self, message: str | None = None, **detail: Any) -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)


# --- The request names something malformed. ---


class NameInvalid(RegistryError):
    """A repository name outside the OCI grammar or the `<project>/<path>` rule."""

    default_message = "invalid repository name"


class DigestInvalid(RegistryError):
    """A malformed digest (unknown algorithm, wrong length, upper-case hex, ...)."""

    default_message = "invalid digest"


class ReferenceInvalid(RegistryError):
    """A manifest reference that is neither a tag nor a digest."""

    default_message = "reference must be a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}) or a digest"


class ManifestInvalid(RegistryError):
    """A manifest document that this registry does not accept; `message` says why."""

    default_message = "manifest invalid"


class ManifestTooLarge(ManifestInvalid):
    """A manifest over the size limit (`limit`, and `size` when known)."""


# --- The request names something that does not exist. ---


class RepositoryNotFound(RegistryError):
    """The repository does not exist (`name`)."""

    default_message = "repository name not known to registry"


class ManifestNotFound(RegistryError):
    """No manifest with that digest in the repository (or none a tag could name)."""

    default_message = "manifest unknown to registry"


class TagNotFound(RegistryError):
    """No such tag in the repository."""

    default_message = "manifest unknown to registry"


class BlobUnknown(RegistryError):
    """The blob is not linked to the repository, or its bytes are gone (`digest`)."""

    default_message = "blob unknown to registry"


class UploadUnknown(RegistryError):
    """No such upload session in the repository."""

    default_message = "blob upload unknown to registry"


# --- The request conflicts with what is stored. ---


class ManifestInUse(RegistryError):
    """A manifest that indexes of its repository still list; `indexes` names some of them."""

    default_message = "manifest is listed by an index of this repository; delete the index first"

    def __init__(self, digest: str, indexes: list[str]) -> None:
        super().__init__(digest=digest, indexes=indexes)
        self.indexes = indexes


class BlobInUse(RegistryError):
    """A blob that a manifest of its repository references: it cannot be unlinked."""

    default_message = (
        "blob is referenced by a manifest of this repository; delete the manifest first"
    )


class ManifestBlobUnknown(RegistryError):
    """A manifest references blobs not linked in its repository (`missing`)."""

    default_message = "manifest references blobs that are not pushed to this repository"


class ManifestChildUnknown(RegistryError):
    """An index lists manifests that are not in its repository (`missing`)."""

    default_message = "index lists manifests that are not pushed to this repository"


class DigestMismatch(RegistryError):
    """Uploaded bytes (or a manifest) do not have the digest the client named."""

    default_message = "provided digest did not match uploaded content"


class SizeInvalid(RegistryError):
    """A body's length differs from the length the request declared."""

    default_message = "provided length did not match content length"


class RangeInvalid(RegistryError):
    """A chunk that does not start where the upload stands; `received` is its size so far."""

    default_message = "chunk does not start at the end of the data received so far"

    def __init__(self, received: int) -> None:
        super().__init__(received=received)
        self.received = received


class UploadLimitExceeded(RegistryError):
    """The project has as many open upload sessions, or as many staged bytes, as it may."""

    default_message = "too many uploads in progress for this project; finish or cancel some"


class UploadInvalid(RegistryError):
    """An upload session that cannot take more (too many chunks, ...)."""

    default_message = "blob upload invalid"


# --- The registry cannot answer now. ---


class Unavailable(RegistryError):
    """A backend (PostgreSQL, storage, the Deploys API) cannot be reached: retry later."""

    default_message = "service unavailable, retry later"
