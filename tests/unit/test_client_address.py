"""The client's address: the peer, or what trusted proxies appended to X-Forwarded-For."""

from __future__ import annotations

import ipaddress
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from registry_common.http import SETTINGS, client_address
from registry_common.settings import Settings, load_settings

GOOGLE_FRONT_ENDS = "35.191.0.0/16,130.211.0.0/22"
LOAD_BALANCER = "34.120.1.2"


def request(peer: str, settings: Settings, **headers: str) -> web.Request:
    app = web.Application()
    app[SETTINGS] = settings
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", "/v2/", headers=headers, app=app, transport=transport)


@pytest.fixture
def behind_google() -> Settings:
    return load_settings(trusted_proxies=f"{GOOGLE_FRONT_ENDS},{LOAD_BALANCER}")


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    settings = load_settings()
    spoofed = request(
        "8.8.8.8", settings, **{"X-Real-Ip": "10.0.0.1", "X-Forwarded-For": "10.0.0.2"}
    )
    assert client_address(spoofed) == ipaddress.ip_address("8.8.8.8")


def test_headers_from_an_untrusted_peer_are_ignored(behind_google: Settings) -> None:
    spoofed = request(
        "203.0.113.9", behind_google, **{"X-Real-Ip": "10.0.0.1", "X-Forwarded-For": "10.0.0.2"}
    )
    assert client_address(spoofed) == ipaddress.ip_address("203.0.113.9")


def test_behind_googles_load_balancer_the_client_is_left_of_its_entries(
    behind_google: Settings,
) -> None:
    # Google appends "<client>, <load balancer>"; the connection comes from a front end.
    forwarded = request(
        "35.191.7.8", behind_google, **{"X-Forwarded-For": f"203.0.113.9, {LOAD_BALANCER}"}
    )
    assert client_address(forwarded) == ipaddress.ip_address("203.0.113.9")


def test_what_a_client_wrote_into_x_forwarded_for_itself_is_not_believed(
    behind_google: Settings,
) -> None:
    forwarded = request(
        "35.191.7.8",
        behind_google,
        **{"X-Forwarded-For": f"10.0.0.1, 203.0.113.9, {LOAD_BALANCER}", "X-Real-Ip": "10.0.0.1"},
    )
    assert client_address(forwarded) == ipaddress.ip_address("203.0.113.9")


def test_garbage_in_x_forwarded_for_stops_the_walk(behind_google: Settings) -> None:
    forwarded = request(
        "35.191.7.8", behind_google, **{"X-Forwarded-For": f"not-an-ip, {LOAD_BALANCER}"}
    )
    assert client_address(forwarded) == ipaddress.ip_address(LOAD_BALANCER)
