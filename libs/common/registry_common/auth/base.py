"""The authorizer interface: who the caller is and what it may do in a Deploys project."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

from registry_common.errors import Unavailable


class Permission(StrEnum):
    """The Deploys API permissions the registry asks for."""

    PULL = "registry.pull"
    PUSH = "registry.push"
    LIST = "registry.list"
    GET = "registry.get"


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorizer's answer for one (credentials, project, permission).

    `authenticated` tells "who are you?" (401) from "not for you" (403) when not allowed; an
    anonymous caller is never authenticated, even when a public project allows it to pull.
    `project_id` is the project's id at the Deploys API (labels billing metrics), when known.
    """

    allowed: bool
    authenticated: bool
    project_id: str | None = None


class AuthUnavailable(Unavailable):
    """The auth backend could not answer (transport error, timeout, 5xx): retry later, 503."""


class Authorizer(ABC):
    """Decides requests from the caller's raw `Authorization` header value."""

    @abstractmethod
    async def authorize(
        self, authorization: str | None, project: str, permission: Permission
    ) -> Decision:
        """May the holder of `authorization` (None: anonymous) do `permission` in `project`?

        Raises AuthUnavailable when the backend cannot tell.
        """

    @abstractmethod
    async def identify(self, authorization: str) -> str | None:
        """The account (name or email) of valid credentials; None when they are invalid.

        Raises AuthUnavailable when the backend cannot tell.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections and pending work."""
