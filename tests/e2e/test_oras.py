"""The `oras` Python client against the real service: artifacts that name a subject are found
through the referrers API (OCI 1.1)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import oras.oci
import pytest
import requests
from oras.client import OrasClient

from tests.e2e.conftest import E2eRegistry
from tests.fixtures.distribution import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, make_image, sha256

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("process_storage", ["filesystem"], indirect=True),
]

REPOSITORY = "proj/app"
SBOM_CONFIG_TYPE = "application/vnd.e2e.sbom.config.v1+json"
SIGNATURE_TYPE = "application/vnd.e2e.signature.v1"
EMPTY_CONFIG = {
    "mediaType": OCI_EMPTY,
    "digest": sha256(b"{}"),
    "size": 2,
}


@dataclass
class Pushed:
    subject: str
    sbom: str
    signature: str
    sbom_files: list[str]


def _client(registry: E2eRegistry, *, push: bool = False) -> OrasClient:
    """An oras client of `registry` that authenticates through the token flow."""
    client = OrasClient(hostname=registry.host, insecure=True, auth_backend="token")
    if registry.credentials is None:
        return client
    # No login file: oras answers the service's challenge with these, through /token.
    client.auth.set_basic_auth(registry.credentials.user, registry.credentials.password)
    if not push:
        return client
    # oras-py keeps the first token it gets and, on a 401 `insufficient_scope`, retries with
    # that same token. Its push starts with a blob HEAD, whose challenge asks for `pull` only,
    # so it would never get to push. Opening (and cancelling) an upload first makes its first
    # challenge ask for `pull,push`, and the token it keeps then serves the whole push.
    started = client.do_request(f"http://{registry.host}/v2/{REPOSITORY}/blobs/uploads/", "POST")
    assert started.status_code == 202, started.text
    cancelled = client.do_request(f"http://{registry.host}{started.headers['Location']}", "DELETE")
    assert cancelled.status_code == 204, cancelled.text
    return client


def _put_manifest(
    client: OrasClient, registry: E2eRegistry, reference: str, body: bytes
) -> requests.Response:
    """PUT exact manifest bytes through oras' authenticated request path (its own
    upload_manifest re-serializes the JSON, which would change the digest)."""
    response: requests.Response = client.do_request(
        f"http://{registry.host}/v2/{REPOSITORY}/manifests/{reference}",
        "PUT",
        data=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return response


def _push_image_and_artifacts(registry: E2eRegistry, workdir: Path) -> Pushed:
    client = _client(registry, push=True)
    container = client.get_container(f"{registry.host}/{REPOSITORY}:v1")

    # The subject: a plain image, its blobs uploaded with oras' blob calls.
    image = make_image("oras-subject")
    for digest, data in image.blobs.items():
        path = workdir / digest.replace(":", "-")
        path.write_bytes(data)
        uploaded = client.upload_blob(str(path), container, {"digest": digest, "size": len(data)})
        assert uploaded.status_code in (200, 201), uploaded.text
    _put_manifest(client, registry, "v1", image.manifest)
    subject = oras.oci.Subject(
        mediaType=OCI_MANIFEST, digest=image.digest, size=len(image.manifest)
    )

    # An artifact the usual oras way: files as layers, its type given by the config media type.
    sbom = workdir / "sbom.spdx.json"
    sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "oras-subject"}))
    sbom_config = workdir / "sbom-config.json"
    sbom_config.write_text("{}")
    pushed = client.push(
        target=f"{registry.host}/{REPOSITORY}:sbom",
        files=[f"{sbom}:application/spdx+json"],
        manifest_config=f"{sbom_config}:{SBOM_CONFIG_TYPE}",
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers.get("OCI-Subject") == image.digest
    sbom_digest = pushed.headers["Docker-Content-Digest"]

    # An OCI 1.1 artifact: explicit artifactType, empty config, pushed by digest (untagged),
    # as `oras attach` does; oras-py's push() cannot set artifactType, so the manifest is
    # written here and sent with oras' blob and request calls.
    signature = workdir / "signature"
    signature.write_bytes(b"signed: " + image.digest.encode())
    signature_layer = oras.oci.NewLayer(str(signature), media_type=SIGNATURE_TYPE)
    empty = workdir / "empty.json"
    empty.write_bytes(b"{}")
    for path, descriptor in ((signature, signature_layer), (empty, EMPTY_CONFIG)):
        uploaded = client.upload_blob(str(path), container, descriptor)
        assert uploaded.status_code in (200, 201), uploaded.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE_TYPE,
            "config": EMPTY_CONFIG,
            "layers": [signature_layer],
            "subject": {
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": len(image.manifest),
            },
        }
    ).encode()
    attached = _put_manifest(client, registry, sha256(manifest), manifest)
    assert attached.headers.get("OCI-Subject") == image.digest

    # And oras pulls its artifact back.
    files = client.pull(target=f"{registry.host}/{REPOSITORY}:sbom", outdir=str(workdir / "pulled"))
    return Pushed(image.digest, sbom_digest, sha256(manifest), files)


def _referrers(
    registry: E2eRegistry, subject: str, artifact_type: str | None = None
) -> requests.Response:
    client = _client(registry)
    url = f"http://{registry.host}/v2/{REPOSITORY}/referrers/{subject}"
    if artifact_type:
        url += f"?artifactType={artifact_type}"
    response: requests.Response = client.do_request(url, "GET")
    return response


async def test_oras_artifacts_with_a_subject_are_listed_by_the_referrers_api(
    e2e_registry: E2eRegistry, tmp_path: Path
) -> None:
    pushed = await asyncio.to_thread(_push_image_and_artifacts, e2e_registry, tmp_path)
    assert [Path(file).name for file in pushed.sbom_files] == ["sbom.spdx.json"]
    assert json.loads(Path(pushed.sbom_files[0]).read_text())["spdxVersion"] == "SPDX-2.3"

    response = await asyncio.to_thread(_referrers, e2e_registry, pushed.subject)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(OCI_INDEX)
    index = response.json()
    assert index["mediaType"] == OCI_INDEX
    listed = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(listed) == {pushed.sbom, pushed.signature}
    assert listed[pushed.sbom]["artifactType"] == SBOM_CONFIG_TYPE
    assert listed[pushed.signature]["artifactType"] == SIGNATURE_TYPE
    assert all(entry["mediaType"] == OCI_MANIFEST for entry in listed.values())

    filtered = await asyncio.to_thread(_referrers, e2e_registry, pushed.subject, SIGNATURE_TYPE)
    assert filtered.status_code == 200, filtered.text
    assert [entry["digest"] for entry in filtered.json()["manifests"]] == [pushed.signature]
    assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"

    nothing = await asyncio.to_thread(_referrers, e2e_registry, sha256(b"no such manifest"))
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["manifests"] == []
