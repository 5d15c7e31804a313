"""OCI error replies: the error body, and the one table from domain errors to codes and statuses.

Handlers raise OciError for what they find wrong in the HTTP request itself (a malformed
`Content-Range`, a bad query parameter, a missing credential); everything the rules raise is a
domain error (registry_common.errors), turned into an OciError here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry_common import errors
from registry_common.auth import AuthUnavailable
from registry_common.oci.errors import ErrorCode

RETRY_AFTER_SECONDS = "5"
UPLOAD_RETRY_AFTER_SECONDS = "30"

STATUS: dict[ErrorCode, int] = {
    ErrorCode.BLOB_UNKNOWN: 404,
    ErrorCode.BLOB_UPLOAD_INVALID: 400,
    ErrorCode.BLOB_UPLOAD_UNKNOWN: 404,
    ErrorCode.DIGEST_INVALID: 400,
    ErrorCode.MANIFEST_BLOB_UNKNOWN: 400,
    ErrorCode.MANIFEST_INVALID: 400,
    ErrorCode.MANIFEST_UNKNOWN: 404,
    ErrorCode.NAME_INVALID: 400,
    ErrorCode.NAME_UNKNOWN: 404,
    ErrorCode.SIZE_INVALID: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.DENIED: 403,
    ErrorCode.UNSUPPORTED: 405,
    ErrorCode.TOOMANYREQUESTS: 429,
    ErrorCode.RANGE_INVALID: 416,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

DEFAULT_MESSAGE: dict[ErrorCode, str] = {
    ErrorCode.BLOB_UNKNOWN: "blob unknown to registry",
    ErrorCode.BLOB_UPLOAD_INVALID: "blob upload invalid",
    ErrorCode.BLOB_UPLOAD_UNKNOWN: "blob upload unknown to registry",
    ErrorCode.DIGEST_INVALID: "provided digest did not match uploaded content",
    ErrorCode.MANIFEST_BLOB_UNKNOWN: "manifest references a manifest or blob unknown to registry",
    ErrorCode.MANIFEST_INVALID: "manifest invalid",
    ErrorCode.MANIFEST_UNKNOWN: "manifest unknown to registry",
    ErrorCode.NAME_INVALID: "invalid repository name",
    ErrorCode.NAME_UNKNOWN: "repository name not known to registry",
    ErrorCode.SIZE_INVALID: "provided length did not match content length",
    ErrorCode.UNAUTHORIZED: "authentication required",
    ErrorCode.DENIED: "requested access to the resource is denied",
    ErrorCode.UNSUPPORTED: "the operation is unsupported",
    ErrorCode.TOOMANYREQUESTS: "too many requests",
    ErrorCode.RANGE_INVALID: "invalid content range",
    ErrorCode.UNAVAILABLE: "service unavailable, retry later",
    ErrorCode.INTERNAL: "internal error",
}


class OciError(Exception):
    """An error reply of the OCI API; the service's error middleware renders it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or DEFAULT_MESSAGE[code]
        self.detail = detail
        self.status = status or STATUS[code]
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")

    def body(self) -> dict[str, Any]:
        """The JSON error body of the specification."""
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def range_header(size: int) -> str:
    """The `Range` header value telling a client how much of an upload was received."""
    return f"0-{max(size - 1, 0)}"


@dataclass(frozen=True, slots=True)
class Reply:
    """How one kind of domain error is answered."""

    code: ErrorCode
    status: int | None = None  # None: the code's status
    # A fixed message instead of the error's own (which may name internals).
    message: str | None = None
    headers: Callable[[Any], dict[str, str]] | None = None


# The one table. A class not listed is answered as its nearest listed base class.
REPLIES: dict[type[errors.RegistryError], Reply] = {
    errors.NameInvalid: Reply(ErrorCode.NAME_INVALID),
    errors.DigestInvalid: Reply(ErrorCode.DIGEST_INVALID),
    errors.ReferenceInvalid: Reply(ErrorCode.MANIFEST_INVALID),
    errors.ManifestInvalid: Reply(ErrorCode.MANIFEST_INVALID),
    errors.ManifestTooLarge: Reply(ErrorCode.MANIFEST_INVALID, 413),
    errors.RepositoryNotFound: Reply(ErrorCode.NAME_UNKNOWN),
    errors.ManifestNotFound: Reply(ErrorCode.MANIFEST_UNKNOWN),
    errors.TagNotFound: Reply(ErrorCode.MANIFEST_UNKNOWN),
    errors.BlobUnknown: Reply(ErrorCode.BLOB_UNKNOWN),
    errors.UploadUnknown: Reply(ErrorCode.BLOB_UPLOAD_UNKNOWN),
    errors.ManifestInUse: Reply(ErrorCode.DENIED, 409),
    errors.BlobInUse: Reply(ErrorCode.DENIED, 409),
    errors.ManifestBlobUnknown: Reply(ErrorCode.MANIFEST_BLOB_UNKNOWN),
    errors.ManifestChildUnknown: Reply(ErrorCode.MANIFEST_UNKNOWN, 400),
    errors.DigestMismatch: Reply(ErrorCode.DIGEST_INVALID),
    errors.SizeInvalid: Reply(ErrorCode.SIZE_INVALID),
    errors.RangeInvalid: Reply(
        ErrorCode.RANGE_INVALID, headers=lambda error: {"Range": range_header(error.received)}
    ),
    errors.UploadInvalid: Reply(ErrorCode.BLOB_UPLOAD_INVALID),
    # Sessions close as uploads finish, and expire when abandoned.
    errors.UploadLimitExceeded: Reply(
        ErrorCode.TOOMANYREQUESTS, headers=lambda _: {"Retry-After": UPLOAD_RETRY_AFTER_SECONDS}
    ),
    errors.Unavailable: Reply(
        ErrorCode.UNAVAILABLE,
        message=DEFAULT_MESSAGE[ErrorCode.UNAVAILABLE],
        headers=lambda _: {"Retry-After": RETRY_AFTER_SECONDS},
    ),
    AuthUnavailable: Reply(
        ErrorCode.UNAVAILABLE,
        message="authorization service unavailable, retry later",
        headers=lambda _: {"Retry-After": RETRY_AFTER_SECONDS},
    ),
}


def oci_error(error: errors.RegistryError) -> OciError:
    """The OCI reply to a domain error."""
    for kind in type(error).__mro__:
        reply = REPLIES.get(kind)
        if reply is not None:
            break
    else:
        raise TypeError(f"no OCI reply for {type(error).__name__}") from error
    return OciError(
        reply.code,
        reply.message or error.message,
        error.detail or None,
        status=reply.status,
        headers=reply.headers(error) if reply.headers is not None else None,
    )
