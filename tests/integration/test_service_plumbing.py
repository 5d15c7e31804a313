"""Every service answers health checks, tags requests with an id, and never leaks tracebacks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from aiohttp import web

from registry_common.settings import Settings
from registry_distribution.app import create_app as create_distribution
from registry_jobs.app import create_app as create_jobs
from registry_management.app import create_app as create_management

AppFactory = Callable[[Settings], web.Application]
SERVICES = pytest.mark.parametrize(
    "create_app",
    [create_distribution, create_management, create_jobs],
    ids=["distribution", "management", "jobs"],
)


@SERVICES
async def test_healthz_and_readyz_answer_200(
    aiohttp_client: Any, settings: Settings, create_app: AppFactory
) -> None:
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["status"] == "ok"


@SERVICES
async def test_readyz_fails_while_postgres_is_unreachable(
    aiohttp_client: Any, make_settings: Any, unused_tcp_port: int, create_app: AppFactory
) -> None:
    settings = make_settings(db_url=f"postgres://u:p@127.0.0.1:{unused_tcp_port}/none")
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "database" in (await ready.json())["problems"]


@SERVICES
async def test_readyz_fails_while_storage_is_unusable(
    aiohttp_client: Any, settings: Settings, create_app: AppFactory
) -> None:
    client = await aiohttp_client(create_app(settings))
    assert settings.storage_path is not None
    shutil.rmtree(settings.storage_path)  # the volume went away under the running service
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "storage" in (await ready.json())["problems"]


@SERVICES
async def test_request_id_is_echoed_or_generated(
    aiohttp_client: Any, settings: Settings, create_app: AppFactory
) -> None:
    client = await aiohttp_client(create_app(settings))
    given = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith junk"})
    assert generated.headers["X-Request-Id"] not in ("", "bad id\twith junk")
    assert len(generated.headers["X-Request-Id"]) == 32


@SERVICES
async def test_unexpected_error_is_500_without_details(
    aiohttp_client: Any, settings: Settings, create_app: AppFactory
) -> None:
    app = create_app(settings)

    async def explode(_: web.Request) -> web.Response:
        raise RuntimeError("secret internals /etc/passwd")

    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/explode")
    assert response.status == 500
    body = await response.text()
    assert "secret internals" not in body
    assert "Traceback" not in body
    assert any(entry["event"] == "request_failed" for entry in logs)


@SERVICES
async def test_each_request_logs_one_access_line(
    aiohttp_client: Any, settings: Settings, create_app: AppFactory
) -> None:
    client = await aiohttp_client(create_app(settings))
    with structlog.testing.capture_logs() as logs:
        await client.get("/healthz")
    lines = [entry for entry in logs if entry["event"] == "request_handled"]
    assert len(lines) == 1
    assert lines[0]["status"] == 200
    assert lines[0]["path"] == "/healthz"
    assert lines[0]["duration_ms"] >= 0
