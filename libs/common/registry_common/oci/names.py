"""Repository names, tags and references (OCI grammar plus the Deploys `<project>/<path>` rule)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry_common.errors import NameInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})+$")
PROJECT_NAME = re.compile(rf"^{_COMPONENT}$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class RepositoryName:
    """A validated `<project>/<path>` repository name."""

    full: str

    @property
    def project(self) -> str:
        """The Deploys project (namespace): the first component."""
        return self.full.split("/", 1)[0]

    @property
    def path(self) -> str:
        """The name without the project prefix, as the dashboard shows it."""
        return self.full.split("/", 1)[1]

    def __str__(self) -> str:
        return self.full


def is_repository_name(name: str) -> bool:
    """True when `name` is a valid repository name of at least two components."""
    return len(name) <= MAX_NAME_LENGTH and REPOSITORY_NAME.match(name) is not None


def parse_repository_name(name: str) -> RepositoryName:
    """Validate a repository name; NameInvalid otherwise."""
    if not is_repository_name(name):
        raise NameInvalid(name=name[:300])
    return RepositoryName(name)


def is_project_name(project: str) -> bool:
    """True when `project` can be the first component of a repository name."""
    return len(project) <= MAX_NAME_LENGTH and PROJECT_NAME.match(project) is not None


def is_tag(reference: str) -> bool:
    """True when `reference` is a valid tag."""
    return TAG.match(reference) is not None
