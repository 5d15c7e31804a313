"""Registry tokens of the Docker token flow: HS256 JWTs signed with TOKEN_SECRET.

Only the registry verifies them (every replica shares the secret), so a symmetric key is
enough. Claims:

- `iss`: ISSUER; `aud`: the service name of the challenge; `sub`: the account ("" anonymous);
- `iat`, `nbf`, `exp`: issue time, issue time, issue time + TOKEN_TTL; `jti`: random;
- `access`: `[{"type": "repository", "name": "<project>/<path>", "actions": ["pull", ...]}]`,
  the granted actions (Docker's claim, so the shape is familiar to anyone reading one);
- `project_ids`: `{"<project>": "<Deploys project id>"}` of the granted repositories, so a
  request carrying the token can label billing metrics without asking the Deploys API.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypedDict

import jwt

from registry_common.settings import ConfigError, Settings

ISSUER = "deploys-registry"
ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
# Replicas' clocks may differ by a few seconds.
CLOCK_LEEWAY = timedelta(seconds=10)
# Verified tokens remembered per process (a few hundred bytes each).
VERIFIED_CACHE_SIZE = 10_000


class AccessEntry(TypedDict):
    """One entry of the `access` claim."""

    type: str
    name: str
    actions: list[str]


class IssuedToken(NamedTuple):
    """A signed token, its lifetime in seconds and when it was issued."""

    token: str
    expires_in: int
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified claims of a registry token."""

    subject: str
    access: Mapping[str, frozenset[str]] = field(default_factory=dict)
    project_ids: Mapping[str, str] = field(default_factory=dict)

    def allows(self, repository: str, action: str) -> bool:
        """True when the token grants `action` on exactly `repository`."""
        return action in self.access.get(repository, frozenset())

    def project_id(self, project: str) -> str | None:
        """The Deploys project id recorded for `project`, if any."""
        return self.project_ids.get(project)


class RegistryTokens:
    """Issues and verifies registry tokens with one secret and lifetime."""

    def __init__(self, secret: str, ttl: timedelta, *, issuer: str = ISSUER) -> None:
        self._secret = secret
        self._ttl = ttl
        self._issuer = issuer
        # Verified tokens: a client sends the same token on every request of a pull or push,
        # and checking its signature is a large part of a small request's cost.
        self._verified: OrderedDict[str, tuple[str, TokenClaims, float]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryTokens:
        """Tokens keyed by TOKEN_SECRET; ConfigError when it is missing or too short."""
        secret = settings.token_secret
        if not secret:
            raise ConfigError(
                "TOKEN_SECRET", "required unless AUTH_MODE=none (the same value on every replica)"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError("TOKEN_SECRET", f"use at least {MIN_SECRET_LENGTH} characters")
        return cls(secret, settings.token_ttl)

    def issue(
        self,
        subject: str,
        service: str,
        access: Sequence[AccessEntry],
        project_ids: Mapping[str, str],
        *,
        now: datetime | None = None,
    ) -> IssuedToken:
        """Sign a token granting `access` to `subject` for `service`, valid from `now`."""
        issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": service,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self._ttl,
            "jti": uuid.uuid4().hex,
            "access": [dict(entry) for entry in access],
            "project_ids": dict(project_ids),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedToken(token, int(self._ttl.total_seconds()), issued_at)

    def verify(self, token: str, service: str) -> TokenClaims | None:
        """The claims of a token this registry signed for `service` and still valid; else None."""
        cached = self._verified.get(token)
        if cached is not None:
            audience, claims, expires = cached
            if audience == service and time.time() < expires:
                self._verified.move_to_end(token)
                return claims
        verified = self._verify_signed(token, service)
        if verified is None:
            return None
        claims, expires = verified
        self._verified[token] = (service, claims, expires)
        self._verified.move_to_end(token)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _verify_signed(self, token: str, service: str) -> tuple[TokenClaims, float] | None:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                return None
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=service,
                issuer=self._issuer,
                leeway=CLOCK_LEEWAY,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        typed = _claims_from(claims)
        return None if typed is None else (typed, float(claims["exp"]))

    def is_registry_token(self, value: str) -> bool:
        """True when `value` looks like a token of this registry (a JWT from our issuer),
        signed or not: such a value is never handed to another authorizer."""
        if value in self._verified:
            return True
        try:
            claims = jwt.decode(value, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return isinstance(claims, dict) and claims.get("iss") == self._issuer


def _claims_from(claims: dict[str, Any]) -> TokenClaims | None:
    """Typed claims, or None when the token was signed with a shape we never issue."""
    subject = claims.get("sub")
    entries = claims.get("access", [])
    project_ids = claims.get("project_ids", {})
    if not isinstance(subject, str) or not isinstance(entries, list):
        return None
    if not isinstance(project_ids, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in project_ids.items()
    ):
        return None
    access: dict[str, frozenset[str]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        name, actions = entry.get("name"), entry.get("actions")
        if entry.get("type") != "repository" or not isinstance(name, str):
            return None
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            return None
        access[name] = access.get(name, frozenset()) | frozenset(actions)
    return TokenClaims(subject, access, project_ids)
