"""Registry tokens: signed, audience-bound, short-lived, and only ever HS256."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from registry_common.auth.tokens import ISSUER, AccessEntry, RegistryTokens
from registry_common.settings import ConfigError, Settings

SECRET = "a-test-secret-long-enough-for-hs512-too-" + "0123456789abcdef" * 2
SERVICE = "registry.example.com"
ACCESS: list[AccessEntry] = [
    {"type": "repository", "name": "alpha/app", "actions": ["pull", "push"]},
    {"type": "repository", "name": "alpha/tools", "actions": ["pull"]},
]


@pytest.fixture
def tokens() -> RegistryTokens:
    return RegistryTokens(SECRET, timedelta(minutes=5))


def test_issued_token_round_trips_subject_access_and_project_ids(tokens: RegistryTokens) -> None:
    issued = tokens.issue("alice@example.com", SERVICE, ACCESS, {"alpha": "id-alpha"})
    assert issued.expires_in == 300
    assert abs(issued.issued_at - datetime.now(UTC)) < timedelta(seconds=5)

    claims = tokens.verify(issued.token, SERVICE)

    assert claims is not None
    assert claims.subject == "alice@example.com"
    assert claims.allows("alpha/app", "push")
    assert claims.allows("alpha/tools", "pull")
    assert not claims.allows("alpha/tools", "push")
    assert not claims.allows("alpha/other", "pull")
    assert claims.project_id("alpha") == "id-alpha"
    assert claims.project_id("beta") is None


def test_token_claims_are_the_documented_ones(tokens: RegistryTokens) -> None:
    issued = tokens.issue("alice", SERVICE, ACCESS, {"alpha": "id-alpha"})
    raw = jwt.decode(issued.token, SECRET, algorithms=["HS256"], audience=SERVICE)
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"
    assert raw["iss"] == ISSUER
    assert raw["aud"] == SERVICE
    assert raw["exp"] - raw["iat"] == 300
    assert raw["nbf"] == raw["iat"]
    assert raw["access"] == ACCESS
    assert raw["project_ids"] == {"alpha": "id-alpha"}


def test_expired_token_is_rejected(tokens: RegistryTokens) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    issued = tokens.issue("alice", SERVICE, ACCESS, {}, now=long_ago)
    assert tokens.verify(issued.token, SERVICE) is None


def test_token_issued_in_the_future_is_rejected(tokens: RegistryTokens) -> None:
    issued = tokens.issue("alice", SERVICE, ACCESS, {}, now=datetime.now(UTC) + timedelta(hours=1))
    assert tokens.verify(issued.token, SERVICE) is None


def test_token_signed_with_another_secret_is_rejected(tokens: RegistryTokens) -> None:
    other = RegistryTokens("another-secret-of-at-least-32-characters", timedelta(minutes=5))
    issued = other.issue("alice", SERVICE, ACCESS, {})
    assert tokens.verify(issued.token, SERVICE) is None


def test_token_for_another_service_is_rejected(tokens: RegistryTokens) -> None:
    issued = tokens.issue("alice", "other.example.com", ACCESS, {})
    assert tokens.verify(issued.token, SERVICE) is None


def test_token_from_another_issuer_is_rejected(tokens: RegistryTokens) -> None:
    foreign = RegistryTokens(SECRET, timedelta(minutes=5), issuer="someone-else")
    issued = foreign.issue("alice", SERVICE, ACCESS, {})
    assert tokens.verify(issued.token, SERVICE) is None


def _forged_claims() -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "iss": ISSUER,
        "sub": "mallory",
        "aud": SERVICE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "access": ACCESS,
    }


def test_unsigned_token_is_rejected(tokens: RegistryTokens) -> None:
    forged = jwt.encode(_forged_claims(), key="", algorithm="none")
    assert tokens.is_registry_token(forged)  # it claims to be ours, so it is never passed on
    assert tokens.verify(forged, SERVICE) is None


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_token_with_another_algorithm_is_rejected(tokens: RegistryTokens, algorithm: str) -> None:
    forged = jwt.encode(_forged_claims(), SECRET, algorithm=algorithm)
    assert tokens.verify(forged, SERVICE) is None


@pytest.mark.parametrize(
    "access",
    [
        "alpha/app",
        [{"type": "repository", "name": "alpha/app", "actions": "pull"}],
        [{"type": "registry", "name": "catalog", "actions": ["*"]}],
        [["repository", "alpha/app", ["pull"]]],
    ],
)
def test_signed_token_with_an_access_claim_we_never_issue_is_rejected(
    tokens: RegistryTokens, access: object
) -> None:
    forged = jwt.encode({**_forged_claims(), "access": access}, SECRET, algorithm="HS256")
    assert tokens.verify(forged, SERVICE) is None


@pytest.mark.parametrize("value", ["not-a-jwt", "a.b.c", "deploys-api-token"])
def test_values_that_are_not_registry_tokens_are_recognised(
    tokens: RegistryTokens, value: str
) -> None:
    assert not tokens.is_registry_token(value)
    assert tokens.verify(value, SERVICE) is None


def test_token_secret_is_required_and_long_enough() -> None:
    with pytest.raises(ConfigError) as missing:
        RegistryTokens.from_settings(Settings(token_secret=None))
    assert missing.value.variable == "TOKEN_SECRET"
    with pytest.raises(ConfigError) as short:
        RegistryTokens.from_settings(Settings(token_secret="short"))
    assert short.value.variable == "TOKEN_SECRET"
    assert RegistryTokens.from_settings(Settings(token_secret=SECRET)) is not None


def test_a_verified_token_is_remembered_only_for_its_own_service(
    tokens: RegistryTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = tokens.issue("alice", SERVICE, ACCESS, {})
    assert tokens.verify(issued.token, SERVICE) is not None
    calls: list[str] = []
    real_decode = jwt.decode

    def counting_decode(*args: object, **kwargs: object) -> object:
        calls.append("decode")
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting_decode)
    assert tokens.verify(issued.token, SERVICE) is not None
    assert tokens.is_registry_token(issued.token)
    assert calls == []  # served from memory: no signature check, no parse
    assert tokens.verify(issued.token, "other.example.com") is None
    assert calls == ["decode"]


def test_a_remembered_token_stops_working_when_it_expires(
    tokens: RegistryTokens, monkeypatch: pytest.MonkeyPatch
) -> None:

    issued = tokens.issue("alice", SERVICE, ACCESS, {})
    assert tokens.verify(issued.token, SERVICE) is not None
    later = datetime.now(UTC) + timedelta(minutes=10)
    monkeypatch.setattr(time, "time", later.timestamp)  # what auth/tokens.py reads

    class Later(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return later

    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)
    assert tokens.verify(issued.token, SERVICE) is None
