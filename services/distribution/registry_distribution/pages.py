"""The `n` and `last` query parameters of the paginated listings (tags, referrers)."""

from __future__ import annotations

import re
from typing import Any

from registry_common.oci.errors import ErrorCode
from registry_distribution.errors import OciError

# Largest page of tags or referrers; a larger `n` is clamped, a missing one means this.
MAX_PAGE_SIZE = 1000
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
