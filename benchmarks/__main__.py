"""`make bench`: this service against the reference registry, side by side on loopback.

Starts an embedded PostgreSQL, our distribution service and Debian's `docker-registry`, pushes
the data the read scenarios need, runs every scenario against both for several rounds
(alternating which goes first), writes BENCHMARKS.md and stops everything. Bounded in time: a
round that would not finish within --time-limit is not started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil
import uvloop

from benchmarks.report import Results, RunInfo, scenario_row, write_report
from benchmarks.scenarios import SCENARIOS, Context, Payloads, Settings, prepare
from benchmarks.servers import (
    ProcessTreeMonitor,
    reference_version,
    start_ours,
    start_reference,
)
from registry_common.db.schema import apply_schema
from registry_tools.local import _embedded_postgres

COMMAND = "make bench        # or: uv run python -m benchmarks [--rounds N] [--load-seconds S]"


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--load-seconds", type=float, default=10.0, help="length of each manifest run (10)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=480.0, help="seconds the rounds may take (480)"
    )
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument(
        "--only",
        action="append",
        choices=[scenario.key for scenario in SCENARIOS],
        help="run just this scenario (repeatable); prints the figures, writes no report",
    )
    return parser.parse_args()


async def _postgres_facts(db_url: str) -> tuple[str, int]:
    """PostgreSQL's version, and the process id of its postmaster (its backends are the
    postmaster's children; their CPU time is part of what our service costs)."""
    connection = await asyncpg.connect(db_url)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        backend: int = await connection.fetchval("SELECT pg_backend_pid()")
        postmaster = psutil.Process(backend).ppid()
    finally:
        await connection.close()
    return version.split(maxsplit=1)[0], postmaster


async def _run(
    db_url: str, postmaster: int, workdir: Path, args: argparse.Namespace
) -> tuple[Results, int, dict[str, tuple[int, int]]]:
    """Start both registries, run the rounds, stop both; the samples, the rounds run and the
    idle memory of each registry."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    settings = Settings(load_seconds=args.load_seconds)
    ours, ours_process = await start_ours(db_url, workdir)
    reference, reference_process = await start_reference(workdir)
    registries = [ours, reference]
    monitors = {
        ours.label: ProcessTreeMonitor(ours.pid, cpu_roots=(postmaster,)),
        reference.label: ProcessTreeMonitor(reference.pid),
    }
    scenarios = [s for s in SCENARIOS if not args.only or s.key in args.only]
    results: Results = {scenario.key: {"ours": [], "reference": []} for scenario in scenarios}
    rounds_run = 0
    try:
        context = Context(settings, Payloads(settings.large_pull_size), monitors)
        for registry in registries:
            context.prepared[registry.label] = await prepare(registry, context)
        started = time.monotonic()
        longest_round = 0.0
        for number in range(args.rounds):
            if time.monotonic() - started + longest_round > args.time_limit:
                print(f"time limit: stopping after {rounds_run} rounds", flush=True)
                break
            round_started = time.monotonic()
            order = registries if number % 2 == 0 else registries[::-1]
            for scenario in scenarios:
                for registry in order:
                    sample = await scenario.run(registry, context)
                    results[scenario.key][registry.label].append(sample)
                by_label = {label: samples[-1] for label, samples in results[scenario.key].items()}
                print(
                    f"round {number + 1}/{args.rounds} {scenario.title}: "
                    f"ours {by_label['ours'].value:,.1f} ({by_label['ours'].errors} errors, "
                    f"peak RSS {by_label['ours'].usage.peak_rss / 2**20:.0f} MiB), "
                    f"reference {by_label['reference'].value:,.1f} "
                    f"({by_label['reference'].errors} errors) {scenario.unit}",
                    flush=True,
                )
            rounds_run += 1
            longest_round = max(longest_round, time.monotonic() - round_started)
    finally:
        for monitor in monitors.values():
            monitor.close()
        await ours_process.stop()
        await reference_process.stop()
    idle = {label: (m.idle_rss, m.idle_pss) for label, m in monitors.items()}
    return results, rounds_run, idle


def main() -> None:
    """Entry point of `python -m benchmarks`."""
    args = _parse_arguments()
    if shutil.which("docker-registry") is None:
        sys.exit("benchmarks: docker-registry is missing (make bench installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    began = time.monotonic()
    load_before = os.getloadavg()
    try:
        with _embedded_postgres(workdir / "postgres") as db_url:
            asyncio.run(apply_schema(db_url))
            postgres_version, postmaster = asyncio.run(_postgres_facts(db_url))
            # uvloop keeps the client's own overhead per request small (the same for both).
            results, rounds_run, idle_memory = uvloop.run(_run(db_url, postmaster, workdir, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if rounds_run == 0:
        sys.exit("benchmarks: no round finished")
    if args.only:
        return  # a partial run, for tuning: the per-round lines above are its output
    info = RunInfo(
        command=COMMAND,
        rounds=rounds_run,
        load_seconds=args.load_seconds,
        workers=int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1),
        reference_version=reference_version(),
        postgres_version=postgres_version,
        elapsed_seconds=time.monotonic() - began,
        idle_memory=idle_memory,
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    write_report(args.output, results, info)
    print(f"\nwrote {args.output}")
    for scenario in SCENARIOS:
        ours, reference, ratio, _, _ = scenario_row(scenario, results)
        print(f"  {scenario.title}: {ratio:.2f} ({ours:,.1f} / {reference:,.1f} {scenario.unit})")


if __name__ == "__main__":
    main()
