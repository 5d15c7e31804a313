"""The OCI Distribution error codes, their HTTP statuses, and the error body."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Error codes of the OCI Distribution Specification (plus Docker's TOOMANYREQUESTS)."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    RANGE_INVALID = "RANGE_INVALID"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


# The one table mapping codes to statuses; a raise site may override (e.g. 413, 416).
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

_DEFAULT_MESSAGE: dict[ErrorCode, str] = {
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
    """An error of the OCI API; the distribution service's middleware renders it."""

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
        self.message = message or _DEFAULT_MESSAGE[code]
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
