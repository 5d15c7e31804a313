"""What a migration reports: a live progress bar on a terminal, and a summary at the end.

The bar (rich) shows, per task, how many rows or objects are done out of how many are known,
the rate and the time left; a byte counter shows the volume and throughput. It is drawn on
stderr, and only when stderr is a terminal; log lines printed meanwhile appear above it. The
summary counts every item by kind and outcome and is the only thing written to stdout.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TextIO

import structlog
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = structlog.get_logger("registry.migrate")

# How many failures the summary names; every one of them is logged as it happens.
REPORTED_FAILURES = 20
BYTES = "bytes"


class Outcome(StrEnum):
    """What happened to one row or object."""

    COPIED = "copied"
    # A blob whose bytes were already stored under its digest: only the repository link was added.
    LINKED = "linked"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class MigrationSummary:
    """Counts per kind of item (table or object kind) and outcome, and the bytes copied."""

    command: str
    dry_run: bool = False
    kinds: dict[str, Counter[Outcome]] = field(default_factory=dict)
    bytes_copied: int = 0
    bytes_label: str = "bytes copied"
    # Objects the migration deliberately leaves behind (R2's `_uploads/`).
    ignored: int = 0
    failures: list[str] = field(default_factory=list)
    # The run ended on an error before it got through everything.
    stopped: bool = False

    def add_kind(self, kind: str) -> None:
        """Show `kind` in the summary even when nothing of it is found."""
        self.kinds.setdefault(kind, Counter())

    def record(self, kind: str, outcome: Outcome, amount: int = 1) -> None:
        """Count `amount` items of `kind` with `outcome`."""
        self.kinds.setdefault(kind, Counter())[outcome] += amount

    def fail(self, kind: str, item: str, reason: str) -> None:
        """Count one failed item, log it, and keep its description for the summary."""
        self.record(kind, Outcome.FAILED)
        log.error("migration_item_failed", kind=kind, item=item, reason=reason)
        if len(self.failures) < REPORTED_FAILURES:
            self.failures.append(f"{kind} {item}: {reason}")

    def total(self, outcome: Outcome) -> int:
        """Items of every kind with `outcome`."""
        return sum(counts[outcome] for counts in self.kinds.values())

    @property
    def failed(self) -> int:
        """Items that could not be migrated."""
        return self.total(Outcome.FAILED)

    def render(self) -> str:
        """The end-of-run report: one line per kind, a total line, the first failures."""
        if self.stopped:
            state = "stopped before the end (counts so far)"
        else:
            state = "dry run, nothing written" if self.dry_run else "finished"
        title = f"{self.command}: {state}"
        header = ("", *(outcome.value for outcome in Outcome))
        rows = [header]
        for kind, counts in self.kinds.items():
            rows.append((kind, *(str(counts[outcome]) for outcome in Outcome)))
        rows.append(("total", *(str(self.total(outcome)) for outcome in Outcome)))
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        lines = [title]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append(f"  {self.bytes_label}: {self.bytes_copied} ({decimal(self.bytes_copied)})")
        if self.ignored:
            lines.append(f"  ignored: {self.ignored} (temporary upload objects)")
        if self.failures:
            more = self.failed - len(self.failures)
            lines.append("  failures (all of them are in the log):")
            lines += [f"    {failure}" for failure in self.failures]
            if more > 0:
                lines.append(f"    ... and {more} more")
        return "\n".join(lines)


class _AmountColumn(ProgressColumn):
    """`done/total unit`, or a byte size for the byte counter."""

    def render(self, task: Task) -> Text:
        unit = str(task.fields.get("unit", ""))
        if unit == BYTES:
            return Text(decimal(int(task.completed)))
        total = "?" if task.total is None else str(int(task.total))
        return Text(f"{int(task.completed)}/{total} {unit}")


class _RateColumn(ProgressColumn):
    """Items or bytes per second."""

    def render(self, task: Task) -> Text:
        # The recent rate while there is one, else the average since the start.
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            speed = task.completed / task.elapsed
        if speed is None:
            return Text("")
        unit = str(task.fields.get("unit", ""))
        if unit == BYTES:
            return Text(f"{decimal(int(speed))}/s")
        return Text(f"{speed:,.0f} {unit}/s")


class ProgressTask:
    """One line of the bar; every method is a no-op when the bar is not shown."""

    def __init__(self, progress: Progress | None, task_id: TaskID | None) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: int = 1) -> None:
        """Count `amount` more done."""
        if self._progress is not None and self._task_id is not None:
            self._progress.advance(self._task_id, amount)

    def set_total(self, total: int) -> None:
        """Set how many there are in all (known once counted or listed)."""
        if self._progress is not None and self._task_id is not None:
            self._progress.update(self._task_id, total=total)

    def grow_total(self, amount: int) -> None:
        """Add to the total (objects found while listing goes on)."""
        if self._progress is not None and self._task_id is not None:
            task = self._progress.tasks[self._task_id]
            self._progress.update(self._task_id, total=(task.total or 0) + amount)


class MigrationProgress:
    """A progress display shown while the `with` block runs, when `console` is a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        if self._console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description:<12}"),
                BarColumn(),
                _AmountColumn(),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=self._console,
            )
        self._swapped: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []

    @property
    def shown(self) -> bool:
        """True when a bar is drawn."""
        return self._progress is not None

    def task(self, description: str, unit: str, total: int | None = None) -> ProgressTask:
        """Add a line counting `unit` (rows, objects, or BYTES)."""
        if self._progress is None:
            return ProgressTask(None, None)
        task_id = self._progress.add_task(description, total=total, unit=unit)
        return ProgressTask(self._progress, task_id)

    def __enter__(self) -> MigrationProgress:
        if self._progress is not None:
            original = sys.stderr
            self._progress.start()
            self._route_logs_through_bar(original)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._restore_logs()
            self._progress.stop()

    def _route_logs_through_bar(self, original: TextIO) -> None:
        # Logging handlers keep the stream they were made with; while the bar is live, rich
        # has replaced sys.stderr with a proxy that prints above the bar. Use it meanwhile.
        if sys.stderr is original:
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is original:
                self._swapped.append((handler, handler.stream))
                handler.setStream(sys.stderr)

    def _restore_logs(self) -> None:
        for handler, stream in self._swapped:
            handler.setStream(stream)
        self._swapped.clear()
