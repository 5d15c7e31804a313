"""The CDN: blob GETs of external clients redirect to a signed URL; the origin serves only
signed requests, and tells unsigned ones nothing."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from registry_common import metrics
from registry_common.settings import ConfigError
from registry_distribution.app import create_app
from tests.fixtures.distribution import RegistryClient, sha256
from tests.fixtures.services import ServiceClient

NAME = "proj/app"
DATA = b"layer bytes " * 1000
CDN = "cdn.example.test"
KEY = base64.urlsafe_b64encode(bytes(range(16))).decode()
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(16, 32))).decode()
# Tests connect from 127.0.0.1: as a trusted proxy, it says who the client is.
TRUSTED = {"trusted_proxies": "127.0.0.1/32"}
EXTERNAL = {"X-Forwarded-For": "93.184.216.34"}  # a public address


def cdn_settings(**extra: Any) -> dict[str, Any]:
    return {
        "cdn_domain": CDN,
        "cdn_signing_key_name": "key-1",
        "cdn_signing_key": KEY,
        **TRUSTED,
        **extra,
    }


@pytest.fixture
async def cdn_client(
    aiohttp_client: Any, make_settings: Any, storage_overrides: dict[str, Any]
) -> ServiceClient:
    client: ServiceClient = await aiohttp_client(
        create_app(make_settings(**cdn_settings(), **storage_overrides))
    )
    return client


async def redirect_of(client: ServiceClient, digest: str) -> str:
    response = await client.get(
        f"/v2/{NAME}/blobs/{digest}", headers=EXTERNAL, allow_redirects=False
    )
    assert response.status == 307
    assert response.headers["Cache-Control"] == "no-store"
    location: str = response.headers["Location"]
    return location


def origin_path(location: str) -> str:
    """The request the CDN's load balancer sends to the origin's /_cdn/ route."""
    parts = urlsplit(location)
    return f"/_cdn{parts.path}?{parts.query}"


async def test_external_clients_are_redirected_to_a_signed_cdn_url(
    cdn_client: ServiceClient,
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    downloads = metrics.DOWNLOAD_COUNT.labels("proj")
    before = downloads._value.get()
    location = await redirect_of(cdn_client, digest)
    assert location.startswith(f"https://{CDN}/{NAME}/blobs/{digest}?Expires=")
    assert "&KeyName=key-1&Signature=" in location
    assert downloads._value.get() == before + 1  # billed at the redirect


async def test_the_signed_url_gets_the_bytes_under_cdn_and_under_its_host_name(
    cdn_client: ServiceClient,
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    location = await redirect_of(cdn_client, digest)
    origin = await cdn_client.get(origin_path(location))
    assert origin.status == 200
    assert await origin.read() == DATA
    assert origin.headers["Cache-Control"].startswith("public")
    parts = urlsplit(location)
    by_host = await cdn_client.get(f"{parts.path}?{parts.query}", headers={"Host": CDN})
    assert by_host.status == 200
    assert await by_host.read() == DATA
    elsewhere = await cdn_client.get(f"{parts.path}?{parts.query}")
    assert elsewhere.status == 404


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda path: path.split("?")[0], id="unsigned"),
        pytest.param(lambda path: path.replace("Signature=", "Signature=x"), id="tampered"),
        pytest.param(lambda path: path.replace("Expires=", "Expires=1"), id="other-expiry"),
        pytest.param(lambda path: path.replace("KeyName=key-1", "KeyName=key-2"), id="key-name"),
        pytest.param(lambda path: path.replace(NAME, "proj/other"), id="wrong-path"),
    ],
)
async def test_anything_but_a_valid_signature_is_403_without_bytes(
    cdn_client: ServiceClient, tamper: Any
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    await RegistryClient(cdn_client).push_blob("proj/other", DATA)
    response = await cdn_client.get(tamper(origin_path(await redirect_of(cdn_client, digest))))
    assert response.status == 403
    body = await response.read()
    assert DATA[:100] not in body
    assert (await response.json())["errors"][0]["code"] == "DENIED"


async def test_unsigned_requests_cannot_tell_whether_a_blob_exists(
    cdn_client: ServiceClient,
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    present = await cdn_client.head(f"/_cdn/{NAME}/blobs/{digest}")
    absent = await cdn_client.head(f"/_cdn/{NAME}/blobs/{sha256(b'never pushed')}")
    assert present.status == absent.status == 403
    assert present.headers.get("Content-Length") == absent.headers.get("Content-Length")


async def test_expired_and_wrong_key_signatures_are_refused(
    aiohttp_client: Any, make_settings: Any
) -> None:
    expired = await aiohttp_client(create_app(make_settings(**cdn_settings(cdn_url_ttl="0s"))))
    digest = await RegistryClient(expired).push_blob(NAME, DATA)
    assert (await expired.get(origin_path(await redirect_of(expired, digest)))).status == 403

    other_key = await aiohttp_client(
        create_app(make_settings(**cdn_settings(cdn_signing_key=OTHER_KEY)))
    )
    signed_elsewhere = origin_path(await redirect_of(other_key, digest))
    assert (await expired.get(signed_elsewhere)).status == 403


async def test_urls_signed_with_the_previous_key_work_after_a_rotation(
    aiohttp_client: Any, make_settings: Any
) -> None:
    before = await aiohttp_client(create_app(make_settings(**cdn_settings())))
    digest = await RegistryClient(before).push_blob(NAME, DATA)
    old_url = origin_path(await redirect_of(before, digest))
    after = await aiohttp_client(
        create_app(
            make_settings(
                **cdn_settings(
                    cdn_signing_key_name="key-2",
                    cdn_signing_key=OTHER_KEY,
                    cdn_previous_signing_key_name="key-1",
                    cdn_previous_signing_key=KEY,
                )
            )
        )
    )
    assert (await after.get(old_url)).status == 200
    assert "KeyName=key-2" in await redirect_of(after, digest)


async def test_origin_reads_do_not_keep_a_blob_alive(
    cdn_client: ServiceClient, db: asyncpg.Connection
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    location = await redirect_of(cdn_client, digest)
    await db.execute("UPDATE blobs SET accessed_at = now() - interval '10 days'")
    assert (await cdn_client.get(origin_path(location))).status == 200
    idle = await db.fetchval("SELECT now() - accessed_at > interval '9 days' FROM blobs")
    assert idle is True


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.7", "127.0.0.1", "169.254.1.1"])
async def test_internal_clients_are_served_directly(
    cdn_client: ServiceClient, address: str
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    response = await cdn_client.get(
        f"/v2/{NAME}/blobs/{digest}", headers={"X-Forwarded-For": address}, allow_redirects=False
    )
    assert response.status == 200
    assert await response.read() == DATA


async def test_a_spoofed_x_real_ip_does_not_make_a_client_internal(
    cdn_client: ServiceClient,
) -> None:
    digest = await RegistryClient(cdn_client).push_blob(NAME, DATA)
    response = await cdn_client.get(
        f"/v2/{NAME}/blobs/{digest}",
        headers={"X-Real-Ip": "10.0.0.1", **EXTERNAL},
        allow_redirects=False,
    )
    assert response.status == 307


async def test_without_cdn_domain_there_is_no_origin(registry: RegistryClient) -> None:
    digest = await registry.push_blob(NAME, DATA)
    response = await registry.client.get(f"/_cdn/{NAME}/blobs/{digest}")
    assert response.status == 404
    assert DATA[:100] not in await response.read()


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"cdn_signing_key_name": None}, "CDN_SIGNING_KEY_NAME"),
        ({"cdn_signing_key": None}, "CDN_SIGNING_KEY"),
        ({"cdn_signing_key": "c2hvcnQ="}, "CDN_SIGNING_KEY"),
        ({"cdn_signing_key_name": "Bad_Name"}, "CDN_SIGNING_KEY_NAME"),
        ({"cdn_previous_signing_key_name": "old"}, "CDN_PREVIOUS_SIGNING_KEY"),
    ],
)
def test_cdn_domain_needs_a_valid_signing_key(
    make_settings: Any, overrides: dict[str, Any], variable: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app(make_settings(**cdn_settings(**overrides)))
    assert refused.value.variable == variable
