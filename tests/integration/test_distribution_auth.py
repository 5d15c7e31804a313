"""Authentication of the distribution service over real HTTP: the `/v2/` challenge, `/token`,
registry tokens checked locally, Basic and Deploys API credentials on `/v2/<name>/...`, 401
versus 403, an unavailable Deploys API, and project isolation on every repository route.

Handlers behind the routes are other tests' business: here an allowed request is only
checked not to be refused (401, 403, 503).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp import web

from registry_common.auth.tokens import ISSUER
from registry_common.oci.names import RepositoryName
from registry_common.settings import ConfigError
from registry_distribution.access import Action, authorize
from registry_distribution.app import create_app
from tests.fakes.deploys_api import FakeDeploysApi
from tests.fixtures.auth import (
    ALICE,
    ALICE_API_TOKEN,
    ALPHA,
    BETA,
    BOB,
    CAROL,
    PUBLIC,
    STATIC_USERS,
    UNPAID,
    Account,
    bearer,
    fetch_token,
    parse_challenge,
)
from tests.fixtures.services import ServiceClient

REFUSED = (401, 403, 503)
DIGEST = "sha256:" + "ab" * 32
MANIFEST_HEADERS = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}


def access_of(token: str) -> list[dict[str, Any]]:
    """The `access` claim of a token (read, not verified: the registry verifies)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    access: list[dict[str, Any]] = claims["access"]
    return access


