"""The benchmark scenarios: each runs once against one registry and returns a Sample.

Every value is a rate (higher is better), so `ours / reference >= 1.0` reads the same way for
all of them. Payloads are random and unique per round and registry (a distinct prefix on a
shared random buffer), digests are computed before the clock starts, and response bodies are
read and discarded, so the client's own work stays small and identical for both registries.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.client import RegistryClient, client_for, digest_of
from benchmarks.servers import PROJECT, ProcessTreeMonitor, Registry, Usage
from tests.fixtures.distribution import Image, make_image

MIB = 1024 * 1024
REPOSITORIES = {
    "monolithic": f"{PROJECT}/monolithic",
    "chunked": f"{PROJECT}/chunked",
    "pull": f"{PROJECT}/pull",
    "manifests": f"{PROJECT}/app",
    "small": f"{PROJECT}/small",
}
MANIFEST_TAG = "latest"


@dataclass
class Settings:
    """Sizes and durations; the defaults are the ones BENCHMARKS.md is written with."""

    push_blobs: int = 4
    push_blob_size: int = 64 * MIB
    chunk_size: int = 8 * MIB
    large_pull_size: int = 256 * MIB
    small_pulls: int = 16
    small_pull_size: int = 16 * MIB
    load_connections: int = 32
    load_seconds: float = 10.0
    pushers: int = 8
    images_per_pusher: int = 8


@dataclass
class Sample:
    """One run of one scenario against one registry."""

    value: float
    work: float  # units of work done (MiB, requests, images), for CPU per unit
    usage: Usage
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    first_error: str | None = None


@dataclass
class Prepared:
    """What the pull and manifest scenarios read, pushed once per registry before the rounds."""

    large_blob: str = ""
    small_blobs: list[str] = field(default_factory=list)
    manifest_digest: str = ""


class Payloads:
    """Unique blobs cut from one random buffer: a distinct 64-byte prefix per use."""

    def __init__(self, size: int) -> None:
        self.buffer = os.urandom(size)
        self.counter = 0

    def make(self, size: int) -> tuple[bytes, str]:
        self.counter += 1
        prefix = f"bench-{self.counter}-{time.time_ns()}".encode().ljust(64, b".")
        data = prefix + self.buffer[64:size]
        return data, digest_of(data)


@dataclass
class Context:
    """Shared by all scenarios of a run."""

    settings: Settings
    payloads: Payloads
    monitors: dict[str, ProcessTreeMonitor]
    prepared: dict[str, Prepared] = field(default_factory=dict)


async def _authenticated(client: RegistryClient) -> RegistryClient:
    await client.authenticate(sorted(REPOSITORIES.values()))
    return client


class _Errors:
    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def record(self, exc: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{type(exc).__name__}: {exc}"[:300]


async def _transfer(
    registry: Registry,
    context: Context,
    connections: int,
    operations: list[Callable[[RegistryClient], Awaitable[int]]],
) -> Sample:
    """Run `operations` concurrently; rate in MiB/s of the bytes they moved."""
    errors = _Errors()
    async with client_for(registry, connections) as client:
        await _authenticated(client)

        async def run(operation: Callable[[RegistryClient], Awaitable[int]]) -> int:
            try:
                return await operation(client)
            except Exception as exc:
                errors.record(exc)
                return 0

        with context.monitors[registry.label].window() as usage:
            started = time.perf_counter()
            moved = await asyncio.gather(*(run(operation) for operation in operations))
            elapsed = time.perf_counter() - started
    mebibytes = sum(moved) / MIB
    return Sample(mebibytes / elapsed, mebibytes, usage, errors.count, first_error=errors.first)


def _pusher(
    name: str, data: bytes, digest: str, chunk_size: int | None
) -> Callable[[RegistryClient], Awaitable[int]]:
    async def push(client: RegistryClient) -> int:
        if chunk_size is None:
            await client.push_monolithic(name, data, digest)
        else:
            await client.push_chunked(name, data, digest, chunk_size)
        return len(data)

    return push


async def monolithic_push(registry: Registry, context: Context) -> Sample:
    s = context.settings
    blobs = [context.payloads.make(s.push_blob_size) for _ in range(s.push_blobs)]
    name = REPOSITORIES["monolithic"]
    pushes = [_pusher(name, data, digest, None) for data, digest in blobs]
    return await _transfer(registry, context, s.push_blobs, pushes)


async def chunked_push(registry: Registry, context: Context) -> Sample:
    s = context.settings
    blobs = [context.payloads.make(s.push_blob_size) for _ in range(s.push_blobs)]
    name = REPOSITORIES["chunked"]
    pushes = [_pusher(name, data, digest, s.chunk_size) for data, digest in blobs]
    return await _transfer(registry, context, s.push_blobs, pushes)


def _puller(digest: str, size: int) -> Callable[[RegistryClient], Awaitable[int]]:
    async def pull(client: RegistryClient) -> int:
        received = await client.pull_blob(REPOSITORIES["pull"], digest)
        if received != size:
            raise ValueError(f"received {received} bytes of {size}")
        return received

    return pull


async def large_pull(registry: Registry, context: Context) -> Sample:
    digest = context.prepared[registry.label].large_blob
    return await _transfer(
        registry, context, 1, [_puller(digest, context.settings.large_pull_size)]
    )


async def concurrent_pulls(registry: Registry, context: Context) -> Sample:
    s = context.settings
    digests = context.prepared[registry.label].small_blobs
    pulls = [_puller(digest, s.small_pull_size) for digest in digests]
    return await _transfer(registry, context, s.small_pulls, pulls)


async def _load(
    registry: Registry,
    context: Context,
    request: Callable[[RegistryClient], Awaitable[object]],
) -> Sample:
    """`load_connections` workers repeat `request` for `load_seconds`; requests/s and latency."""
    s = context.settings
    errors = _Errors()
    latencies: list[float] = []
    async with client_for(registry, s.load_connections) as client:
        await _authenticated(client)
        # Open every connection before the clock starts.
        await asyncio.gather(*(request(client) for _ in range(s.load_connections)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.load_seconds

        async def worker() -> None:
            while loop.time() < deadline:
                started = time.perf_counter()
                try:
                    await request(client)
                except Exception as exc:
                    errors.record(exc)
                    continue
                latencies.append(time.perf_counter() - started)

        with context.monitors[registry.label].window() as usage:
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(s.load_connections)))
            elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Sample(
        len(latencies) / elapsed,
        len(latencies),
        usage,
        errors.count,
        p50_ms=quantiles[49] * 1000,
        p99_ms=quantiles[98] * 1000,
        first_error=errors.first,
    )


async def manifest_head_by_tag(registry: Registry, context: Context) -> Sample:
    name = REPOSITORIES["manifests"]
    return await _load(registry, context, lambda client: client.head_manifest(name, MANIFEST_TAG))


async def manifest_get_by_digest(registry: Registry, context: Context) -> Sample:
    name = REPOSITORIES["manifests"]
    digest = context.prepared[registry.label].manifest_digest
    return await _load(registry, context, lambda client: client.get_manifest(name, digest))


def small_image(seed: str) -> Image:
    """A config and three 4 KiB layers of distinct content, and their manifest."""
    return make_image(seed, layers=3, layer_size=4096)


async def small_image_push(registry: Registry, context: Context) -> Sample:
    """`pushers` concurrent clients each push `images_per_pusher` new images; images/s."""
    s = context.settings
    name = REPOSITORIES["small"]
    run_id = f"{registry.label}-{time.time_ns()}"
    images = [
        [small_image(f"{run_id}-{pusher}-{index}") for index in range(s.images_per_pusher)]
        for pusher in range(s.pushers)
    ]
    errors = _Errors()
    pushed = 0
    async with client_for(registry, s.pushers) as client:
        await _authenticated(client)

        async def pusher(number: int) -> None:
            nonlocal pushed
            for index, image in enumerate(images[number]):
                try:
                    await client.push_image(name, f"p{number}-{index}-{run_id}", image)
                    pushed += 1
                except Exception as exc:
                    errors.record(exc)

        with context.monitors[registry.label].window() as usage:
            started = time.perf_counter()
            await asyncio.gather(*(pusher(number) for number in range(s.pushers)))
            elapsed = time.perf_counter() - started
    return Sample(pushed / elapsed, pushed, usage, errors.count, first_error=errors.first)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    unit: str  # of the rate; the work unit is what comes before "/s"
    run: Callable[[Registry, Context], Awaitable[Sample]]
    large_transfer: bool = False
    latency: bool = False


SCENARIOS = [
    Scenario("monolithic_push", "Monolithic push, 4 x 64 MiB concurrent", "MiB/s", monolithic_push),
    Scenario("chunked_push", "Chunked push, 4 x 64 MiB in 8 MiB PATCHes", "MiB/s", chunked_push),
    Scenario(
        "large_pull", "Blob pull, 256 MiB sequential", "MiB/s", large_pull, large_transfer=True
    ),
    Scenario(
        "concurrent_pulls",
        "Blob pull, 16 concurrent x 16 MiB",
        "MiB/s",
        concurrent_pulls,
        large_transfer=True,
    ),
    Scenario(
        "manifest_head",
        "Manifest HEAD by tag, 32 connections",
        "req/s",
        manifest_head_by_tag,
        latency=True,
    ),
    Scenario(
        "manifest_get",
        "Manifest GET by digest, 32 connections",
        "req/s",
        manifest_get_by_digest,
        latency=True,
    ),
    Scenario(
        "small_image_push",
        "Small-image push (config + 3 layers + manifest), 8 pushers",
        "images/s",
        small_image_push,
    ),
]


async def prepare(registry: Registry, context: Context) -> Prepared:
    """Push what the pull and manifest scenarios read, and check one pull of each kind."""
    s = context.settings
    prepared = Prepared()
    async with client_for(registry, s.small_pulls) as client:
        await _authenticated(client)
        name = REPOSITORIES["pull"]
        data, prepared.large_blob = context.payloads.make(s.large_pull_size)
        await client.push_monolithic(name, data, prepared.large_blob)
        del data
        smalls = [context.payloads.make(s.small_pull_size) for _ in range(s.small_pulls)]
        await asyncio.gather(
            *(client.push_monolithic(name, data, digest) for data, digest in smalls)
        )
        prepared.small_blobs = [digest for _, digest in smalls]
        image = small_image(f"{registry.label}-manifests")
        await client.push_image(REPOSITORIES["manifests"], MANIFEST_TAG, image)
        prepared.manifest_digest = image.digest
        if await client.get_manifest(REPOSITORIES["manifests"], image.digest) != image.manifest:
            raise RuntimeError(f"{registry.label}: the manifest read back differs")
        await client.head_manifest(REPOSITORIES["manifests"], MANIFEST_TAG)
        if await client.pull_blob(name, prepared.small_blobs[0]) != s.small_pull_size:
            raise RuntimeError(f"{registry.label}: a pulled blob has the wrong size")
    return prepared
