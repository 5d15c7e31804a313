"""A small Cloudflare D1 HTTP API for tests: `POST /client/v4/accounts/<account>/d1/database/
<database>/query`, backed by a real SQLite database holding the Worker-era tables.

Requests and replies have the shapes of Cloudflare's API: the body is `{"sql": ..., "params":
[strings]}` with `Authorization: Bearer <token>`; a success is `{"result": [{"results": [rows
as objects], "success": true, "meta": {...}}], "errors": [], "messages": [], "success": true}`;
a failure is `{"result": null, "errors": [{"code": ..., "message": ...}], "messages": [],
"success": false}` with a 4xx status. The SQL runs for real, so a client's keyset pagination,
parameter numbering and ordering are tested against SQLite as D1 runs them.

`fail_next` makes the next requests answer a status (503 for retries); every query is kept in
`queries`.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

API_PREFIX = "/client/v4"

# The Worker's tables, as its D1 database had them (created_at filled by SQLite).
WORKER_SCHEMA = """
CREATE TABLE repositories (
    name       text    NOT NULL,
    namespace  text    NOT NULL,
    created_at integer NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (name)
);
CREATE TABLE manifests (
    repository text    NOT NULL,
    digest     text    NOT NULL,
    created_at integer NOT NULL DEFAULT current_timestamp,
    updated_at integer NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (repository, digest)
);
CREATE TABLE tags (
    repository text    NOT NULL,
    tag        text    NOT NULL,
    digest     text    NOT NULL,
    created_at integer NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (repository, tag)
);
CREATE TABLE blobs (
    repository text    NOT NULL,
    digest     text    NOT NULL,
    size       integer NOT NULL,
    created_at integer NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (repository, digest)
);
"""


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"result": None, "errors": [{"code": code, "message": message}], "messages": []}
    return web.json_response({**body, "success": False}, status=status)


@dataclass
class D1Query:
    """One query the fake answered."""

    sql: str
    params: list[Any]


class FakeD1Api:
    """The fake's state (one account, one database, one token) and its aiohttp application."""

    def __init__(self, account_id: str, database_id: str, token: str) -> None:
        self.account_id = account_id
        self.database_id = database_id
        self.token = token
        self.database = sqlite3.connect(":memory:")
        self.database.row_factory = sqlite3.Row
        self.database.executescript(WORKER_SCHEMA)
        self.queries: list[D1Query] = []
        self._failures: list[int] = []
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post(
            f"{API_PREFIX}/accounts/{{account_id}}/d1/database/{{database_id}}/query", self._query
        )

    @property
    def api_base(self) -> str:
        """What CLOUDFLARE_API_BASE is set to for this fake."""
        return f"{self.url}{API_PREFIX}"

    def insert(self, table: str, **values: Any) -> None:
        """Add a row as the Worker would have (columns left out take SQLite's defaults)."""
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.database.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values())
        )
        self.database.commit()

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (before looking at them)."""
        self._failures += [status] * times

    async def _query(self, request: web.Request) -> web.Response:
        if self._failures:
            status = self._failures.pop(0)
            reply = _error(status, 7500, f"injected failure {status}")
            if status == 429:
                reply.headers["Retry-After"] = "0"
            return reply
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(403, 10000, "Authentication error")
        if (
            request.match_info["account_id"] != self.account_id
            or request.match_info["database_id"] != self.database_id
        ):
            return _error(404, 7404, "The database could not be found")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, 7400, "The request is malformed: body is not JSON")
        sql = body.get("sql") if isinstance(body, dict) else None
        params = body.get("params", []) if isinstance(body, dict) else None
        if not isinstance(sql, str) or not isinstance(params, list):
            return _error(400, 7400, "The request is malformed: sql and params are required")
        if not all(isinstance(param, str) for param in params):
            return _error(400, 7400, "The request is malformed: params must be strings")
        self.queries.append(D1Query(sql, params))
        started = time.perf_counter()
        try:
            cursor = self.database.execute(sql, params)
            rows = [dict(row) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            return _error(400, 7500, f"{exc}: SQLITE_ERROR")
        duration = (time.perf_counter() - started) * 1000
        meta = {
            "served_by": "fake-d1",
            "served_by_region": "APAC",
            "served_by_primary": True,
            "timings": {"sql_duration_ms": duration},
            "duration": duration,
            "changes": 0,
            "last_row_id": 0,
            "changed_db": False,
            "size_after": 0,
            "rows_read": len(rows),
            "rows_written": 0,
        }
        return web.json_response(
            {
                "result": [{"results": rows, "success": True, "meta": meta}],
                "errors": [],
                "messages": [],
                "success": True,
            }
        )