def origin(client: ServiceClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def error_code(response: Any) -> str:
    body = await response.json()
    code: str = body["errors"][0]["code"]
    return code


def challenge_of(response: Any) -> dict[str, str]:
    scheme, parameters = parse_challenge(response.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    return parameters


# --- the /v2/ challenge ---------------------------------------------------------------------


async def test_anonymous_ping_is_challenged_to_the_token_endpoint(
    auth_registry_client: ServiceClient,
) -> None:
    response = await auth_registry_client.get("/v2/")
    assert response.status == 401
    host = auth_registry_client.make_url("").host
    port = auth_registry_client.make_url("").port
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://{host}:{port}/token",service="{host}:{port}"'
    )
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert await error_code(response) == "UNAUTHORIZED"


async def test_challenge_names_public_url_when_set(aiohttp_client: Any, make_settings: Any) -> None:
    settings = make_settings(
        auth_mode="static", auth_users=STATIC_USERS, public_url="https://registry.example.com/"
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/v2/")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="https://registry.example.com/token",service="registry.example.com"'
    )


async def test_ping_answers_200_to_valid_credentials_and_tokens(
    auth_registry_client: ServiceClient,
) -> None:
    with_basic = await auth_registry_client.get("/v2/", headers={"Authorization": ALICE.basic})
    assert with_basic.status == 200
    assert with_basic.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    token = (await fetch_token(auth_registry_client, account=ALICE))["token"]
    assert (await auth_registry_client.get("/v2/", headers=bearer(token))).status == 200


async def test_ping_challenges_wrong_credentials(auth_registry_client: ServiceClient) -> None:
    wrong = ALICE.with_password("wrong").basic
    response = await auth_registry_client.get("/v2/", headers={"Authorization": wrong})
    assert response.status == 401
    assert "realm" in challenge_of(response)


async def test_ping_without_authentication_answers_200(registry_client: ServiceClient) -> None:
    response = await registry_client.get("/v2/")
    assert response.status == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# --- GET /token -----------------------------------------------------------------------------


async def test_token_grants_pull_and_push_to_a_pusher(auth_registry_client: ServiceClient) -> None:
    reply = await fetch_token(auth_registry_client, "repository:alpha/app:pull,push", account=ALICE)
    assert reply["token"] == reply["access_token"]
    assert reply["expires_in"] == 300
    issued_at = datetime.strptime(reply["issued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(issued_at - datetime.now(UTC)) < timedelta(seconds=10)
    assert access_of(reply["token"]) == [
        {"type": "repository", "name": "alpha/app", "actions": ["pull", "push"]}
    ]
    headers = bearer(reply["token"])
    pull = await auth_registry_client.get("/v2/alpha/app/tags/list", headers=headers)
    assert pull.status not in REFUSED
    push = await auth_registry_client.put(
        "/v2/alpha/app/manifests/latest", data=b"{}", headers={**headers, **MANIFEST_HEADERS}
    )
    assert push.status not in REFUSED


async def test_token_grants_only_what_the_deploys_api_allows(
    deploys_registry_client: ServiceClient,
) -> None:
    reply = await fetch_token(
        deploys_registry_client,
        "repository:alpha/app:pull,push",
        "repository:beta/app:pull",
        f"repository:{UNPAID}/app:pull",
        account=BOB,
    )
    assert access_of(reply["token"]) == [
        {"type": "repository", "name": "alpha/app", "actions": ["pull"]}
    ]


async def test_token_grants_nothing_in_another_project(auth_registry_client: ServiceClient) -> None:
    reply = await fetch_token(auth_registry_client, "repository:beta/app:pull,push", account=ALICE)
    assert access_of(reply["token"]) == []


async def test_several_scopes_merge_per_repository(auth_registry_client: ServiceClient) -> None:
    reply = await fetch_token(
        auth_registry_client,
        "repository:alpha/app:pull",
        "repository:alpha/app:push repository:alpha/base:pull",
        account=ALICE,
    )
    assert access_of(reply["token"]) == [
        {"type": "repository", "name": "alpha/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "alpha/base", "actions": ["pull"]},
    ]


async def test_unknown_scope_types_actions_and_invalid_names_grant_nothing(
    auth_registry_client: ServiceClient,
) -> None:
    reply = await fetch_token(
        auth_registry_client,
        "registry:catalog:*",
        "repository:Alpha/App:pull",
        "repository:alpha:pull",
        "repository:alpha/app:pull,frobnicate",
        "nonsense",
        account=ALICE,
    )
    assert access_of(reply["token"]) == [
        {"type": "repository", "name": "alpha/app", "actions": ["pull"]}
    ]


async def test_token_without_scope_is_a_login_check(auth_registry_client: ServiceClient) -> None:
    reply = await fetch_token(auth_registry_client, account=ALICE)
    assert access_of(reply["token"]) == []
    assert jwt.decode(reply["token"], options={"verify_signature": False})["sub"] == ALICE.user


@pytest.mark.parametrize("scope", [None, "repository:alpha/app:pull"])
async def test_wrong_password_gets_401_from_the_token_endpoint(
    auth_registry_client: ServiceClient, scope: str | None
) -> None:
    response = await auth_registry_client.get(
        "/token",
        params={"service": "registry", **({"scope": scope} if scope else {})},
        headers={"Authorization": ALICE.with_password("wrong").basic},
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert await error_code(response) == "UNAUTHORIZED"


async def test_too_many_repositories_in_one_token_request_is_rejected(
    auth_registry_client: ServiceClient,
) -> None:
    params = [("scope", f"repository:alpha/app{index}:pull") for index in range(33)]
    response = await auth_registry_client.get(
        "/token", params=params, headers={"Authorization": ALICE.basic}
    )
    assert response.status == 400


async def test_an_anonymous_token_request_makes_a_bounded_number_of_deploys_calls(
    deploys_registry_client: ServiceClient, deploys_api: FakeDeploysApi
) -> None:
    scopes = [("scope", f"repository:stranger{index}/app:pull,push") for index in range(4)]
    ping = await deploys_registry_client.get("/token", params=scopes)
    assert ping.status == 200
    assert deploys_api.total_calls <= 4  # one question per project: anonymous callers only pull
    calls = deploys_api.total_calls
    again = await deploys_registry_client.get("/token", params=scopes)
    assert again.status == 200
    assert deploys_api.total_calls == calls  # refusals are cached like grants


async def test_a_token_request_names_at_most_a_few_projects(
    deploys_registry_client: ServiceClient, deploys_api: FakeDeploysApi
) -> None:
    scopes = [("scope", f"repository:stranger{index}/app:pull") for index in range(32)]
    response = await deploys_registry_client.get("/token", params=scopes)
    assert response.status == 400
    assert "at most 4 projects" in (await response.json())["errors"][0]["message"]
    assert deploys_api.total_calls == 0


async def test_anonymous_token_for_a_public_project_grants_pull_only(
    deploys_registry_client: ServiceClient,
) -> None:
    reply = await fetch_token(
        deploys_registry_client,
        f"repository:{PUBLIC}/app:pull,push",
        "repository:alpha/app:pull",
    )
    assert access_of(reply["token"]) == [
        {"type": "repository", "name": f"{PUBLIC}/app", "actions": ["pull"]}
    ]
    headers = bearer(reply["token"])
    pull = await deploys_registry_client.get(f"/v2/{PUBLIC}/app/tags/list", headers=headers)
    assert pull.status not in REFUSED
    push = await deploys_registry_client.post(f"/v2/{PUBLIC}/app/blobs/uploads/", headers=headers)
    assert push.status == 401
    assert challenge_of(push)["error"] == "insufficient_scope"


# --- POST /token (OAuth2 password grant, containerd) ----------------------------------------


async def test_oauth_password_grant_issues_the_same_token(
    auth_registry_client: ServiceClient,
) -> None:
    response = await auth_registry_client.post(
        "/token",
        data={
            "grant_type": "password",
            "service": "registry",
            "client_id": "containerd",
            "username": ALICE.user,
            "password": ALICE.password,
            "scope": "repository:alpha/app:pull,push repository:beta/app:pull",
        },
    )
    assert response.status == 200
    reply = await response.json()
    assert set(reply) == {"access_token", "expires_in", "issued_at", "scope"}
    assert reply["scope"] == "repository:alpha/app:pull,push"
    assert access_of(reply["access_token"]) == [
        {"type": "repository", "name": "alpha/app", "actions": ["pull", "push"]}
    ]
    pull = await auth_registry_client.get(
        "/v2/alpha/app/tags/list", headers=bearer(reply["access_token"])
    )
    assert pull.status not in REFUSED


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {"grant_type": "password", "username": ALICE.user, "password": "wrong"},
            401,
            "invalid_grant",
        ),
        ({"grant_type": "refresh_token", "refresh_token": "x"}, 400, "unsupported_grant_type"),
        ({"grant_type": "password", "username": ALICE.user}, 400, "invalid_request"),
    ],
    ids=["wrong-password", "refresh-token", "no-password"],
)
async def test_oauth_errors(
    auth_registry_client: ServiceClient, form: dict[str, str], status: int, error: str
) -> None:
    response = await auth_registry_client.post("/token", data=form)
    assert response.status == status
    assert (await response.json())["error"] == error
    if status == 401:
        assert "WWW-Authenticate" in response.headers


async def test_oauth_grant_needs_a_form(auth_registry_client: ServiceClient) -> None:
    response = await auth_registry_client.post("/token", json={"grant_type": "password"})
    assert response.status == 400


# --- registry tokens on /v2/<name>/ ---------------------------------------------------------


async def test_registry_token_is_checked_without_calling_the_deploys_api(
    deploys_registry_client: ServiceClient, deploys_api: FakeDeploysApi
) -> None:
    reply = await fetch_token(
        deploys_registry_client, "repository:alpha/app:pull,push", account=ALICE
    )
    calls = deploys_api.total_calls
    headers = bearer(reply["token"])
    for method, path in [
        ("GET", "/v2/alpha/app/tags/list"),
        ("HEAD", "/v2/alpha/app/manifests/latest"),
        ("POST", "/v2/alpha/app/blobs/uploads/"),
    ]:
        response = await deploys_registry_client.request(method, path, headers=headers)
        assert response.status not in REFUSED, (method, path)
    assert deploys_api.total_calls == calls


async def test_token_for_one_repository_grants_nothing_on_another(
    auth_registry_client: ServiceClient,
) -> None:
    reply = await fetch_token(auth_registry_client, "repository:alpha/app:pull,push", account=ALICE)
    response = await auth_registry_client.get(
        "/v2/alpha/other/tags/list", headers=bearer(reply["token"])
    )
    assert response.status == 401
    assert await error_code(response) == "UNAUTHORIZED"
    challenge = challenge_of(response)
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "repository:alpha/other:pull"
    assert challenge["realm"] == f"{origin(auth_registry_client)}/token"


async def test_pull_only_token_cannot_push(auth_registry_client: ServiceClient) -> None:
    reply = await fetch_token(auth_registry_client, "repository:alpha/app:pull", account=ALICE)
    response = await auth_registry_client.put(
        "/v2/alpha/app/manifests/latest",
        data=b"{}",
        headers={**bearer(reply["token"]), **MANIFEST_HEADERS},
    )
    assert response.status == 401
    challenge = challenge_of(response)
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "repository:alpha/app:pull,push"


async def test_token_for_another_host_is_an_invalid_token(
    auth_registry_client: ServiceClient,
) -> None:
    reply = await fetch_token(auth_registry_client, "repository:alpha/app:pull", account=ALICE)
    response = await auth_registry_client.get(
        "/v2/alpha/app/tags/list",
        headers={**bearer(reply["token"]), "Host": "elsewhere.example.com"},
    )
    assert response.status == 401
    assert challenge_of(response)["error"] == "invalid_token"


async def test_forged_token_is_an_invalid_token_and_never_reaches_the_deploys_api(
    deploys_registry_client: ServiceClient, deploys_api: FakeDeploysApi
) -> None:
    now = datetime.now(UTC)
    host = deploys_registry_client.make_url("").authority
    claims = {
        "iss": ISSUER,
        "sub": "mallory",
        "aud": host,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "access": [{"type": "repository", "name": "alpha/app", "actions": ["pull", "push"]}],
    }
    forged = jwt.encode(claims, "not-the-registry-secret-but-32-chars-long", algorithm="HS256")
    response = await deploys_registry_client.get("/v2/alpha/app/tags/list", headers=bearer(forged))
    assert response.status == 401
    assert challenge_of(response)["error"] == "invalid_token"
    assert deploys_api.total_calls == 0


async def test_authorize_checks_a_second_repository_against_the_same_token(
    aiohttp_client: Any, make_settings: Any
) -> None:
    """What a cross-repository mount does: `authorize(request, source, PULL)`."""
    app = create_app(make_settings(auth_mode="static", auth_users=STATIC_USERS))

    async def check_source(request: web.Request) -> web.Response:
        grant = await authorize(request, RepositoryName("alpha/base"), Action.PULL)
        return web.json_response({"project_id": grant.project_id})

    app.router.add_get("/test/check-source", check_source)
    client = await aiohttp_client(app)
    both = await fetch_token(
        client, "repository:alpha/app:pull,push", "repository:alpha/base:pull", account=ALICE
    )
    allowed = await client.get("/test/check-source", headers=bearer(both["token"]))
    assert allowed.status == 200
    assert (await allowed.json())["project_id"] == ALPHA
    only_target = await fetch_token(client, "repository:alpha/app:pull,push", account=ALICE)
    refused = await client.get("/test/check-source", headers=bearer(only_target["token"]))
    assert refused.status == 401


# --- credentials directly on /v2/<name>/ ----------------------------------------------------


async def test_basic_credentials_work_directly(auth_registry_client: ServiceClient) -> None:
    headers = {"Authorization": ALICE.basic}
    pull = await auth_registry_client.get("/v2/alpha/app/tags/list", headers=headers)
    assert pull.status not in REFUSED
    push = await auth_registry_client.post("/v2/alpha/app/blobs/uploads/", headers=headers)
    assert push.status not in REFUSED


async def test_deploys_api_bearer_token_is_passed_through(
    deploys_registry_client: ServiceClient, deploys_api: FakeDeploysApi
) -> None:
    authorization = f"Bearer {ALICE_API_TOKEN}"
    response = await deploys_registry_client.post(
        "/v2/alpha/app/blobs/uploads/", headers={"Authorization": authorization}
    )
    assert response.status not in REFUSED
    assert deploys_api.last_authorization["me.authorized"] == authorization


WRONG_PASSWORD = ALICE.with_password("wrong")


@pytest.mark.parametrize(
    ("account", "method", "name", "expected"),
    [
        (ALICE, "POST", "alpha/app", "allowed"),
        (BOB, "GET", "alpha/app", "allowed"),  # push denied, then pull allowed
        (BOB, "POST", "alpha/app", 403),
        (ALICE, "GET", "beta/app", 403),
        (ALICE, "GET", f"{UNPAID}/app", 403),  # billing account inactive
        (WRONG_PASSWORD, "GET", "alpha/app", 401),
        (WRONG_PASSWORD, "GET", f"{PUBLIC}/app", 401),
        (None, "GET", "alpha/app", 401),
        (None, "GET", f"{PUBLIC}/app", "allowed"),
        (None, "POST", f"{PUBLIC}/app", 401),
    ],
)
async def test_denied_is_403_and_unauthenticated_is_401(
    deploys_registry_client: ServiceClient,
    account: Account | None,
    method: str,
    name: str,
    expected: int | str,
) -> None:
    headers = {"Authorization": account.basic} if account else {}
    path = f"/v2/{name}/blobs/uploads/" if method == "POST" else f"/v2/{name}/tags/list"
    response = await deploys_registry_client.request(method, path, headers=headers)
    if expected == "allowed":
        assert response.status not in REFUSED
        return
    assert response.status == expected
    if expected == 403:
        assert await error_code(response) == "DENIED"
        assert "WWW-Authenticate" not in response.headers
    else:
        assert await error_code(response) == "UNAUTHORIZED"
        action = "pull" if method == "GET" else "pull,push"
        assert challenge_of(response)["scope"] == f"repository:{name}:{action}"


async def test_deploys_api_down_answers_503_and_is_not_cached(
    deploys_registry_client: ServiceClient, deploys_api: FakeDeploysApi
) -> None:
    deploys_api.answer_500 = True
    headers = {"Authorization": ALICE.basic}
    for path in ["/v2/alpha/app/tags/list", "/v2/", "/token?scope=repository:alpha/app:pull"]:
        response = await deploys_registry_client.get(path, headers=headers)
        assert response.status == 503, path
        assert response.headers["Retry-After"].isdigit()
        assert await error_code(response) == "UNAVAILABLE"
    calls = deploys_api.total_calls

    deploys_api.answer_500 = False
    response = await deploys_registry_client.get("/v2/alpha/app/tags/list", headers=headers)
    assert response.status not in REFUSED
    assert deploys_api.total_calls > calls


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"auth_mode": "deploys", "token_secret": None}, "TOKEN_SECRET"),
        ({"auth_mode": "static", "auth_users": STATIC_USERS, "token_secret": None}, "TOKEN_SECRET"),
        ({"auth_mode": "static", "auth_users": None}, "AUTH_USERS"),
        ({"auth_mode": "static", "auth_users": "alice:only-two"}, "AUTH_USERS"),
    ],
)
def test_auth_configuration_errors_stop_the_service_at_start(
    make_settings: Any, overrides: dict[str, Any], variable: str
) -> None:
    with pytest.raises(ConfigError) as error:
        create_app(make_settings(**overrides))
    assert error.value.variable == variable


