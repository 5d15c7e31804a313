"""The two registries under test, on loopback, and what is measured of their processes.

Ours runs as production does: `python -m registry_distribution` with WEB_CONCURRENCY workers
(default: the CPU count) sharing the port, the filesystem backend, PostgreSQL, static users and
the token flow. The reference is Debian's `docker-registry` (CNCF Distribution) with
filesystem storage, no auth and deletes enabled.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.fixtures.processes import (
    LOOPBACK,
    Credentials,
    ServerProcess,
    auth_env,
    base_env,
    free_port,
    spawn_server,
    start_distribution,
)

REFERENCE_BINARY = "docker-registry"
READY_TIMEOUT = 60.0
RSS_SAMPLE_INTERVAL = 0.02
PROJECT = "bench"


@dataclass
class Registry:
    """A registry under test: its base URL, credentials (None: no auth) and main process id."""

    label: str
    url: str
    pid: int
    credentials: Credentials | None


@dataclass
class Usage:
    """What a registry's processes used during one scenario run."""

    start_rss: int = 0
    peak_rss: int = 0
    peak_pss: int = 0
    cpu_seconds: float = 0.0


class ProcessTreeMonitor:
    """Samples the memory of a process and all its descendants in a background thread, and
    counts the CPU time they (and the trees of `cpu_roots`, such as PostgreSQL) use.

    RSS is summed over the processes, as asked of the target; it counts the pages forked
    workers share with the process that forked them once per process. PSS (proportional set
    size: shared pages divided among their sharers) sums to what the tree really holds; it is
    costlier to read, so it is sampled every PSS_EVERY-th time.
    """

    PSS_EVERY = 5

    def __init__(self, pid: int, cpu_roots: tuple[int, ...] = ()) -> None:
        self.root = psutil.Process(pid)
        self.cpu_roots = [psutil.Process(root) for root in cpu_roots]
        self.idle_rss, self.idle_pss = self.memory(with_pss=True)
        self._usage = Usage()
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _tree(root: psutil.Process) -> list[psutil.Process]:
        try:
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def memory(self, *, with_pss: bool = False) -> tuple[int, int]:
        """(RSS, PSS) summed over the tree right now, in bytes; PSS is 0 unless asked for."""
        rss = pss = 0
        for process in self._tree(self.root):
            try:
                if with_pss:
                    full = process.memory_full_info()
                    rss += full.rss
                    pss += full.pss
                else:
                    rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return rss, pss

    def cpu_seconds(self) -> float:
        """User and system CPU time used so far by the living processes of all trees."""
        total = 0.0
        for root in [self.root, *self.cpu_roots]:
            for process in self._tree(root):
                try:
                    times = process.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
        return total

    @contextmanager
    def window(self) -> Iterator[Usage]:
        """Sample while the block runs; the Usage it yields is complete when the block ends."""
        usage = Usage()
        usage.start_rss, usage.peak_pss = self.memory(with_pss=True)
        usage.peak_rss = usage.start_rss
        cpu_before = self.cpu_seconds()
        self._usage = usage
        self._running.set()
        try:
            yield usage
        finally:
            self._running.clear()
            usage.cpu_seconds = self.cpu_seconds() - cpu_before
            rss, pss = self.memory(with_pss=True)
            usage.peak_rss = max(usage.peak_rss, rss)
            usage.peak_pss = max(usage.peak_pss, pss)

    def close(self) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(timeout=2)

    def _sample(self) -> None:
        count = 0
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.is_set():
                return
            count += 1
            rss, pss = self.memory(with_pss=count % self.PSS_EVERY == 0)
            usage = self._usage
            usage.peak_rss = max(usage.peak_rss, rss)
            usage.peak_pss = max(usage.peak_pss, pss)
            time.sleep(RSS_SAMPLE_INTERVAL)  # sampling period of a monitor thread


async def start_ours(db_url: str, workdir: Path) -> tuple[Registry, ServerProcess]:
    """This service, filesystem backend, static auth with one generated user."""
    user = Credentials("bench", secrets.token_urlsafe(16), PROJECT)
    env = {
        "DB_URL": db_url,
        "STORAGE_PATH": str(workdir / "ours-storage"),
        **auth_env("static", user, token_secret=secrets.token_hex(32)),
        "TOKEN_TTL": "1h",
    }
    if os.environ.get("WEB_CONCURRENCY"):
        env["WEB_CONCURRENCY"] = os.environ["WEB_CONCURRENCY"]
    process = await start_distribution(env, workdir / "ours.log", ready_timeout=READY_TIMEOUT)
    return Registry("ours", process.url, process.process.pid, user), process


REFERENCE_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: {host}:{port}
  secret: {secret}
"""


async def start_reference(workdir: Path) -> tuple[Registry, ServerProcess]:
    """CNCF Distribution from Debian's docker-registry package, its own config and storage."""
    binary = shutil.which(REFERENCE_BINARY)
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    config = workdir / "reference.yml"
    config.write_text(
        REFERENCE_CONFIG.format(
            root=workdir / "reference-storage",
            host=LOOPBACK,
            port=port,
            secret=secrets.token_hex(16),
        )
    )
    command = [binary, "serve", str(config)]
    reference = await spawn_server(
        "docker-registry", command, base_env(), workdir / "reference.log", port
    )
    try:
        await reference.wait_until_ok("/v2/", READY_TIMEOUT)
    except BaseException:
        await reference.stop(timeout=5)
        raise
    return Registry("reference", reference.url, reference.process.pid, None), reference


def reference_version() -> str:
    """`docker-registry --version`, for the report."""
    binary = shutil.which(REFERENCE_BINARY)
    if binary is None:
        return "not installed"
    result = subprocess.run(  # noqa: S603 - a fixed local binary
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    return result.stdout.strip() or result.stderr.strip()
