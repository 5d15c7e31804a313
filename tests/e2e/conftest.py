"""End-to-end fixtures: the distribution service as a real process, and real clients.

Every test here talks HTTP to `python -m registry_distribution` started on loopback with static
users, so clients go through the `/v2/` challenge, `/token` and Bearer tokens as they would
against production. skopeo comes from Debian (`.ci/run` installs it): without it these tests
skip locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.processes import (
    Credentials,
    DistributionLauncher,
    ServerProcess,
    auth_env,
)

# Every e2e test runs once per mode listed here.
AUTH_MODES = ["static"]
PROJECT = "proj"
OWNER = Credentials("e2e-owner", "owner-password-1", PROJECT)
OUTSIDER = Credentials("e2e-outsider", "outsider-password-1", "elsewhere")
SKOPEO_TIMEOUT = 60.0


@pytest.fixture(params=AUTH_MODES)
def auth_mode(request: pytest.FixtureRequest) -> str:
    """The AUTH_MODE the service runs with."""
    mode: str = request.param
    return mode


@pytest.fixture
def registry_env(db_url: str, process_storage: dict[str, str], auth_mode: str) -> dict[str, str]:
    """Settings of a distribution process for this test: its database, storage and users."""
    return {
        "DB_URL": db_url,
        **process_storage,
        **auth_env(auth_mode, OWNER, OUTSIDER),
        "WEB_CONCURRENCY": "2",
    }


@dataclass
class E2eRegistry:
    """A running registry and the credentials a client should use with it."""

    process: ServerProcess
    credentials: Credentials | None

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`, as image references name the registry."""
        return f"127.0.0.1:{self.process.port}"

    def docker(self, reference: str) -> str:
        """A skopeo `docker://` reference to `reference` (`name:tag` or `name@digest`)."""
        return f"docker://{self.host}/{reference}"


@pytest.fixture
async def e2e_registry(
    distribution_launcher: DistributionLauncher, registry_env: dict[str, str], auth_mode: str
) -> E2eRegistry:
    """One distribution process (two workers) for this test."""
    process = await distribution_launcher.start(registry_env)
    return E2eRegistry(process, OWNER if auth_mode != "none" else None)


@dataclass
class SkopeoResult:
    code: int
    stdout: bytes
    stderr: str


class Skopeo:
    """Runs the skopeo binary with a policy and auth file of this test only."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        workdir.mkdir(parents=True, exist_ok=True)
        self.policy = workdir / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "XDG_RUNTIME_DIR": str(workdir),
            # Never read a developer's stored registry logins.
            "REGISTRY_AUTH_FILE": str(workdir / "auth.json"),
        }

    async def run(self, *args: str) -> SkopeoResult:
        """Run `skopeo <args>`; the exit code and output, whatever they are."""
        process = await asyncio.create_subprocess_exec(
            self.binary,
            "--policy",
            str(self.policy),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), SKOPEO_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return SkopeoResult(process.returncode, stdout, stderr.decode(errors="replace"))

    async def check(self, *args: str) -> bytes:
        """Run `skopeo <args>`, fail the test unless it succeeds; its standard output."""
        result = await self.run(*args)
        assert result.code == 0, f"skopeo {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    """skopeo, or a skip (locally) / a failure (CI=true) when it is not installed."""
    binary = shutil.which("skopeo")
    if binary is None:
        message = "skopeo is not installed (apt-get install skopeo; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Skopeo(binary, tmp_path / "skopeo")
