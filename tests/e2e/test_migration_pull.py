"""After `registry-migrate-d1` and `registry-migrate-r2`, skopeo pulls every image of the old
registry from the running distribution service, byte for byte; running both again copies
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import E2eRegistry, Skopeo
from tests.e2e.image_layout import read_layout, referenced_blobs, write_multi_arch_layout
from tests.fakes.d1_api import FakeD1Api
from tests.fixtures.migration import (
    FakeR2Bucket,
    LegacyRegistry,
    d1_env,
    docker_image,
    run_command,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("process_storage", ["filesystem"], indirect=True),
]


async def test_skopeo_pulls_every_migrated_image_with_its_digests(
    skopeo: Skopeo,
    e2e_registry: E2eRegistry,
    registry_env: dict[str, str],
    d1_api: FakeD1Api,
    r2_bucket: FakeR2Bucket,
    tmp_path: Path,
) -> None:
    source = write_multi_arch_layout(tmp_path / "source", tag="v1", layer_size=64 * 1024)
    legacy = LegacyRegistry()
    legacy.push_layout("proj/app", source)
    # The same image in a second repository: its blobs are stored once and linked twice.
    legacy.push_layout("proj/mirror", source)
    base_layer = json.loads(source.blob(source.manifest_digests[0]))["layers"][0]["digest"]
    tools = docker_image("tools", [source.blob(base_layer), b"tools layer" * 500])
    legacy.push_image("proj/tools", tools, "latest")
    legacy.load_d1(d1_api)
    legacy.load_r2(r2_bucket)
    env = {
        "DB_URL": registry_env["DB_URL"],
        "STORAGE_PATH": registry_env["STORAGE_PATH"],
        **d1_env(d1_api),
        **r2_bucket.env(workers=3),
    }

    for command in ("registry-migrate-d1", "registry-migrate-r2"):
        result = await run_command(command, env)
        assert result.code == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        assert result.total("failed") == 0

    (tmp_path / "pulled").mkdir()
    credentials = ["--src-tls-verify=false"]
    if e2e_registry.credentials is not None:
        credentials += ["--src-creds", e2e_registry.credentials.colon_pair]
    for repository in ("proj/app", "proj/mirror"):
        pulled_path = tmp_path / "pulled" / repository.replace("/", "-")
        await skopeo.check(
            "copy",
            "--all",
            "--preserve-digests",
            *credentials,
            e2e_registry.docker(f"{repository}:v1"),
            f"oci:{pulled_path}:v1",
        )
        pulled = read_layout(pulled_path, "v1")
        assert pulled.index_digest == source.index_digest == legacy.tags[(repository, "v1")]
        assert pulled.manifest_digests == source.manifest_digests
        for digest in referenced_blobs(source):
            assert pulled.blob(digest) == source.blob(digest), digest

    tools_path = tmp_path / "pulled" / "tools"
    await skopeo.check(
        "copy", *credentials, e2e_registry.docker("proj/tools:latest"), f"dir:{tools_path}"
    )
    assert (tools_path / "manifest.json").read_bytes() == tools.manifest
    for digest, body in tools.blobs.items():
        assert (tools_path / digest.removeprefix("sha256:")).read_bytes() == body
    read_only = ["--tls-verify=false"]
    if e2e_registry.credentials is not None:
        read_only += ["--creds", e2e_registry.credentials.colon_pair]
    for (repository, digest), (body, _) in legacy.manifests.items():
        raw = await skopeo.check(
            "inspect", "--raw", *read_only, e2e_registry.docker(f"{repository}@{digest}")
        )
        assert raw == body, f"{repository}@{digest}"

    for command in ("registry-migrate-d1", "registry-migrate-r2"):
        again = await run_command(command, env)
        assert again.code == 0, f"{command}:\n{again.stdout}\n{again.stderr}"
        assert (again.total("copied"), again.total("failed")) == (0, 0), again.stdout
        if command == "registry-migrate-r2":
            assert again.total("linked") == 0, again.stdout
