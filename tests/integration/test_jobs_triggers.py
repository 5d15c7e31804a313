"""`POST /internal/<job>`, the local timer, job metrics and draining on shutdown."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from registry_common.jobs.base import JobName
from registry_common.metrics import create_metrics_app
from registry_common.settings import ConfigError, Settings
from registry_jobs.app import create_app
from registry_jobs.runs import JobInterrupted, JobRuns, JobsClosing, job_context
from registry_jobs.timer_trigger import timer_enabled
from tests.fixtures.jobs import STEPS, JobSteps
from tests.fixtures.services import ServiceClient

SECRET = "internal-secret-0123456789"
AUTHORIZED = {"Authorization": f"Bearer {SECRET}"}
WAIT_LONG = 20.0


@pytest.fixture
async def jobs_client(
    aiohttp_client: Any, make_settings: Any, job_steps: JobSteps
) -> ServiceClient:
    """The jobs service with INTERNAL_SECRET set and the stand-in steps; no timer."""
    settings = make_settings(internal_secret=SECRET, jobs_interval=0)
    client: ServiceClient = await aiohttp_client(create_app(settings))
    return client


@pytest.mark.parametrize("job", [*STEPS])
async def test_each_job_runs_alone_and_answers_204(
    jobs_client: ServiceClient, job_steps: JobSteps, job: JobName
) -> None:
    response = await jobs_client.post(f"/internal/{job.value}", headers=AUTHORIZED)
    assert response.status == 204, await response.text()
    assert job_steps.runs == [job]


async def test_run_all_runs_the_three_jobs_in_order(
    jobs_client: ServiceClient, job_steps: JobSteps
) -> None:
    response = await jobs_client.post("/internal/runAll", headers=AUTHORIZED)
    assert response.status == 204, await response.text()
    assert job_steps.runs == list(STEPS)


async def test_run_all_stops_at_the_first_failing_step_and_answers_500(
    jobs_client: ServiceClient, job_steps: JobSteps
) -> None:
    job_steps.fail(JobName.RUN_BLOB_GC)
    response = await jobs_client.post("/internal/runAll", headers=AUTHORIZED)
    assert response.status == 500
    assert await response.json() == {"error": "job failed", "job": "runBlobGC"}
    assert job_steps.runs == [JobName.INDEX_MANIFESTS, JobName.RUN_BLOB_GC]


async def test_failing_job_answers_500_naming_it(
    jobs_client: ServiceClient, job_steps: JobSteps
) -> None:
    job_steps.fail(JobName.CALCULATE_PROJECT_STORAGE)
    response = await jobs_client.post("/internal/calculateProjectStorage", headers=AUTHORIZED)
    assert response.status == 500
    assert await response.json() == {"error": "job failed", "job": "calculateProjectStorage"}
    # Failing leaves nothing behind: the next trigger runs it again.
    again = await jobs_client.post("/internal/calculateProjectStorage", headers=AUTHORIZED)
    assert again.status == 204


@pytest.mark.parametrize("second", [JobName.INDEX_MANIFESTS, JobName.RUN_ALL])
async def test_trigger_while_the_job_runs_answers_202_already_running(
    jobs_client: ServiceClient, job_steps: JobSteps, second: JobName
) -> None:
    release = job_steps.hold(JobName.INDEX_MANIFESTS)
    first = asyncio.create_task(jobs_client.post("/internal/runAll", headers=AUTHORIZED))
    await job_steps.wait_runs(JobName.INDEX_MANIFESTS)

    response = await jobs_client.post(f"/internal/{second.value}", headers=AUTHORIZED)
    assert response.status == 202
    assert await response.json() == {"job": second.value, "status": "already running"}

    release.set()
    assert (await first).status == 204
    assert job_steps.runs == list(STEPS)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": SECRET},
    ],
    ids=["missing", "wrong", "longer", "basic-scheme", "no-scheme"],
)
async def test_wrong_or_missing_bearer_answers_401_and_runs_nothing(
    jobs_client: ServiceClient, job_steps: JobSteps, headers: dict[str, str]
) -> None:
    response = await jobs_client.post("/internal/runAll", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert job_steps.runs == []


async def test_bearer_scheme_is_case_insensitive(
    jobs_client: ServiceClient, job_steps: JobSteps
) -> None:
    response = await jobs_client.post(
        "/internal/runBlobGC", headers={"Authorization": f"bearer {SECRET}"}
    )
    assert response.status == 204


async def test_unset_secret_skips_the_check(
    aiohttp_client: Any, make_settings: Any, job_steps: JobSteps
) -> None:
    client = await aiohttp_client(create_app(make_settings(internal_secret=None, jobs_interval=0)))
    response = await client.post("/internal/runBlobGC")
    assert response.status == 204
    assert job_steps.runs == [JobName.RUN_BLOB_GC]


async def test_unknown_job_answers_404(jobs_client: ServiceClient, job_steps: JobSteps) -> None:
    response = await jobs_client.post("/internal/deleteEverything", headers=AUTHORIZED)
    assert response.status == 404
    assert await response.json() == {"error": "unknown job", "job": "deleteEverything"}
    unauthenticated = await jobs_client.post("/internal/deleteEverything")
    assert unauthenticated.status == 401  # the secret is checked first
    assert job_steps.runs == []


async def test_get_is_not_a_trigger(jobs_client: ServiceClient, job_steps: JobSteps) -> None:
    response = await jobs_client.get("/internal/runAll", headers=AUTHORIZED)
    assert response.status == 405
    assert job_steps.runs == []


async def test_unreachable_database_answers_503(
    aiohttp_client: Any, make_settings: Any, unused_tcp_port: int, job_steps: JobSteps
) -> None:
    settings = make_settings(
        db_url=f"postgres://u:p@127.0.0.1:{unused_tcp_port}/none", jobs_interval=0
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.post("/internal/runAll")
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert job_steps.runs == []


async def test_job_runs_show_in_the_metrics(
    aiohttp_client: Any, jobs_client: ServiceClient, job_steps: JobSteps
) -> None:
    def successes() -> float:
        labels = {"job": "runBlobGC", "outcome": "success"}
        return REGISTRY.get_sample_value("registry_job_duration_seconds_count", labels) or 0.0

    before = successes()
    assert (await jobs_client.post("/internal/runBlobGC", headers=AUTHORIZED)).status == 204
    assert successes() == before + 1

    metrics = await aiohttp_client(create_metrics_app())
    text = await (await metrics.get("/metrics")).text()
    assert 'registry_job_last_success_timestamp_seconds{job="runBlobGC"}' in text
    assert 'registry_job_items_total{job="runBlobGC",kind="scanned"}' in text


# -- the local timer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "enabled"),
    [
        ({}, True),
        ({"jobs_interval": "15m"}, True),
        ({"jobs_interval": "0"}, False),
        ({"pubsub_subscription": "projects/p/subscriptions/s"}, False),
    ],
    ids=["default-daily", "interval", "zero-interval", "pubsub"],
)
def test_timer_runs_only_without_pubsub_and_with_an_interval(
    make_settings: Any, overrides: dict[str, Any], enabled: bool
) -> None:
    assert timer_enabled(make_settings(**overrides)) is enabled


async def test_timer_runs_run_all_every_interval(
    aiohttp_client: Any, make_settings: Any, job_steps: JobSteps
) -> None:
    settings = make_settings(jobs_interval=timedelta(milliseconds=20))
    await aiohttp_client(create_app(settings))
    # Two full rounds: the timer keeps going after a run.
    await job_steps.wait_runs(JobName.CALCULATE_PROJECT_STORAGE, count=2)
    assert job_steps.runs[:6] == [*STEPS, *STEPS]


async def test_timer_keeps_going_after_a_failed_run(
    aiohttp_client: Any, make_settings: Any, job_steps: JobSteps
) -> None:
    job_steps.fail(JobName.INDEX_MANIFESTS)
    settings = make_settings(jobs_interval=timedelta(milliseconds=20))
    await aiohttp_client(create_app(settings))
    await job_steps.wait_runs(JobName.CALCULATE_PROJECT_STORAGE)
    assert job_steps.runs[:4] == [JobName.INDEX_MANIFESTS, *STEPS]


def test_subscription_must_be_a_full_path(make_settings: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        create_app(make_settings(pubsub_subscription="jobs"))
    assert raised.value.variable == "PUBSUB_SUBSCRIPTION"


# -- shutdown ---------------------------------------------------------------------------------


async def test_shutdown_lets_a_running_job_finish_within_the_timeout(
    aiohttp_client: Any, settings: Settings, job_steps: JobSteps
) -> None:
    client = await aiohttp_client(create_app(settings))
    runs = JobRuns()
    release = job_steps.hold(JobName.RUN_BLOB_GC)
    running = asyncio.create_task(runs.run(job_context(client.app), JobName.RUN_BLOB_GC, "test"))
    await job_steps.wait_runs(JobName.RUN_BLOB_GC)

    closing = asyncio.create_task(runs.close(grace_seconds=WAIT_LONG))
    runs.refuse_new_runs()  # what close() does first, before it waits
    with pytest.raises(JobsClosing):  # no new run once shutdown began
        await runs.run(job_context(client.app), JobName.INDEX_MANIFESTS, "test")
    release.set()
    await closing
    assert (await running).value == "completed"


async def test_shutdown_cancels_a_job_still_running_after_the_timeout(
    aiohttp_client: Any, settings: Settings, job_steps: JobSteps
) -> None:
    client = await aiohttp_client(create_app(settings))
    runs = JobRuns()
    job_steps.hold(JobName.RUN_BLOB_GC)  # never released
    running = asyncio.create_task(runs.run(job_context(client.app), JobName.RUN_BLOB_GC, "test"))
    await job_steps.wait_runs(JobName.RUN_BLOB_GC)

    await runs.close(grace_seconds=0.01)
    with pytest.raises(JobInterrupted):
        await running