def test_auth_mode_none_needs_no_token_secret(make_settings: Any) -> None:
    assert create_app(make_settings(auth_mode="none", token_secret=None)) is not None


# --- isolation: every repository route ------------------------------------------------------


def repository_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, canonical path) of every `/v2/<name>/...` route of the app's route table."""
    routes = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith("/v2/{name}/"):
            routes.append((route.method, canonical))
    assert len(routes) >= 10
    return routes


def concrete_path(canonical: str, name: str) -> str:
    path = (
        canonical.replace("{name}", name)
        .replace("{digest}", DIGEST)
        .replace("{reference}", "latest")
        .replace("{upload_id}", str(uuid.uuid4()))
    )
    assert not re.search(r"[{}]", path), f"route parameter without a test value: {canonical}"
    return path


# (credential kind, repository it is used on); every kind belongs to project alpha (or is
# for repository alpha/app only).
CALLERS = [
    ("basic-credentials-of-alpha", "beta/app"),
    ("deploys-api-token-of-alpha", "beta/app"),
    ("registry-token-of-alpha", "beta/app"),
    ("registry-token-of-alpha-app", "alpha/other"),
    ("anonymous", "beta/app"),
]


async def _authorization(client: ServiceClient, kind: str) -> dict[str, str]:
    if kind == "basic-credentials-of-alpha":
        return {"Authorization": ALICE.basic}
    if kind == "deploys-api-token-of-alpha":
        return {"Authorization": f"Bearer {ALICE_API_TOKEN}"}
    if kind == "anonymous":
        return {}
    reply = await fetch_token(client, "repository:alpha/app:pull,push", account=ALICE)
    return bearer(reply["token"])


