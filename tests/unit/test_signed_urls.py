"""Cloud CDN signed URLs: the format Google documents, and what the origin accepts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from registry_common.auth.signed_urls import SigningKey, UrlSigner, decode_key

# Test vectors of Google's own Cloud CDN signing samples (GoogleCloudPlatform docs samples:
# the key "nZtRohdNF9m3cKM24IcK4w==", key name "my-key"), so the format is checked against
# Google's implementation, not only against this one.
GOOGLE_KEY = SigningKey("my-key", decode_key("nZtRohdNF9m3cKM24IcK4w=="))
GOOGLE_EXAMPLES = [
    (
        "http://35.186.234.33/index.html",
        1558131350,
        "http://35.186.234.33/index.html?Expires=1558131350&KeyName=my-key"
        "&Signature=fm6JZSmKNsB5sys8VGr-JE4LiiE=",
    ),
    (
        "https://www.google.com/",
        1549751401,
        "https://www.google.com/?Expires=1549751401&KeyName=my-key"
        "&Signature=M_QO7BGHi2sGqrJO-MDr0uhDFuc=",
    ),
]
NOW = 1_700_000_000.0
URL = "https://cdn.example.test/proj/app/blobs/sha256:" + "a" * 64


def signer(current: SigningKey = GOOGLE_KEY, previous: SigningKey | None = None) -> UrlSigner:
    return UrlSigner(current, previous, clock=lambda: NOW)


def query_of(signed: str) -> str:
    return signed.split("?", 1)[1]


@pytest.mark.parametrize(("url", "expires", "expected"), GOOGLE_EXAMPLES)
def test_signature_matches_googles_documented_examples(
    url: str, expires: int, expected: str
) -> None:
    assert signer().sign(url, expires) == expected


def test_key_is_16_bytes_of_base64url() -> None:
    assert decode_key("nZtRohdNF9m3cKM24IcK4w") == bytes.fromhex("9d9b51a2174d17d9b770a336e0870ae3")
    for bad in ("not base64 !", "c2hvcnQ=", "nZtRohdNF9m3cKM24IcK4wAA"):
        with pytest.raises(ValueError, match=r"base64url|16 bytes"):
            decode_key(bad)


def test_a_fresh_signature_is_accepted() -> None:
    signed = signer().sign_for(URL, 600)
    assert signer().verify(URL, query_of(signed))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: "",  # unsigned
        lambda q: q.split("&Signature=")[0],  # no signature
        lambda q: q[:-6] + ("AAAAA=" if not q.endswith("AAAAA=") else "BBBBB="),  # forged
        lambda q: q.replace("Expires=", "Expires=9"),  # extended
        lambda q: q.replace("KeyName=my-key", "KeyName=other-key"),  # unknown key
        lambda q: q + "&x=1",  # trailing parameter
        lambda q: "x=1&" + q,  # leading parameter
    ],
)
def test_anything_but_the_exact_signature_is_refused(tamper: Callable[[str], str]) -> None:
    query = query_of(signer().sign_for(URL, 600))
    assert not signer().verify(URL, tamper(query))


def test_an_expired_signature_is_refused() -> None:
    query = query_of(signer().sign(URL, int(NOW) - 1))
    assert not signer().verify(URL, query)
    assert signer().verify(URL, query_of(signer().sign(URL, int(NOW) + 1)))


def test_a_signature_for_another_url_is_refused() -> None:
    query = query_of(signer().sign_for(URL, 600))
    assert not signer().verify(URL.replace("proj/app", "proj/other"), query)


def test_a_key_not_configured_is_refused_even_with_a_matching_name() -> None:
    attacker = SigningKey("my-key", bytes(16))
    query = query_of(signer(attacker).sign_for(URL, 600))
    assert not signer().verify(URL, query)


def test_the_previous_key_still_verifies_during_a_rotation() -> None:
    new = SigningKey("key-2", bytes(range(16)))
    old_query = query_of(signer(GOOGLE_KEY).sign_for(URL, 600))
    rotated = signer(new, previous=GOOGLE_KEY)
    assert rotated.verify(URL, old_query)
    assert rotated.verify(URL, query_of(rotated.sign_for(URL, 600)))
    assert "KeyName=key-2" in rotated.sign_for(URL, 600)
    assert not signer(new).verify(URL, old_query)
