"""Runs a service process: settings, logging, worker processes sharing the port, metrics, signals.

With WEB_CONCURRENCY > 1 the first process is itself a worker: it builds the app (which also
finds configuration errors before anything starts), forks the other workers so they share the
imported code's memory, serves the merged Prometheus metrics, forwards SIGTERM to the others and
ends the whole group if one of them dies. No process sits idle as a supervisor.

Imports of the app (and so of prometheus_client) happen only after PROMETHEUS_MULTIPROC_DIR is
decided, because prometheus_client picks its storage mode when the first metric is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import importlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable

import structlog
import uvloop
from aiohttp import web

from registry_common.logging import configure_logging
from registry_common.settings import ConfigError, Settings, load_settings

AppFactory = Callable[[Settings], web.Application]

# glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8
# Arenas per process: the storage and hashing threads would otherwise each get an arena, and
# freed chunk buffers would stay spread over them instead of going back to the system.
MALLOC_ARENAS = 2

log = structlog.get_logger("registry.server")


# How often a worker hands memory freed by finished transfers back to the system.
TRIM_INTERVAL_SECONDS = 2


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    libc_name = ctypes.util.find_library("c")
    function: Callable[..., int] | None = (
        getattr(ctypes.CDLL(libc_name), name, None) if libc_name else None
    )
    return function


def _limit_malloc_arenas() -> None:
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


async def _trim_memory_periodically() -> None:
    """Return freed heap pages to the system now and then: body buffers of large uploads are
    freed into malloc's free lists, where they would otherwise keep the process's RSS up."""
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is None:
        return
    while True:
        await asyncio.sleep(TRIM_INTERVAL_SECONDS)
        await asyncio.to_thread(malloc_trim, 0)


def _load_factory(path: str) -> AppFactory:
    module_name, _, attribute = path.partition(":")
    factory: AppFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


class _Workers:
    """The forked workers, seen from the first process."""

    def __init__(self, pids: set[int]) -> None:
        self.pids = pids
        self.failed = False

    def stop(self) -> None:
        """Ask every live worker to finish (they drain like the first process does)."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reap workers as they exit; one exiting on its own stops the whole group.

        One thread per worker blocks in waitpid() on that worker alone (uvloop keeps SIGCHLD,
        and a wait for any child would also reap other code's subprocesses).
        """
        # Only here: prometheus_client must not load before PROMETHEUS_MULTIPROC_DIR is set.
        from prometheus_client import multiprocess  # noqa: PLC0415 - see the module docstring

        waits = {
            asyncio.ensure_future(asyncio.to_thread(os.waitpid, pid, 0)): pid for pid in self.pids
        }
        for finished in asyncio.as_completed(list(waits)):
            try:
                pid, status = await finished
            except ChildProcessError:
                continue
            self.pids.discard(pid)
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
            if not stop.is_set():
                log.error("worker_exited", pid=pid, status=status)
                self.failed = True
                stop.set()


async def _serve(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool,
    serve_metrics: bool,
    workers: _Workers | None = None,
) -> bool:
    """Serve until SIGTERM or SIGINT; False when a worker of the group failed."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout.total_seconds(),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port, backlog=1024)
    await site.start()
    metrics_runner: web.AppRunner | None = None
    if serve_metrics and settings.metrics_port:
        # Only here: the metrics module creates metrics, after PROMETHEUS_MULTIPROC_DIR is set.
        from registry_common.metrics import create_metrics_app  # noqa: PLC0415

        metrics_runner = web.AppRunner(create_metrics_app(), access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, settings.host, settings.metrics_port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(workers.watch(stop)) if workers is not None else None
    trimmer = asyncio.create_task(_trim_memory_periodically())
    log.info("service_started", host=settings.host, port=settings.port, pid=os.getpid())
    await stop.wait()
    log.info("service_stopping", pid=os.getpid())
    trimmer.cancel()
    if workers is not None:
        workers.stop()
    # Stops accepting, lets running requests finish within shutdown_timeout, then cleans up.
    await runner.cleanup()
    if watcher is not None:
        await watcher
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    log.info("service_stopped", pid=os.getpid())
    return workers is None or not workers.failed


def _fork_workers(app: web.Application, settings: Settings, count: int) -> set[int]:
    pids: set[int] = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 0
            try:
                uvloop.run(_serve(app, settings, reuse_port=True, serve_metrics=False))
            except BaseException:
                log.exception("worker_failed")
                code = 1
            finally:
                os._exit(code)
        pids.add(pid)
    return pids


def run_service(service: str, factory_path: str, *, multi_worker: bool = True) -> None:
    """Entry point of a service: configuration errors end the process with one line."""
    _limit_malloc_arenas()
    _libc_function("malloc_trim")  # looked up (a subprocess) before any worker is forked
    metrics_dir: str | None = None
    try:
        settings = load_settings()
        workers = settings.web_concurrency if multi_worker else 1
        configure_logging(settings)
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix=f"registry-{service}-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # Built before forking: configuration errors surface here, and workers share its code.
        app = _load_factory(factory_path)(settings)
    except ConfigError as exc:
        sys.exit(f"registry-{service}: configuration error: {exc}")
    try:
        if workers == 1:
            uvloop.run(_serve(app, settings, reuse_port=False, serve_metrics=True))
            return
        group = _Workers(_fork_workers(app, settings, workers - 1))
        healthy = uvloop.run(
            _serve(app, settings, reuse_port=True, serve_metrics=True, workers=group)
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(0 if healthy else 1)
