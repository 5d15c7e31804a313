"""HTTP plumbing shared by the services: resources, request id, access log, errors, health."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from registry_common import metrics
from registry_common.db.pool import UNAVAILABLE_ERRORS, create_pool, ping
from registry_common.errors import Unavailable
from registry_common.settings import IPNetwork, Settings
from registry_common.storage import create_object_store
from registry_common.storage.base import ObjectStore

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
OBJECT_STORE = web.AppKey("object_store", ObjectStore)
SERVICE_NAME = web.AppKey("service_name", str)
SHUTTING_DOWN = web.AppKey("shutting_down", asyncio.Event)
REQUEST_PROJECT = web.RequestKey("project", str)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REQUEST_ID_HEADER = "X-Request-Id"
# A caller-given request id is kept only when it is short and plain (it ends up in logs).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorRenderer = Callable[[web.Request, BaseException], web.StreamResponse | None]

log = structlog.get_logger("registry.http")


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: open the PostgreSQL pool for the app's lifetime."""
    pool = await create_pool(app[SETTINGS])
    app[DB_POOL] = pool
    yield
    await pool.close()


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: create the object store for the app's lifetime."""
    store = create_object_store(app[SETTINGS])
    app[OBJECT_STORE] = store
    yield
    await store.close()


def client_address(request: web.Request) -> IPAddress | None:
    """The client's address: the connection's peer, unless the peer is a trusted proxy
    (TRUSTED_PROXIES), in which case the right-most `X-Forwarded-For` entry that is not one.

    Proxies append to `X-Forwarded-For`, so only the entries added by trusted ones can be
    believed; whatever a client wrote there itself, and `X-Real-Ip`, are never trusted.
    """
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return None
    trusted = request.app[SETTINGS].trusted_proxies
    if not _within(peer, trusted):
        return peer
    address = peer
    for entry in reversed(",".join(request.headers.getall("X-Forwarded-For", [])).split(",")):
        try:
            address = ipaddress.ip_address(entry.strip())
        except ValueError:
            break  # not an address: nothing to its left can be believed either
        if not _within(address, trusted):
            return address
    return address


def _within(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def set_request_project(request: web.Request, project: str) -> None:
    """Record the Deploys project a request is about, for the access log."""
    request[REQUEST_PROJECT] = project
    structlog.contextvars.bind_contextvars(project=project)


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id, then log one line and observe latency when it is answered."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        duration = time.perf_counter() - started
        route = request.match_info.route.resource
        route_name = route.canonical if route is not None else "unmatched"
        service = request.app[SERVICE_NAME]
        metrics.REQUEST_DURATION.labels(service, request.method, route_name, str(status)).observe(
            duration
        )
        log.info(
            "request_handled",
            method=request.method,
            path=request.rel_url.path,
            status=status,
            duration_ms=round(duration * 1000, 2),
            project=request.get(REQUEST_PROJECT),
            remote=str(client_address(request) or request.remote),
        )


def error_middleware(render: ErrorRenderer) -> Any:
    """Turn exceptions into replies: `render` shapes the service's own errors; anything it
    leaves (returns None for) is logged with its traceback and answered 500 without details."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if request.writer.output_size > 0:
                # A reply is already on the wire (a blob failing mid-stream): a second one
                # would land inside its body. Re-raised, aiohttp drops the connection, so the
                # client sees a short body instead of wrong bytes or a hang.
                log.exception("response_failed_after_start", error_type=type(exc).__name__)
                raise
            rendered = render(request, exc)
            if rendered is not None:
                return rendered
            if isinstance(exc, web.HTTPException):
                raise
            log.exception("request_failed", error_type=type(exc).__name__)
            return web.json_response({"error": "internal error"}, status=500)

    return middleware


def is_unavailable(exc: BaseException) -> bool:
    """True for errors meaning PostgreSQL, storage or the Deploys API is unreachable (answer 503,
    retry later)."""
    return isinstance(exc, (*UNAVAILABLE_ERRORS, Unavailable)) and not isinstance(
        exc, FileNotFoundError
    )


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: PostgreSQL and storage answer, and the process is not shutting down."""
    app = request.app
    problems: dict[str, str] = {}
    if app[SHUTTING_DOWN].is_set():
        problems["process"] = "shutting down"
    try:
        await ping(app[DB_POOL])
    except Exception as exc:  # any failure means "not ready"
        problems["database"] = type(exc).__name__
    try:
        await app[OBJECT_STORE].ping()
    except Exception as exc:
        problems["storage"] = type(exc).__name__
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ok"})


async def _mark_shutting_down(app: web.Application) -> None:
    app[SHUTTING_DOWN].set()


def create_base_app(
    settings: Settings,
    service: str,
    *,
    render_error: ErrorRenderer,
    middlewares: tuple[Any, ...] = (),
    client_max_size: int = 1024**2,
) -> web.Application:
    """An application with the shared resources, middlewares and health routes of every service."""
    settings.require_db_url()
    settings.check_storage()
    app = web.Application(
        middlewares=[access_log_middleware, error_middleware(render_error), *middlewares],
        client_max_size=client_max_size,
    )
    app[SETTINGS] = settings
    app[SERVICE_NAME] = service
    app[SHUTTING_DOWN] = asyncio.Event()
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(storage_ctx)
    app.on_shutdown.append(_mark_shutting_down)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
