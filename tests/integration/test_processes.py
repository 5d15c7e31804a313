"""The console commands: bad configuration stops a service with one line; `registry-local` runs
the whole system and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

SERVICE_MODULES = ["registry_distribution", "registry_management", "registry_jobs"]
BASE_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}


async def _run(module: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env={**BASE_ENV, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize("module", SERVICE_MODULES)
@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DB_URL": "nonsense", "STORAGE_PATH": "/tmp/x"}, "DB_URL"),
        ({"DB_URL": "postgres://u@127.0.0.1/db", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"STORAGE_PATH": "/tmp/x"}, "DB_URL"),
        ({"DB_URL": "postgres://u@127.0.0.1/db"}, "STORAGE_PATH"),
        ({"DB_URL": "postgres://u@127.0.0.1/db", "STORAGE_PATH": "/tmp/x", "PORT": "x"}, "PORT"),
    ],
)
async def test_bad_configuration_exits_with_one_line(
    module: str, env: dict[str, str], variable: str
) -> None:
    code, stderr = await _run(module, env)
    assert code != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert variable in lines[0]


async def test_jobs_refuse_to_listen_publicly_without_an_internal_secret() -> None:
    env = {"DB_URL": "postgres://u@127.0.0.1/db", "STORAGE_PATH": "/tmp/x", "HOST": "0.0.0.0"}
    code, stderr = await _run("registry_jobs", env)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "INTERNAL_SECRET" in lines[0]


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout: float) -> str:
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"output ended before {marker!r}: {''.join(seen)}")
            seen.append(line)
            if marker in line:
                return "".join(seen)


@pytest.fixture
def local_ports(unused_tcp_port_factory: Any) -> dict[str, str]:
    return {
        f"{service}_{kind}": str(unused_tcp_port_factory())
        for service in ("DISTRIBUTION", "MANAGEMENT", "JOBS")
        for kind in ("PORT", "METRICS_PORT")
    }


async def test_registry_local_with_embedded_postgres_serves_and_stops_on_sigterm(
    tmp_path: Path, local_ports: dict[str, str]
) -> None:
    await _check_local_run(tmp_path, {**local_ports})


async def test_registry_local_with_db_url_serves_and_stops_on_sigterm(
    tmp_path: Path, local_ports: dict[str, str], db_url: str
) -> None:
    await _check_local_run(tmp_path, {**local_ports, "DB_URL": db_url})


async def _check_local_run(tmp_path: Path, extra_env: dict[str, str]) -> None:
    """Start `registry-local`, check every service answers, stop it with SIGTERM."""
    local_ports = {key: value for key, value in extra_env.items() if key.endswith("PORT")}
    env = {**BASE_ENV, **extra_env, "DATA_DIR": str(tmp_path / "data"), "WEB_CONCURRENCY": "2"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "registry_tools.local",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        banner = await _read_until(process.stdout, "Stop with Ctrl-C", timeout=90)
        assert "Local user: admin / " in banner
        async with aiohttp.ClientSession() as session:
            for service in ("DISTRIBUTION", "MANAGEMENT", "JOBS"):
                base = f"http://127.0.0.1:{local_ports[f'{service}_PORT']}"
                assert base in banner
                async with session.get(f"{base}/healthz") as response:
                    assert response.status == 200
                async with session.get(f"{base}/readyz") as response:
                    assert response.status == 200
                metrics_port = local_ports[f"{service}_METRICS_PORT"]
                async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                    assert response.status == 200
                    assert "registry_http_request_duration_seconds" in await response.text()
            distribution = f"http://127.0.0.1:{local_ports['DISTRIBUTION_PORT']}"
            async with session.get(f"{distribution}/v2/") as response:
                assert response.status == 401
        assert (tmp_path / "data" / "token-secret").stat().st_mode & 0o777 == 0o600
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=60)
    assert code == 0
