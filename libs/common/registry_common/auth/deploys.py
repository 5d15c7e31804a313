"""The Deploys API authorizer: `me.authorized` and `me.get`, cached and collapsed.

How an answer becomes a Decision (the API itself tells "who are you?" from "not for you"):

- transport error, timeout, HTTP 5xx or 429, a redirect, or a reply that is not a JSON object:
  AuthUnavailable (the caller answers 503); never cached, the next request asks again;
- HTTP 401, or `{"ok": false}` whose error is the API's unauthorized sentinel
  (`api: unauthorized`): the credentials are invalid, not authenticated (401);
- `{"ok": true}`: allowed only when `result.authorized` and
  `result.project.billingAccount.active` are both true; otherwise denied;
- any other `{"ok": false}` (project not found, forbidden, ...) or HTTP 403: denied.

A denial counts as authenticated (403) only when credentials were sent: an anonymous caller is
never authenticated, so it gets the challenge (401) and can come back with credentials.

Every answer, allowed or denied, is cached for AUTH_CACHE_TTL under (sha256 of the
`Authorization` value, project, permission), in a bounded map; concurrent identical look-ups
share one HTTP call. Raw credentials are only held while a call is in flight and never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import structlog

from registry_common.auth.base import Authorizer, AuthUnavailable, Decision, Permission

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=3)
DEFAULT_MAX_ENTRIES = 50_000
UNAUTHORIZED_ERROR = "api: unauthorized"
# Replies are a few hundred bytes; anything far larger is not the API we know.
MAX_REPLY_BYTES = 1024 * 1024

T = TypeVar("T")

log = structlog.get_logger("registry.auth.deploys")


class _Reply:
    """An HTTP status and its decoded JSON object."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body

    @property
    def ok(self) -> bool:
        return self.status < 300 and self.body.get("ok") is True

    @property
    def result(self) -> dict[str, Any]:
        result = self.body.get("result")
        return result if isinstance(result, dict) else {}

    @property
    def says_unauthenticated(self) -> bool:
        if self.status == 401:
            return True
        error = self.body.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return self.body.get("ok") is not True and message == UNAUTHORIZED_ERROR


def _field(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def decision_from_reply(status: int, body: dict[str, Any], *, has_credentials: bool) -> Decision:
    """Turn a decoded `me.authorized` reply into a Decision (rules in the module docstring)."""
    reply = _Reply(status, body)
    if reply.says_unauthenticated:
        return Decision(allowed=False, authenticated=False)
    project_id = _field(reply.result, "project", "id")
    project_id = project_id if isinstance(project_id, str) and project_id else None
    allowed = (
        reply.ok
        and reply.result.get("authorized") is True
        and _field(reply.result, "project", "billingAccount", "active") is True
    )
    return Decision(allowed=allowed, authenticated=has_credentials, project_id=project_id)


class _TtlCache:
    """A bounded map whose entries expire `ttl` seconds after they were stored."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return False, None
        return True, value

    def put(self, key: Hashable, value: Any) -> None:
        now = self._clock()
        self._entries.pop(key, None)
        self._entries[key] = (now + self._ttl, value)
        # Entries share one TTL, so insertion order is expiry order: trim from the oldest.
        while self._entries:
            oldest_key, (expires_at, _) = next(iter(self._entries.items()))
            if expires_at > now and len(self._entries) <= self._max_entries:
                break
            del self._entries[oldest_key]

    def __len__(self) -> int:
        return len(self._entries)


class DeploysAuthorizer(Authorizer):
    """Asks the Deploys API at `base_url`, passing the caller's `Authorization` through."""

    def __init__(
        self,
        base_url: str,
        *,
        cache_ttl: timedelta = timedelta(seconds=30),
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._cache = _TtlCache(cache_ttl.total_seconds(), max_entries, clock)
        self._in_flight: dict[Hashable, asyncio.Task[Any]] = {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def authorize(
        self, authorization: str | None, project: str, permission: Permission
    ) -> Decision:
        """Ask `me.authorized` (or the cache) whether the caller may do `permission`."""
        key = ("authorized", _credentials_key(authorization), project, permission.value)

        async def ask() -> Decision:
            status, body = await self._post(
                "me.authorized",
                {"project": project, "permissions": [permission.value]},
                authorization,
            )
            return decision_from_reply(status, body, has_credentials=bool(authorization))

        decision: Decision = await self._cached(key, ask)
        return decision

    async def identify(self, authorization: str) -> str | None:
        """Ask `me.get` (or the cache) for the account's email; None for invalid credentials."""
        key = ("identify", _credentials_key(authorization))

        async def ask() -> str | None:
            status, body = await self._post("me.get", {}, authorization)
            reply = _Reply(status, body)
            if not reply.ok:
                return None
            email = reply.result.get("email")
            return email if isinstance(email, str) else ""

        account: str | None = await self._cached(key, ask)
        return account

    async def close(self) -> None:
        """Cancel look-ups still in flight and close the HTTP session."""
        for task in list(self._in_flight.values()):
            task.cancel()
        self._in_flight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _cached(self, key: Hashable, ask: Callable[[], Awaitable[T]]) -> T:
        """The cached answer for `key`, else one shared call of `ask` for every concurrent
        caller; only answers are cached, never AuthUnavailable."""
        found, value = self._cache.get(key)
        if found:
            cached: T = value
            return cached
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask_and_store(key, ask))
            # Retrieve the outcome even when every waiter was cancelled, so a failure is not
            # reported as "never retrieved".
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._in_flight[key] = task
        # A cancelled caller must not cancel the look-up the others are waiting for.
        answer: T = await asyncio.shield(task)
        return answer

    async def _ask_and_store(self, key: Hashable, ask: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await ask()
            self._cache.put(key, value)
            return value
        finally:
            if self._in_flight.get(key) is asyncio.current_task():
                del self._in_flight[key]

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop that will use it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": "deploys-registry"},
            )
        return self._session

    async def _post(
        self, method: str, payload: dict[str, Any], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """POST to the API; the status and JSON object of the reply, or AuthUnavailable."""
        headers = {"Authorization": authorization} if authorization else {}
        try:
            async with self._client().post(
                f"{self._base_url}/{method}",
                json=payload,
                headers=headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                if status >= 500 or status == 429 or 300 <= status < 400:
                    log.warning("deploys_api_unavailable", method=method, status=status)
                    raise AuthUnavailable(f"Deploys API {method} answered {status}")
                raw = await _read_bounded(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("deploys_api_unavailable", method=method, error=type(exc).__name__)
            raise AuthUnavailable(f"Deploys API {method}: {type(exc).__name__}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) and status in (401, 403):
            body = {}  # the status alone says it: invalid credentials, or denied
        if not isinstance(body, dict):
            log.warning("deploys_api_unexpected_reply", method=method, status=status)
            raise AuthUnavailable(f"Deploys API {method} answered {status} without a JSON object")
        return status, body


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise AuthUnavailable("Deploys API reply is too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _credentials_key(authorization: str | None) -> bytes | None:
    """What the cache keeps of credentials: a digest, never the value."""
    if not authorization:
        return None
    return hashlib.sha256(authorization.encode()).digest()
