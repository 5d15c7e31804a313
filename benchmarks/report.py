"""BENCHMARKS.md: medians per scenario, the ratio ours/reference, errors and peak RSS."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks.scenarios import MIB, SCENARIOS, Sample, Scenario

SECTION_START = "<!-- distribution-benchmark:start -->"
SECTION_END = "<!-- distribution-benchmark:end -->"
RSS_TARGET_MIB = 150
RATIO_TARGET = 1.0
LABELS = ("ours", "reference")


@dataclass
class RunInfo:
    """What the report says about how the numbers were made."""

    command: str
    rounds: int
    load_seconds: float
    workers: int
    reference_version: str
    postgres_version: str
    elapsed_seconds: float
    idle_memory: dict[str, tuple[int, int]]  # label -> (RSS, PSS) right after start
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


Results = dict[str, dict[str, list[Sample]]]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    total: int = psutil.virtual_memory().total
    return total / 1024**3


def _format(value: float) -> str:
    if math.isnan(value):  # no sample
        return "-"
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def scenario_row(scenario: Scenario, results: Results) -> tuple[float, float, float, int, int]:
    """Medians of ours and the reference, their ratio, and the error totals."""
    ours = _median([sample.value for sample in results[scenario.key]["ours"]])
    reference = _median([sample.value for sample in results[scenario.key]["reference"]])
    ratio = ours / reference if reference else float("nan")
    errors = [sum(sample.errors for sample in results[scenario.key][label]) for label in LABELS]
    return ours, reference, ratio, errors[0], errors[1]


def peak_memory(results: Results, label: str, *, large_transfers_only: bool) -> tuple[float, float]:
    """The highest (RSS, PSS) sampled, in MiB, over the chosen scenarios and every round."""
    samples = [
        sample
        for scenario in SCENARIOS
        if scenario.large_transfer or not large_transfers_only
        for sample in results[scenario.key][label]
    ]
    rss = max((sample.usage.peak_rss for sample in samples), default=0) / MIB
    pss = max((sample.usage.peak_pss for sample in samples), default=0) / MIB
    return rss, pss


def cpu_per_unit(scenario: Scenario, results: Results, label: str) -> float:
    """Median over rounds of CPU milliseconds per unit of work (MiB, request, image)."""
    return _median(
        [
            sample.usage.cpu_seconds * 1000 / sample.work
            for sample in results[scenario.key][label]
            if sample.work
        ]
    )


def _cpu_rows(results: Results) -> list[str]:
    rows = [
        "| scenario | CPU per | ours (service + PostgreSQL) | reference | ratio reference/ours |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for scenario in SCENARIOS:
        ours = cpu_per_unit(scenario, results, "ours")
        reference = cpu_per_unit(scenario, results, "reference")
        ratio = reference / ours if ours else float("nan")
        unit = scenario.unit.removesuffix("/s").removesuffix("s")
        rows.append(
            f"| {scenario.title} | {unit} | {ours:.3f} ms | {reference:.3f} ms | {ratio:.2f} |"
        )
    return rows


def _memory_rows(results: Results, info: RunInfo) -> list[str]:
    ours_large, ours_large_pss = peak_memory(results, "ours", large_transfers_only=True)
    ours_any, ours_any_pss = peak_memory(results, "ours", large_transfers_only=False)
    reference_large, _ = peak_memory(results, "reference", large_transfers_only=True)
    reference_any, _ = peak_memory(results, "reference", large_transfers_only=False)
    idle_rss, idle_pss = (value / MIB for value in info.idle_memory["ours"])
    reference_idle = info.idle_memory["reference"][0] / MIB
    met = "yes" if ours_large < RSS_TARGET_MIB else "**no**"
    growth = max(
        (
            sample.usage.peak_rss - sample.usage.start_rss
            for scenario in SCENARIOS
            if scenario.large_transfer
            for sample in results[scenario.key]["ours"]
        ),
        default=0,
    )
    return [
        "| when | ours, RSS summed | ours, PSS summed | reference, RSS |",
        "| --- | ---: | ---: | ---: |",
        f"| idle, right after start | {idle_rss:.0f} MiB | {idle_pss:.0f} MiB "
        f"| {reference_idle:.0f} MiB |",
        f"| peak during the 256 MiB transfers (blob pulls) | {ours_large:.0f} MiB "
        f"| {ours_large_pss:.0f} MiB | {reference_large:.0f} MiB |",
        f"| peak during any scenario | {ours_any:.0f} MiB | {ours_any_pss:.0f} MiB "
        f"| {reference_any:.0f} MiB |",
        "",
        f"Target: summed RSS of ours below {RSS_TARGET_MIB} MiB during the 256 MiB transfers: "
        f"{met}. The transfers themselves add at most {growth / MIB:.0f} MiB to what the "
        "processes held when they began (what is held beyond the idle figure is left from the "
        "push scenarios before them).",
    ]


def render(results: Results, info: RunInfo) -> str:
    """This benchmark's section of BENCHMARKS.md, between its markers."""
    lines = [
        SECTION_START,
        "## Distribution service against the reference registry (`make bench`)",
        "",
        "This registry's distribution service against the reference registry (CNCF Distribution,",
        "Debian's `docker-registry`), driven by one client in one run. Regenerate with:",
        "",
        "```sh",
        info.command,
        "```",
        "",
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {info.rounds} rounds, "
        f"{info.elapsed_seconds:.0f} s in all.",
        "",
        "### Results",
        "",
        "Medians over the rounds. Every value is a rate, so a ratio ours/reference of 1.0 or more",
        "means this service is at least as fast. Errors are totals over all rounds.",
        "",
        "| scenario | unit | ours | reference | ratio | target >= 1.0 | errors (ours / ref) |",
        "| --- | --- | ---: | ---: | ---: | :---: | ---: |",
    ]
    for scenario in SCENARIOS:
        ours, reference, ratio, ours_errors, reference_errors = scenario_row(scenario, results)
        met = "yes" if ratio >= RATIO_TARGET and ours_errors == 0 else "**no**"
        lines.append(
            f"| {scenario.title} | {scenario.unit} | {_format(ours)} | {_format(reference)} "
            f"| {ratio:.2f} | {met} | {ours_errors} / {reference_errors} |"
        )
    lines += [
        "",
        f"Latency of the {info.load_seconds:.0f}-second manifest runs (medians over rounds, ms):",
        "",
        "| scenario | ours p50 | ours p99 | reference p50 | reference p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for scenario in SCENARIOS:
        if not scenario.latency:
            continue
        cells = []
        for label in LABELS:
            samples = results[scenario.key][label]
            cells.append(_median([s.p50_ms for s in samples if s.p50_ms is not None]))
            cells.append(_median([s.p99_ms for s in samples if s.p99_ms is not None]))
        lines.append(f"| {scenario.title} | " + " | ".join(f"{cell:.2f}" for cell in cells) + " |")
    lines += [
        "",
        "CPU time the registry used per unit of work (medians over rounds), from the processes'",
        "own counters: unlike the rates above, it does not depend on what else the machine ran.",
        "",
        *_cpu_rows(results),
    ]
    lines += [
        "",
        "Memory of the registry processes, sampled every 20 ms (PSS every 100 ms). Ours is",
        f"{info.workers} worker processes, the first of which forked the others: summed RSS",
        "counts the pages they share once per process, PSS (proportional set size) divides",
        "them among their sharers.",
        "",
        *_memory_rows(results, info),
    ]
    first_errors = [
        f"- {scenario.title}, {label}: {sample.first_error}"
        for scenario in SCENARIOS
        for label in LABELS
        for sample in results[scenario.key][label][:1]
        if sample.first_error
    ]
    if first_errors:
        lines += ["", "First error of each failing scenario:", "", *first_errors]
    lines += [
        "",
        "### How it is measured",
        "",
        f"- Machine: {os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}. "
        "Client, both registries and PostgreSQL share it, all on 127.0.0.1. Load average "
        f"(1, 5, 15 min) before the run: {_loads(info.load_before)}; after: "
        f"{_loads(info.load_after)}.",
        f"- Ours: `python -m registry_distribution`, {info.workers} worker processes "
        "(WEB_CONCURRENCY, default the CPU count) sharing the port, filesystem storage, "
        f"embedded PostgreSQL {info.postgres_version}, `AUTH_MODE=static`: the client takes a "
        "Bearer token from `/token` once per scenario and sends it on every request.",
        f"- Reference: {info.reference_version}, filesystem storage, in-memory blob descriptor "
        "cache, deletes enabled, no auth.",
        "- Client: one Python process (aiohttp), the same requests for both registries; each "
        "round runs every scenario against both, alternating which registry goes first. "
        "Payloads are random and new for every run, digests computed before the clock starts; "
        "response bodies are read and discarded.",
        "- Memory and CPU: psutil reads the process trees (our workers; the "
        "reference's one process; for CPU also PostgreSQL's postmaster and backends, part of "
        "what our service costs) while each scenario runs, in a thread of the client.",
        "- Scenarios: monolithic push is `POST` then `PUT ?digest=` with the body; chunked push "
        "is `POST`, `PATCH`es with `Content-Range`, `PUT ?digest=`; the pulls read blobs pushed "
        "before the rounds; the manifest runs keep 32 connections busy for "
        f"{info.load_seconds:.0f} s after opening them; a small-image push is, per blob, `HEAD` "
        "then upload when missing, then `PUT` of the manifest by tag, as docker does.",
    ]
    lines.append(SECTION_END)
    return "\n".join(lines)


def _loads(loads: tuple[float, float, float]) -> str:
    return ", ".join(f"{load:.2f}" for load in loads)


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Put `section` (which begins with `start` and ends with `end`) into the Markdown file at
    `path`: in place of the text between those markers when it has them, else at the end; the
    rest of the file (other benchmarks' sections) stays as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    path.write_text(text)


def write_report(path: Path, results: Results, info: RunInfo) -> None:
    """Write this benchmark's section of `path` (BENCHMARKS.md)."""
    write_section(path, render(results, info), SECTION_START, SECTION_END)
