"""Application factory of the jobs service: `/internal/<job>`, the Pub/Sub trigger, the timer.

Every trigger runs jobs through one JobRuns, so shutdown (SIGTERM) first stops taking Pub/Sub
messages and refuses new runs, then lets running jobs finish within SHUTDOWN_TIMEOUT.
"""

from __future__ import annotations

from aiohttp import web

from registry_common.http import SETTINGS, create_base_app, is_unavailable
from registry_common.settings import ConfigError, Settings, is_loopback_host
from registry_jobs.http_trigger import add_http_trigger
from registry_jobs.pubsub_trigger import check_subscription_path, pubsub_ctx, stop_pulling
from registry_jobs.runs import JOB_RUNS, JobRuns
from registry_jobs.timer_trigger import timer_ctx, timer_enabled


def render_job_error(request: web.Request, exc: BaseException) -> web.StreamResponse | None:
    """Answer errors as JSON; an unreachable database or storage is a 503."""
    if is_unavailable(exc):
        return web.json_response(
            {"error": "service unavailable"}, status=503, headers={"Retry-After": "5"}
        )
    return None


async def drain_job_runs(app: web.Application) -> None:
    """on_shutdown: refuse new runs; running ones get SHUTDOWN_TIMEOUT to finish."""
    await app[JOB_RUNS].close(app[SETTINGS].shutdown_timeout.total_seconds())


def check_internal_secret(settings: Settings) -> None:
    """Refuse to listen beyond loopback without INTERNAL_SECRET: `/internal/*` would run jobs
    for anyone who reaches the port (ConfigError, one line at start)."""
    if not settings.internal_secret and not is_loopback_host(settings.host):
        raise ConfigError(
            "INTERNAL_SECRET",
            f"required when HOST is not a loopback address (HOST={settings.host}): set it, "
            "or listen on 127.0.0.1 for local use",
        )


def create_app(settings: Settings) -> web.Application:
    """Build the jobs application; resources and triggers start when it starts."""
    if settings.pubsub_subscription:
        check_subscription_path(settings.pubsub_subscription)
    app = create_base_app(settings, "jobs", render_error=render_job_error)
    check_internal_secret(settings)
    app[JOB_RUNS] = JobRuns()
    add_http_trigger(app)
    # After the database and storage contexts of the base app: triggers need both, and
    # cleanup runs in reverse, so triggers stop before the pool and the store close.
    if settings.pubsub_subscription:
        app.cleanup_ctx.append(pubsub_ctx)
        app.on_shutdown.append(stop_pulling)
    if timer_enabled(settings):
        app.cleanup_ctx.append(timer_ctx)
    app.on_shutdown.append(drain_job_runs)
    return app
