"""Digests parse strictly, and a hasher's saved state resumes to the same digest as hashlib."""

from __future__ import annotations

import hashlib
import os

import pytest

from registry_common.oci.digests import ResumableHasher, digest_of, is_digest, parse_digest
from registry_common.oci.errors import ErrorCode
from tests.fixtures.distribution import raises_oci_error

GOOD = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "value",
    [
        GOOD,
        "sha512:" + "0" * 128,
    ],
)
def test_valid_digests_parse(value: str) -> None:
    assert str(parse_digest(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "A" * 64,  # upper-case hex
        "sha256:" + "a" * 63,  # short
        "sha256:" + "a" * 65,  # long
        "md5:" + "a" * 32,  # unknown algorithm
        "sha256:../../etc/passwd",
        "sha256%3A" + "a" * 64,
        "sha256:" + "a" * 63 + "/",
        "",
        "sha256",
        "sha512:" + "a" * 64,
    ],
)
def test_malformed_digests_are_digest_invalid(value: str) -> None:
    assert not is_digest(value)
    with raises_oci_error() as raised:
        parse_digest(value)
    assert raised.value.code is ErrorCode.DIGEST_INVALID
    assert raised.value.status == 400


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_saved_state_resumes_to_the_hashlib_digest(algorithm: str) -> None:
    data = os.urandom(300_001)
    first = ResumableHasher(algorithm)
    first.update(data[:12_345])
    state = first.export_state()
    second = ResumableHasher(algorithm, state)
    second.update(data[12_345:200_000])
    third = ResumableHasher(algorithm, second.export_state())
    third.update(memoryview(data)[200_000:])
    assert third.digest() == f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    assert third.digest() == digest_of(data, algorithm)


def test_hexdigest_does_not_finish_the_hasher() -> None:
    hasher = ResumableHasher()
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    hasher.update(b"def")
    assert hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_state_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="wrong size"):
        ResumableHasher("sha256", b"\x00" * 10)
