"""Runs a service process: settings, logging, worker processes sharing the port, metrics, signals.

Imports of the app (and so of prometheus_client) happen only after PROMETHEUS_MULTIPROC_DIR is
decided, because prometheus_client picks its storage mode when the first metric is created.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import importlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Any

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


def _limit_malloc_arenas() -> None:
    libc_name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None) if libc_name else None
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def _load_factory(path: str) -> AppFactory:
    module_name, _, attribute = path.partition(":")
    factory: AppFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


async def _serve(
    factory: AppFactory, settings: Settings, *, reuse_port: bool, serve_metrics: bool
) -> None:
    app = factory(settings)
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
        from registry_common.metrics import create_metrics_app

        metrics_runner = web.AppRunner(create_metrics_app(), access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, settings.host, settings.metrics_port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("service_started", host=settings.host, port=settings.port, pid=os.getpid())
    await stop.wait()
    log.info("service_stopping", pid=os.getpid())
    # Stops accepting, lets running requests finish within shutdown_timeout, then cleans up.
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    log.info("service_stopped", pid=os.getpid())


def _run_worker(
    factory_path: str, settings: Settings, *, reuse_port: bool, serve_metrics: bool
) -> None:
    factory = _load_factory(factory_path)
    uvloop.run(_serve(factory, settings, reuse_port=reuse_port, serve_metrics=serve_metrics))


def _supervise(factory_path: str, settings: Settings, workers: int) -> int:
    """Fork `workers` processes sharing the port (SO_REUSEPORT); serve their merged metrics."""
    children: set[int] = set()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                _run_worker(factory_path, settings, reuse_port=True, serve_metrics=False)
            except BaseException:
                log.exception("worker_failed")
                code = 1
            finally:
                os._exit(code)
        children.add(pid)

    from prometheus_client import multiprocess, start_http_server

    from registry_common.metrics import metrics_registry

    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.host, registry=metrics_registry())

    stopping = False

    def forward(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while children:
        pid, status = os.wait()
        children.discard(pid)
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if not stopping:
            log.error("worker_exited", pid=pid, status=status)
            exit_code = 1
            forward(signal.SIGTERM, None)
    return exit_code


def run_service(service: str, factory_path: str, *, multi_worker: bool = True) -> None:
    """Entry point of a service: configuration errors end the process with one line.

    The app is imported before the workers fork, so they share its modules' memory.
    """
    _limit_malloc_arenas()
    try:
        settings = load_settings()
        workers = settings.web_concurrency if multi_worker else 1
        configure_logging(settings)
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix=f"registry-{service}-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # Build the app once before forking so that configuration errors surface here.
        _load_factory(factory_path)(settings)
    except ConfigError as exc:
        sys.exit(f"registry-{service}: configuration error: {exc}")
    if workers == 1:
        _run_worker(factory_path, settings, reuse_port=False, serve_metrics=True)
        return
    try:
        code = _supervise(factory_path, settings, workers)
    finally:
        shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
    sys.exit(code)
