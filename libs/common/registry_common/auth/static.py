"""Local users from AUTH_USERS (`AUTH_MODE=static`): `user:password:projects`, comma-separated.

`projects` is `*` (every project) or project names separated by `|`. A password may contain `:`
(the user is what comes before the first one, the projects what follows the last one) but not
`,`. Only HTTP Basic credentials are understood; a listed user has every permission on its
projects and nothing elsewhere; anonymous callers have nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from registry_common.auth.base import Authorizer, Decision, Permission
from registry_common.oci.names import is_project_name
from registry_common.settings import ConfigError

VARIABLE = "AUTH_USERS"
ALL_PROJECTS = "*"


@dataclass(frozen=True, slots=True)
class StaticUser:
    """One AUTH_USERS entry; `projects` is None for every project."""

    name: str
    password_digest: bytes
    projects: frozenset[str] | None

    def may_use(self, project: str) -> bool:
        """True when this user has the listed project (or every project)."""
        return self.projects is None or project in self.projects


def _digest(password: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the length too.
    return hashlib.sha256(password.encode()).digest()


def parse_users(spec: str) -> dict[str, StaticUser]:
    """Parse AUTH_USERS; ConfigError("AUTH_USERS", ...) on any malformed entry."""
    users: dict[str, StaticUser] = {}
    for position, raw in enumerate(spec.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        password, _, projects_field = rest.rpartition(":")
        if not name or not password or not projects_field:
            raise ConfigError(
                VARIABLE, f"entry {position}: expected user:password:projects (projects: * or a|b)"
            )
        if name in users:
            raise ConfigError(VARIABLE, f"entry {position}: user {name!r} is listed twice")
        projects: frozenset[str] | None = None
        if projects_field != ALL_PROJECTS:
            names = projects_field.split("|")
            invalid = [project for project in names if not is_project_name(project)]
            if invalid:
                raise ConfigError(
                    VARIABLE, f"entry {position}: invalid project name {invalid[0][:100]!r}"
                )
            projects = frozenset(names)
        users[name] = StaticUser(name, _digest(password), projects)
    if not users:
        raise ConfigError(VARIABLE, "no users: expected user:password:projects[,...]")
    return users


def parse_basic(authorization: str) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic `Authorization` value; None when it is not one."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    if not separator:
        return None
    return user, password


class StaticAuthorizer(Authorizer):
    """Authorizes the users of AUTH_USERS; no I/O, so never unavailable."""

    def __init__(self, users: dict[str, StaticUser]) -> None:
        self._users = users
        # Unknown users are checked against this too, so their answer takes as long.
        self._nobody = _digest("")

    @classmethod
    def from_spec(cls, spec: str) -> StaticAuthorizer:
        """Build from the AUTH_USERS value; ConfigError when it is malformed."""
        return cls(parse_users(spec))

    def _user_of(self, authorization: str) -> StaticUser | None:
        credentials = parse_basic(authorization)
        if credentials is None:
            return None
        name, password = credentials
        user = self._users.get(name)
        expected = user.password_digest if user is not None else self._nobody
        matches = hmac.compare_digest(_digest(password), expected)
        return user if matches and user is not None else None

    async def authorize(
        self, authorization: str | None, project: str, permission: Permission
    ) -> Decision:
        """Every permission on the user's projects; nothing for anyone else."""
        user = self._user_of(authorization) if authorization else None
        if user is None:
            return Decision(allowed=False, authenticated=False)
        if user.may_use(project):
            return Decision(allowed=True, authenticated=True, project_id=project)
        return Decision(allowed=False, authenticated=True)

    async def identify(self, authorization: str) -> str | None:
        """The user name of valid Basic credentials."""
        user = self._user_of(authorization)
        return user.name if user is not None else None
