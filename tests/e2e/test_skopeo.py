"""skopeo (Debian's, 1.9) against the real service: push, cross-repository copy, inspect, pull,
delete; and refusals for callers without access."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import OUTSIDER, E2eRegistry, Skopeo
from tests.e2e.image_layout import (
    ImageLayout,
    read_layout,
    referenced_blobs,
    write_multi_arch_layout,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("process_storage", ["filesystem"], indirect=True),
]


def _credentials(registry: E2eRegistry, *flags: str) -> list[str]:
    """`--<flag> user:password` for each flag, or nothing when the registry has no auth."""
    if registry.credentials is None:
        return []
    return [arg for flag in flags for arg in (f"--{flag}", registry.credentials.colon_pair)]


async def _push(skopeo: Skopeo, registry: E2eRegistry, layout: ImageLayout, name: str) -> None:
    await skopeo.check(
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *_credentials(registry, "dest-creds"),
        layout.oci_reference,
        registry.docker(f"{name}:{layout.tag}"),
    )


async def test_skopeo_copies_multi_arch_image_in_across_and_out_with_the_same_digests(
    skopeo: Skopeo, e2e_registry: E2eRegistry, tmp_path: Path
) -> None:
    registry = e2e_registry
    source = write_multi_arch_layout(tmp_path / "source", tag="v1")
    await _push(skopeo, registry, source, "proj/app")

    # Registry to registry: the blobs are mounted into the second repository.
    await skopeo.check(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        *_credentials(registry, "src-creds", "dest-creds"),
        registry.docker("proj/app:v1"),
        registry.docker("proj/other:v1"),
    )

    read_only = ["--tls-verify=false", *_credentials(registry, "creds")]
    raw_index = await skopeo.check("inspect", "--raw", *read_only, registry.docker("proj/other:v1"))
    assert raw_index == source.blob(source.index_digest)
    for digest in source.manifest_digests:
        raw = await skopeo.check(
            "inspect", "--raw", *read_only, registry.docker(f"proj/other@{digest}")
        )
        assert raw == source.blob(digest)

    arm64 = json.loads(
        await skopeo.check(
            "--override-arch", "arm64", "--override-variant", "v8",
            "inspect", *read_only, registry.docker("proj/other:v1"),
        )
    )  # fmt: skip
    arm64_manifest = json.loads(source.blob(source.manifest_digests[1]))
    # skopeo reports the digest of what the tag names (the index) and the chosen platform's
    # config and layers.
    assert arm64["Digest"] == source.index_digest
    assert arm64["Architecture"] == "arm64"
    assert arm64["Layers"] == [layer["digest"] for layer in arm64_manifest["layers"]]

    await skopeo.check(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        *_credentials(registry, "src-creds"),
        registry.docker("proj/other:v1"),
        f"oci:{tmp_path / 'pulled'}:v1",
    )
    pulled = read_layout(tmp_path / "pulled", "v1")
    assert pulled.index_digest == source.index_digest
    assert pulled.manifest_digests == source.manifest_digests
    for digest in referenced_blobs(source):
        assert pulled.blob(digest) == source.blob(digest), digest

    await skopeo.check("delete", *read_only, registry.docker("proj/app:v1"))
    gone = await skopeo.run("inspect", "--raw", *read_only, registry.docker("proj/app:v1"))
    assert gone.code != 0
    assert "manifest unknown" in gone.stderr.lower(), gone.stderr
    # The copy in the other repository is untouched.
    assert await skopeo.check("inspect", "--raw", *read_only, registry.docker("proj/other:v1")) == (
        source.blob(source.index_digest)
    )


@pytest.mark.parametrize("auth_mode", ["static"], indirect=True)
async def test_skopeo_without_access_cannot_pull_or_push_a_private_project(
    skopeo: Skopeo, e2e_registry: E2eRegistry, tmp_path: Path
) -> None:
    registry = e2e_registry
    source = write_multi_arch_layout(tmp_path / "source", tag="v1", layer_size=1024)
    await _push(skopeo, registry, source, "proj/app")
    image = registry.docker("proj/app:v1")

    anonymous = await skopeo.run("inspect", "--raw", "--tls-verify=false", "--no-creds", image)
    assert anonymous.code != 0
    assert "unauthorized" in anonymous.stderr.lower(), anonymous.stderr

    wrong_password = await skopeo.run(
        "inspect", "--raw", "--tls-verify=false", "--creds", "e2e-owner:not-the-password", image
    )
    assert wrong_password.code != 0
    assert "unauthorized" in wrong_password.stderr.lower(), wrong_password.stderr

    # Valid credentials for another project read nothing here and write nothing here.
    outsider = ["--creds", OUTSIDER.colon_pair]
    other_project = await skopeo.run("inspect", "--raw", "--tls-verify=false", *outsider, image)
    assert other_project.code != 0
    outsider_push = await skopeo.run(
        "copy", "--all", "--dest-tls-verify=false", "--dest-creds", OUTSIDER.colon_pair,
        source.oci_reference, registry.docker("proj/intruder:v1"),
    )  # fmt: skip
    assert outsider_push.code != 0
    assert b"manifests" in await skopeo.check(
        "inspect", "--raw", "--tls-verify=false", *_credentials(registry, "creds"), image
    )
