"""The Deploys API authorizer against the fake API over HTTP: decisions, the 30 s cache of
allows and denies, single-flight look-ups, and failures that are never cached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from registry_common.auth.base import AuthUnavailable, Decision, Permission
from registry_common.auth.deploys import DeploysAuthorizer
from tests.fakes.deploys_api import FakeDeploysApi
from tests.fixtures.auth import ALICE, ALICE_API_TOKEN, ALPHA, BETA, BOB, CAROL, PUBLIC, UNPAID

TTL = timedelta(seconds=30)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def authorizer(
    deploys_api: FakeDeploysApi, clock: FakeClock
) -> AsyncIterator[DeploysAuthorizer]:
    authorizer = DeploysAuthorizer(deploys_api.url, cache_ttl=TTL, clock=clock)
    yield authorizer
    await authorizer.close()


async def test_member_with_the_permission_is_allowed_with_the_project_id(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    decision = await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)
    assert decision == Decision(allowed=True, authenticated=True, project_id="project-id-alpha")
    assert deploys_api.last_authorization["me.authorized"] == ALICE.basic


@pytest.mark.parametrize(
    ("authorization", "project", "permission"),
    [
        (BOB.basic, ALPHA, Permission.PUSH),  # member without the permission
        (CAROL.basic, ALPHA, Permission.PULL),  # not a member
        (ALICE.basic, "no-such-project", Permission.PULL),  # ok:false, not the unauthorized error
        (ALICE.basic, UNPAID, Permission.PULL),  # authorized, billing account inactive
    ],
    ids=["missing-permission", "not-a-member", "unknown-project", "billing-inactive"],
)
async def test_valid_credentials_without_access_are_denied_but_authenticated(
    authorizer: DeploysAuthorizer, authorization: str, project: str, permission: Permission
) -> None:
    decision = await authorizer.authorize(authorization, project, permission)
    assert not decision.allowed
    assert decision.authenticated


@pytest.mark.parametrize("unauthorized_status", [200, 401], ids=["ok-false", "http-401"])
async def test_invalid_credentials_are_not_authenticated(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi, unauthorized_status: int
) -> None:
    deploys_api.unauthorized_status = unauthorized_status
    wrong = ALICE.with_password("wrong").basic
    decision = await authorizer.authorize(wrong, ALPHA, Permission.PULL)
    assert decision == Decision(allowed=False, authenticated=False)
    assert await authorizer.identify(wrong) is None


async def test_anonymous_may_pull_a_project_open_to_all_users(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    decision = await authorizer.authorize(None, PUBLIC, Permission.PULL)
    assert decision == Decision(
        allowed=True, authenticated=False, project_id=f"project-id-{PUBLIC}"
    )
    assert deploys_api.last_authorization["me.authorized"] is None  # no header at all


@pytest.mark.parametrize(
    ("project", "permission"), [(PUBLIC, Permission.PUSH), (ALPHA, Permission.PULL)]
)
async def test_anonymous_is_otherwise_not_authenticated(
    authorizer: DeploysAuthorizer, project: str, permission: Permission
) -> None:
    decision = await authorizer.authorize(None, project, permission)
    assert not decision.allowed
    assert not decision.authenticated


async def test_deploys_api_bearer_token_is_passed_through(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    authorization = f"Bearer {ALICE_API_TOKEN}"
    assert (await authorizer.authorize(authorization, ALPHA, Permission.PUSH)).allowed
    assert deploys_api.last_authorization["me.authorized"] == authorization
    assert await authorizer.identify(authorization) == ALICE.user


async def test_identify_returns_the_email_of_valid_credentials(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    assert await authorizer.identify(BOB.basic) == BOB.user
    assert await authorizer.identify(BOB.basic) == BOB.user
    assert deploys_api.calls["me.get"] == 1


async def test_answer_is_cached_within_the_ttl_and_asked_again_after(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi, clock: FakeClock
) -> None:
    await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)
    clock.advance(TTL.total_seconds() - 0.1)
    assert (await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)).allowed
    assert deploys_api.calls["me.authorized"] == 1

    clock.advance(0.1)
    assert (await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)).allowed
    assert deploys_api.calls["me.authorized"] == 2


@pytest.mark.parametrize(
    "authorization",
    [BOB.basic, BOB.with_password("wrong").basic, None],
    ids=["denied", "invalid-credentials", "anonymous"],
)
async def test_denials_are_cached_too(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi, authorization: str | None
) -> None:
    first = await authorizer.authorize(authorization, ALPHA, Permission.PUSH)
    second = await authorizer.authorize(authorization, ALPHA, Permission.PUSH)
    assert first == second
    assert not second.allowed
    assert deploys_api.calls["me.authorized"] == 1


async def test_cache_key_is_credentials_project_and_permission(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)
    await authorizer.authorize(ALICE.basic, ALPHA, Permission.PULL)
    await authorizer.authorize(ALICE.basic, BETA, Permission.PUSH)
    await authorizer.authorize(BOB.basic, ALPHA, Permission.PUSH)
    await authorizer.authorize(None, ALPHA, Permission.PUSH)
    assert deploys_api.calls["me.authorized"] == 5


async def test_cache_is_bounded(deploys_api: FakeDeploysApi, clock: FakeClock) -> None:
    authorizer = DeploysAuthorizer(deploys_api.url, cache_ttl=TTL, clock=clock, max_entries=2)
    try:
        for project in (ALPHA, BETA, PUBLIC):
            await authorizer.authorize(ALICE.basic, project, Permission.PULL)
        await authorizer.authorize(ALICE.basic, PUBLIC, Permission.PULL)  # still cached
        assert deploys_api.calls["me.authorized"] == 3
        await authorizer.authorize(ALICE.basic, ALPHA, Permission.PULL)  # evicted: asked again
        assert deploys_api.calls["me.authorized"] == 4
    finally:
        await authorizer.close()


@pytest.mark.parametrize("failure", ["answer_500", "close_connections"])
async def test_failures_raise_unavailable_and_are_never_cached(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi, failure: str
) -> None:
    setattr(deploys_api, failure, True)
    for _ in range(2):
        with pytest.raises(AuthUnavailable):
            await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)
        with pytest.raises(AuthUnavailable):
            await authorizer.identify(ALICE.basic)
    assert deploys_api.calls == {"me.authorized": 2, "me.get": 2}

    setattr(deploys_api, failure, False)
    assert (await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)).allowed
    assert await authorizer.identify(ALICE.basic) == ALICE.user
    assert deploys_api.calls == {"me.authorized": 3, "me.get": 3}


async def test_unreachable_api_raises_unavailable(unused_tcp_port: int, clock: FakeClock) -> None:
    authorizer = DeploysAuthorizer(f"http://127.0.0.1:{unused_tcp_port}", clock=clock)
    try:
        with pytest.raises(AuthUnavailable):
            await authorizer.authorize(ALICE.basic, ALPHA, Permission.PULL)
    finally:
        await authorizer.close()


async def test_concurrent_identical_lookups_make_one_call(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    deploys_api.gate = asyncio.Event()
    lookups = [
        asyncio.ensure_future(authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH))
        for _ in range(20)
    ]
    # Every look-up started before the first request could reach the API; hold that request
    # until then, so the other 19 can only be waiting for it.
    await deploys_api.call_arrived.wait()
    deploys_api.gate.set()
    decisions = await asyncio.gather(*lookups)
    assert all(decision.allowed for decision in decisions)
    assert deploys_api.calls["me.authorized"] == 1


async def test_concurrent_lookups_share_a_failure_and_the_next_one_asks_again(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    deploys_api.gate = asyncio.Event()
    deploys_api.answer_500 = True
    lookups = [
        asyncio.ensure_future(authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH))
        for _ in range(10)
    ]
    await deploys_api.call_arrived.wait()
    deploys_api.gate.set()
    results = await asyncio.gather(*lookups, return_exceptions=True)
    assert all(isinstance(result, AuthUnavailable) for result in results)
    assert deploys_api.calls["me.authorized"] == 1

    deploys_api.answer_500 = False
    assert (await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)).allowed
    assert deploys_api.calls["me.authorized"] == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_lookup(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    deploys_api.gate = asyncio.Event()
    first = asyncio.ensure_future(authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH))
    second = asyncio.ensure_future(authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH))
    await deploys_api.call_arrived.wait()
    first.cancel()
    deploys_api.gate.set()
    assert (await second).allowed
    assert first.cancelled()
    assert deploys_api.calls["me.authorized"] == 1


async def test_credentials_are_neither_logged_nor_kept_as_cache_keys(
    authorizer: DeploysAuthorizer, deploys_api: FakeDeploysApi
) -> None:
    await authorizer.authorize(ALICE.basic, ALPHA, Permission.PUSH)
    await authorizer.identify(ALICE.basic)
    deploys_api.answer_500 = True
    with capture_logs() as logs, pytest.raises(AuthUnavailable):
        await authorizer.authorize(ALICE.basic, BETA, Permission.PUSH)
    assert logs, "an unavailable API is logged"
    secret_parts = (ALICE.basic, ALICE.basic.removeprefix("Basic "), ALICE.password)
    assert not any(part in repr(logs) for part in secret_parts)
    keys = repr(list(authorizer._cache._entries))  # white-box: what is kept in memory
    assert not any(part in keys for part in secret_parts)
