"""What every job shares: names, the context a job runs with, its report, how a run ends.

Job modules (gc, index, storage_usage) and the runner import this; nothing here imports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg

from registry_common.settings import Settings
from registry_common.storage.base import ObjectStore


class JobName(StrEnum):
    """The jobs, named as the seed's `/internal/<job>` endpoints."""

    INDEX_MANIFESTS = "indexManifests"
    RUN_BLOB_GC = "runBlobGC"
    CALCULATE_PROJECT_STORAGE = "calculateProjectStorage"
    RUN_ALL = "runAll"


class JobOutcome(StrEnum):
    """How a trigger ended (a failure raises JobFailed instead)."""

    COMPLETED = "completed"
    ALREADY_RUNNING = "already running"


class JobFailed(Exception):
    """A job (or a step of runAll) failed; `job` names it."""

    def __init__(self, job: JobName, cause: BaseException) -> None:
        super().__init__(f"{job} failed: {type(cause).__name__}: {cause}")
        self.job = job


@dataclass
class JobContext:
    """What every job works with."""

    pool: asyncpg.Pool
    store: ObjectStore
    settings: Settings


@dataclass
class JobReport:
    """Counts a job run reports (scanned, unlinked, deleted, bytes_freed, ...)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, amount: int = 1) -> None:
        """Add to one count."""
        self.counts[kind] = self.counts.get(kind, 0) + amount


JobFunction = Callable[[JobContext, JobReport], Awaitable[None]]