@pytest.mark.parametrize(("kind", "target"), CALLERS, ids=[kind for kind, _ in CALLERS])
async def test_project_isolation_on_every_repository_route(
    auth_registry_client: ServiceClient, kind: str, target: str
) -> None:
    headers = {**await _authorization(auth_registry_client, kind), **MANIFEST_HEADERS}
    answered = []
    for method, canonical in repository_routes(auth_registry_client.app):
        path = concrete_path(canonical, target)
        body = b"{}" if method in ("PUT", "PATCH", "POST") else None
        response = await auth_registry_client.request(method, path, headers=headers, data=body)
        refused = response.status in (401, 403)
        if response.status == 401:
            refused = challenge_of(response)["scope"].startswith(f"repository:{target}:")
        if refused and method != "HEAD":
            refused = await error_code(response) in ("UNAUTHORIZED", "DENIED")
        if not refused:
            answered.append(f"{method} {path} -> {response.status}")
    assert not answered, "served to another project's caller:\n" + "\n".join(answered)


async def test_mount_from_another_tenants_repository_needs_pull_there(
    auth_registry_client: ServiceClient,
) -> None:
    """Cross-tenant dedup needs proof of possession: knowing a digest is not enough."""
    client = auth_registry_client
    data = b"beta's private layer"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    carol = await fetch_token(client, f"repository:{BETA}/secret:pull,push", account=CAROL)
    started = await client.post(
        f"/v2/{BETA}/secret/blobs/uploads/",
        params={"digest": digest},
        data=data,
        headers=bearer(carol["token"]),
    )
    assert started.status == 201

    alice = await fetch_token(
        client,
        f"repository:{ALPHA}/app:pull,push",
        f"repository:{BETA}/secret:pull",
        account=ALICE,
    )
    mount = await client.post(
        f"/v2/{ALPHA}/app/blobs/uploads/",
        params={"mount": digest, "from": f"{BETA}/secret"},
        headers=bearer(alice["token"]),
    )
    assert mount.status == 202  # no mount: an ordinary upload session instead
    auto_mount = await client.post(
        f"/v2/{ALPHA}/app/blobs/uploads/",
        params={"mount": digest},
        headers=bearer(alice["token"]),
    )
    assert auto_mount.status == 202
    head = await client.head(f"/v2/{ALPHA}/app/blobs/{digest}", headers=bearer(alice["token"]))
    assert head.status == 404
