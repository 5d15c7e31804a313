"""A small Deploys API for tests: `POST /me.authorized` and `POST /me.get`, as the README says.

Users authenticate with Basic `user:password` or a Deploys API bearer token and hold
permissions per project; projects may grant `registry.pull` to `allUsers` and have a billing
account that may be inactive. Invalid credentials answer like the real API's RPC layer
(`{"ok": false, "error": {"message": "api: unauthorized"}}`), or HTTP 401 when
`unauthorized_status` says so. Switches make it answer 500 or drop connections, and `gate`
holds every answer until the test releases it. Calls are counted per endpoint, and the last
`Authorization` header each endpoint saw is kept so tests can check pass-through.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

UNAUTHORIZED = {"ok": False, "error": {"message": "api: unauthorized"}}
PROJECT_NOT_FOUND = {"ok": False, "error": {"message": "api: project not found"}}
ALL_PERMISSIONS = frozenset({"registry.pull", "registry.push", "registry.list", "registry.get"})


@dataclass
class FakeProject:
    name: str
    id: str
    billing_active: bool = True
    public_pull: bool = False


@dataclass
class FakeUser:
    email: str
    # project -> permissions
    permissions: dict[str, frozenset[str]] = field(default_factory=dict)


class FakeDeploysApi:
    """The fake's state and its aiohttp application."""

    def __init__(self) -> None:
        self.projects: dict[str, FakeProject] = {}
        self._by_basic: dict[tuple[str, str], FakeUser] = {}
        self._by_token: dict[str, FakeUser] = {}
        self.calls: Counter[str] = Counter()
        self.last_authorization: dict[str, str | None] = {}
        self.answer_500 = False
        self.close_connections = False
        self.unauthorized_status = 200
        self.gate: asyncio.Event | None = None
        # Set on every call, so a test can wait for a call to arrive (cleared by the test).
        self.call_arrived = asyncio.Event()
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post("/me.authorized", self._authorized)
        self.app.router.add_post("/me.get", self._get)

    def add_project(
        self,
        name: str,
        *,
        project_id: str | None = None,
        billing_active: bool = True,
        public_pull: bool = False,
    ) -> FakeProject:
        project = FakeProject(name, project_id or f"id-{name}", billing_active, public_pull)
        self.projects[name] = project
        return project

    def add_user(
        self,
        email: str,
        *,
        password: str | None = None,
        token: str | None = None,
        permissions: dict[str, set[str] | frozenset[str]] | None = None,
    ) -> FakeUser:
        user = FakeUser(email, {p: frozenset(v) for p, v in (permissions or {}).items()})
        if password is not None:
            self._by_basic[(email, password)] = user
        if token is not None:
            self._by_token[token] = user
        return user

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def _user(self, authorization: str | None) -> FakeUser | None:
        if authorization is None:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return self._by_token.get(value)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return self._by_basic.get((user, password))
        return None

    async def _enter(self, request: web.Request, endpoint: str) -> web.Response | None:
        """Count the call, apply the switches; a Response when the call ends here."""
        self.calls[endpoint] += 1
        self.last_authorization[endpoint] = request.headers.get("Authorization")
        self.call_arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.close_connections:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.answer_500:
            return web.json_response({"ok": False, "error": {"message": "boom"}}, status=500)
        return None

    def _unauthorized(self) -> web.Response:
        return web.json_response(UNAUTHORIZED, status=self.unauthorized_status)

    async def _authorized(self, request: web.Request) -> web.Response:
        early = await self._enter(request, "me.authorized")
        if early is not None:
            return early
        body: dict[str, Any] = await request.json()
        authorization = request.headers.get("Authorization")
        user = self._user(authorization)
        if authorization is not None and user is None:
            return self._unauthorized()
        project = self.projects.get(body["project"])
        permissions = set(body["permissions"])
        if project is None:
            return web.json_response(UNAUTHORIZED if user is None else PROJECT_NOT_FOUND)
        if user is None:
            granted: frozenset[str] = (
                frozenset({"registry.pull"}) if project.public_pull else frozenset()
            )
        else:
            granted = user.permissions.get(project.name, frozenset())
            if project.public_pull:
                granted |= {"registry.pull"}
        result = {
            "authorized": permissions <= granted,
            "project": {
                "id": project.id,
                "project": project.name,
                "billingAccount": {"active": project.billing_active},
            },
        }
        return web.json_response({"ok": True, "result": result})

    async def _get(self, request: web.Request) -> web.Response:
        early = await self._enter(request, "me.get")
        if early is not None:
            return early
        user = self._user(request.headers.get("Authorization"))
        if user is None:
            return self._unauthorized()
        return web.json_response({"ok": True, "result": {"email": user.email}})
