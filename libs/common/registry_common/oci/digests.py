"""Content digests: parsing, and hashers whose running state can be saved and resumed.

A chunked upload's PATCHes may land on different processes, so the digest state travels with
the upload session in PostgreSQL. OpenSSL's SHA256_CTX and SHA512_CTX are plain structs of
fixed size; ctypes copies them out and back in as bytes (never code), and the hashing itself is
OpenSSL's, as fast as hashlib's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import re
from dataclasses import dataclass

from registry_common.errors import DigestInvalid

# Hex length per supported algorithm.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated `algorithm:hex` digest."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest(value: str) -> bool:
    """True for a well-formed digest of a supported algorithm (lower-case hex, exact length)."""
    return _DIGEST.match(value) is not None


def parse_digest(value: str) -> Digest:
    """Validate a digest string; DigestInvalid otherwise."""
    if not is_digest(value):
        raise DigestInvalid(digest=value[:200])
    algorithm, hex_part = value.split(":", 1)
    return Digest(algorithm, hex_part)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The digest string of `data`."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class _Layout:
    def __init__(self, size: int, digest_size: int, prefix: str) -> None:
        self.size = size
        self.digest_size = digest_size
        self.prefix = prefix


# Sizes of OpenSSL's SHA256_CTX (8*4 + 2*4 + 16*4 + 2*4) and SHA512_CTX (8*8 + 2*8 + 128 + 2*4).
_LAYOUTS = {"sha256": _Layout(112, 32, "SHA256"), "sha512": _Layout(216, 64, "SHA512")}


def _load_libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    library = ctypes.CDLL(name)
    for layout in _LAYOUTS.values():
        init = getattr(library, f"{layout.prefix}_Init")
        init.argtypes = [ctypes.c_void_p]
        init.restype = ctypes.c_int
        update = getattr(library, f"{layout.prefix}_Update")
        update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        update.restype = ctypes.c_int
        final = getattr(library, f"{layout.prefix}_Final")
        final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        final.restype = ctypes.c_int
    return library


_LIBCRYPTO = _load_libcrypto()


class ResumableHasher:
    """A SHA-256 or SHA-512 hasher whose state is exportable as bytes and importable later."""

    def __init__(self, algorithm: str = "sha256", state: bytes | None = None) -> None:
        if algorithm not in _LAYOUTS:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._layout = _LAYOUTS[algorithm]
        self._context = ctypes.create_string_buffer(self._layout.size)
        self._update = getattr(_LIBCRYPTO, f"{self._layout.prefix}_Update")
        if state is None:
            getattr(_LIBCRYPTO, f"{self._layout.prefix}_Init")(self._context)
        else:
            if len(state) != self._layout.size:
                raise ValueError("saved digest state has the wrong size")
            ctypes.memmove(self._context, state, self._layout.size)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes."""
        chunk = bytes(data) if not isinstance(data, bytes) else data
        self._update(self._context, chunk, len(chunk))

    def export_state(self) -> bytes:
        """The running state, to store and resume with `ResumableHasher(algorithm, state)`."""
        return self._context.raw

    def hexdigest(self) -> str:
        """The digest of everything fed so far; the hasher itself can go on being fed."""
        context = ctypes.create_string_buffer(self._context.raw, self._layout.size)
        out = ctypes.create_string_buffer(self._layout.digest_size)
        getattr(_LIBCRYPTO, f"{self._layout.prefix}_Final")(out, context)
        return out.raw.hex()

    def digest(self) -> str:
        """`algorithm:hex` of everything fed so far."""
        return f"{self.algorithm}:{self.hexdigest()}"
