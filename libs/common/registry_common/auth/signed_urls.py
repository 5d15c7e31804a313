"""Cloud CDN signed URLs: signing the blob URLs the registry redirects to, and verifying them at
the origin.

The format is Cloud CDN's: the URL, then `Expires=<unix time>&KeyName=<key name>` (after `?`,
or `&` when the URL has a query), then `&Signature=<signature>`, where the signature is the
base64url encoding (with padding) of HMAC-SHA1, under a 16-byte key, of everything before
`&Signature=`. The CDN edge verifies it with the backend's signed-URL key; the origin verifies
it again, because the CDN lets unsigned requests through to the origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

# Cloud CDN's rule for key names (RFC 1035 labels).
KEY_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
KEY_BYTES = 16
_SIGNED_QUERY = re.compile(
    r"^Expires=(\d{1,12})&KeyName=([^&]{1,63})&Signature=([A-Za-z0-9_=-]{1,64})$"
)


def decode_key(value: str) -> bytes:
    """A signing key from its base64url text (padding optional); ValueError unless 16 bytes."""
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def signature_of(key: bytes, url: str) -> str:
    """The `Signature` of `url` (everything before `&Signature=`)."""
    digest = hmac.new(key, url.encode(), hashlib.sha1).digest()
    return base64.urlsafe_b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A named key of the CDN backend."""

    name: str
    key: bytes


class UrlSigner:
    """Signs URLs with the current key; accepts signatures of the current and the previous key
    (so a rotation never breaks URLs handed out just before it)."""

    def __init__(
        self,
        current: SigningKey,
        previous: SigningKey | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._current = current
        self._keys = {current.name: current.key}
        if previous is not None:
            self._keys.setdefault(previous.name, previous.key)
        self._clock = clock

    def sign(self, url: str, expires: int) -> str:
        """`url` with `Expires`, `KeyName` and `Signature` appended."""
        separator = "&" if "?" in url else "?"
        unsigned = f"{url}{separator}Expires={expires}&KeyName={self._current.name}"
        return f"{unsigned}&Signature={signature_of(self._current.key, unsigned)}"

    def sign_for(self, url: str, ttl_seconds: float) -> str:
        """`url` signed to expire `ttl_seconds` from now."""
        return self.sign(url, int(self._clock() + ttl_seconds))

    def verify(self, url: str, query: str) -> bool:
        """Whether `query` (the raw query string of a request for `url`, which has none of its
        own) is a valid, unexpired signature of `url` by one of the accepted keys. Every check
        takes the same path, and signatures are compared in constant time."""
        match = _SIGNED_QUERY.match(query)
        if match is None:
            return False
        expires, key_name, signature = match.groups()
        key = self._keys.get(key_name)
        expected = signature_of(
            key or b"\0" * KEY_BYTES, f"{url}?Expires={expires}&KeyName={key_name}"
        )
        valid = hmac.compare_digest(expected.encode(), signature.encode())
        return valid and key is not None and int(expires) > self._clock()
