"""The one table from domain errors to the management API's envelope messages."""

from __future__ import annotations

from collections.abc import Callable

from registry_common import errors
from registry_common.auth import AuthUnavailable
from registry_management.models import (
    INTERNAL_ERROR,
    MANIFEST_IN_INDEX,
    MANIFEST_NOT_FOUND,
    REPOSITORY_NOT_FOUND,
    TAG_NOT_FOUND,
    ApiError,
)

RETRY_AFTER_SECONDS = "5"
_UNAVAILABLE_HEADERS = {"Retry-After": RETRY_AFTER_SECONDS}


def _in_use(error: errors.RegistryError) -> ApiError:
    indexes = error.indexes if isinstance(error, errors.ManifestInUse) else []
    listed = f" ({', '.join(indexes)})" if indexes else ""
    return ApiError(f"{MANIFEST_IN_INDEX}{listed}; delete the index first")


# A class not listed is answered as its nearest listed base class; RegistryError itself, an
# error no endpoint should meet, is a 500.
REPLIES: dict[type[errors.RegistryError], Callable[[errors.RegistryError], ApiError]] = {
    errors.RepositoryNotFound: lambda _: ApiError(REPOSITORY_NOT_FOUND),
    errors.NameInvalid: lambda _: ApiError(REPOSITORY_NOT_FOUND),
    errors.ManifestNotFound: lambda _: ApiError(MANIFEST_NOT_FOUND),
    errors.TagNotFound: lambda _: ApiError(TAG_NOT_FOUND),
    errors.ManifestInUse: _in_use,
    errors.Unavailable: lambda _: ApiError(
        "service unavailable, retry later", status=503, headers=_UNAVAILABLE_HEADERS
    ),
    AuthUnavailable: lambda _: ApiError(
        "authorization service unavailable, retry later",
        status=503,
        headers=_UNAVAILABLE_HEADERS,
    ),
    errors.RegistryError: lambda _: ApiError(INTERNAL_ERROR, status=500),
}


def api_error(error: errors.RegistryError) -> ApiError:
    """The envelope error answering a domain error."""
    for kind in type(error).__mro__:
        reply = REPLIES.get(kind)
        if reply is not None:
            return reply(error)
    raise TypeError(f"not a domain error: {type(error).__name__}")
