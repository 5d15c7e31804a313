"""AUTH_MODE=static: users from AUTH_USERS, Basic credentials only, all permissions on their
projects and nothing elsewhere."""

from __future__ import annotations

import base64

import pytest

from registry_common.auth import create_authorizer
from registry_common.auth.base import Decision, Permission
from registry_common.auth.static import StaticAuthorizer, parse_users
from registry_common.settings import ConfigError, Settings


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def authorizer() -> StaticAuthorizer:
    return StaticAuthorizer.from_spec("alice:secret:alpha|beta, root:p:ss:w*rd:*")


def test_users_list_projects_or_every_project() -> None:
    users = parse_users("alice:secret:alpha|beta,root:pw:*,")
    assert users["alice"].projects == frozenset({"alpha", "beta"})
    assert users["root"].projects is None
    assert users["root"].may_use("anything")


def test_password_may_contain_colons() -> None:
    users = parse_users("root:p:ss:w*rd:*")
    assert set(users) == {"root"}


@pytest.mark.parametrize(
    "spec",
    [
        "",
        ",",
        "alice",
        "alice:secret",
        ":secret:alpha",
        "alice::alpha",
        "alice:secret:",
        "alice:secret:Alpha",
        "alice:secret:alpha||beta",
        "alice:secret:alpha/app",
        "alice:a:alpha,alice:b:beta",
    ],
)
def test_malformed_auth_users_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_users(spec)
    assert error.value.variable == "AUTH_USERS"
    assert "secret" not in error.value.message  # passwords never end up in messages


@pytest.mark.parametrize("permission", list(Permission))
async def test_user_has_every_permission_on_listed_projects(
    authorizer: StaticAuthorizer, permission: Permission
) -> None:
    decision = await authorizer.authorize(basic("alice", "secret"), "beta", permission)
    assert decision == Decision(allowed=True, authenticated=True, project_id="beta")


async def test_wildcard_user_may_use_any_project(authorizer: StaticAuthorizer) -> None:
    decision = await authorizer.authorize(basic("root", "p:ss:w*rd"), "zeta", Permission.PUSH)
    assert decision.allowed


async def test_user_is_denied_other_projects(authorizer: StaticAuthorizer) -> None:
    decision = await authorizer.authorize(basic("alice", "secret"), "gamma", Permission.PULL)
    assert decision == Decision(allowed=False, authenticated=True)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic("alice", "wrong"),
        basic("alice", "secret "),
        basic("nobody", "secret"),
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer some-token",
        "Digest username=alice",
    ],
)
async def test_anything_but_valid_basic_credentials_is_not_authenticated(
    authorizer: StaticAuthorizer, authorization: str | None
) -> None:
    decision = await authorizer.authorize(authorization, "alpha", Permission.PULL)
    assert decision == Decision(allowed=False, authenticated=False)


async def test_identify_returns_the_user_name_of_valid_credentials(
    authorizer: StaticAuthorizer,
) -> None:
    assert await authorizer.identify(basic("alice", "secret")) == "alice"
    assert await authorizer.identify(basic("alice", "nope")) is None
    assert await authorizer.identify("Bearer x") is None


def test_create_authorizer_follows_auth_mode() -> None:
    assert create_authorizer(Settings(auth_mode="none")) is None
    static = create_authorizer(Settings(auth_mode="static", auth_users="a:b:*"))
    assert isinstance(static, StaticAuthorizer)
    with pytest.raises(ConfigError) as missing:
        create_authorizer(Settings(auth_mode="static"))
    assert missing.value.variable == "AUTH_USERS"
