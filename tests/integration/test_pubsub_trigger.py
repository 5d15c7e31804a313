"""The Pub/Sub trigger: the real google-cloud-pubsub client against the fake server and, where
it is installed, Google's emulator (see tests/fixtures/jobs.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.api_core.exceptions import NotFound

from registry_common.jobs.base import JobName
from registry_jobs.app import create_app
from registry_jobs.pubsub_trigger import PUBSUB_TRIGGER, UnknownJob, job_named_by
from tests.fakes.pubsub import FakePubSub
from tests.fixtures.jobs import (
    STEPS,
    WAIT_TIMEOUT,
    JobSteps,
    PubSubTopic,
    wait_while_subscribed,
)
from tests.fixtures.services import ServiceClient

# -- which job a message names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "attributes", "job"),
    [
        (b"", {"job": "runBlobGC"}, JobName.RUN_BLOB_GC),
        (b'{"job": "indexManifests"}', {}, JobName.INDEX_MANIFESTS),
        (b'{"job": "indexManifests"}', {"job": "runBlobGC"}, JobName.RUN_BLOB_GC),
        (b"", {}, JobName.RUN_ALL),
        (b"  \n", {}, JobName.RUN_ALL),
        (b"{}", {}, JobName.RUN_ALL),
        (b'{"source": "cloud-scheduler"}', {"origin": "x"}, JobName.RUN_ALL),
        (b"", {"job": "runAll"}, JobName.RUN_ALL),
    ],
    ids=[
        "attribute",
        "json-body",
        "attribute-wins",
        "empty",
        "blank",
        "empty-object",
        "no-job-key",
        "run-all-named",
    ],
)
def test_message_names_its_job(data: bytes, attributes: dict[str, str], job: JobName) -> None:
    assert job_named_by(data, attributes) is job


@pytest.mark.parametrize(
    ("data", "attributes"),
    [
        (b"", {"job": "deleteEverything"}),
        (b'{"job": "deleteEverything"}', {}),
        (b'{"job": 7}', {}),
        (b'["runAll"]', {}),
        (b"runAll please", {}),
        (b"\xff\xfe", {}),
    ],
    ids=[
        "unknown-attribute",
        "unknown-in-body",
        "not-a-string",
        "not-an-object",
        "not-json",
        "binary",
    ],
)
def test_message_naming_no_known_job_is_rejected(data: bytes, attributes: dict[str, str]) -> None:
    with pytest.raises(UnknownJob):
        job_named_by(data, attributes)


# -- the trigger against a Pub/Sub server -----------------------------------------------------


@pytest.fixture
async def start_jobs_on(aiohttp_client: Any, make_settings: Any, job_steps: JobSteps) -> Any:
    """Start the jobs service pulling a topic's subscription (stand-in steps, no timer)."""

    async def start(topic: PubSubTopic, **overrides: Any) -> ServiceClient:
        settings = make_settings(**{"pubsub_subscription": topic.subscription, **overrides})
        client: ServiceClient = await aiohttp_client(create_app(settings))
        return client

    return start


@pytest.mark.parametrize(
    ("data", "attributes", "expected"),
    [
        (b"", {"job": "runBlobGC"}, [JobName.RUN_BLOB_GC]),
        (b'{"job": "calculateProjectStorage"}', {}, [JobName.CALCULATE_PROJECT_STORAGE]),
        (b"{}", {}, list(STEPS)),
        (b"", {"source": "cloud-scheduler"}, list(STEPS)),
    ],
    ids=["attribute", "json-body", "empty-object-means-run-all", "no-job-means-run-all"],
)
async def test_published_job_runs_and_its_message_is_acknowledged(
    start_jobs_on: Any,
    pubsub_topic: PubSubTopic,
    job_steps: JobSteps,
    data: bytes,
    attributes: dict[str, str],
    expected: list[JobName],
) -> None:
    client = await start_jobs_on(pubsub_topic)
    await pubsub_topic.publish(data, **attributes)
    await wait_while_subscribed(client.app[PUBSUB_TRIGGER], job_steps.wait_runs(expected[-1]))

    await client.close()  # stops the subscriber once the message is settled
    assert job_steps.runs == expected
    assert await pubsub_topic.unacknowledged() == []


async def test_failing_job_is_delivered_again_until_it_succeeds(
    start_jobs_on: Any, pubsub_topic: PubSubTopic, job_steps: JobSteps
) -> None:
    job_steps.fail(JobName.INDEX_MANIFESTS, times=2)
    client = await start_jobs_on(pubsub_topic)
    await pubsub_topic.publish(job="indexManifests")
    trigger = client.app[PUBSUB_TRIGGER]
    await wait_while_subscribed(trigger, job_steps.wait_runs(JobName.INDEX_MANIFESTS, count=3))

    await client.close()
    assert job_steps.runs == [JobName.INDEX_MANIFESTS] * 3
    assert await pubsub_topic.unacknowledged() == []


async def test_failing_run_all_step_is_redelivered_and_stops_the_rest(
    start_jobs_on: Any, pubsub_topic: PubSubTopic, job_steps: JobSteps
) -> None:
    job_steps.fail(JobName.RUN_BLOB_GC)
    client = await start_jobs_on(pubsub_topic)
    await pubsub_topic.publish(b"{}")
    trigger = client.app[PUBSUB_TRIGGER]
    await wait_while_subscribed(trigger, job_steps.wait_runs(JobName.CALCULATE_PROJECT_STORAGE))

    await client.close()
    # The first delivery stopped at the failing step; the second ran all three.
    assert job_steps.runs == [JobName.INDEX_MANIFESTS, JobName.RUN_BLOB_GC, *STEPS]
    assert await pubsub_topic.unacknowledged() == []


async def test_unknown_job_is_logged_and_acknowledged_without_running(
    start_jobs_on: Any, pubsub_topic: PubSubTopic, job_steps: JobSteps
) -> None:
    client = await start_jobs_on(pubsub_topic)
    trigger = client.app[PUBSUB_TRIGGER]
    await pubsub_topic.publish(job="deleteEverything")
    await wait_while_subscribed(trigger, trigger.wait_settled(1))

    await client.close()
    assert job_steps.runs == []
    assert await pubsub_topic.unacknowledged() == []


async def test_message_for_a_job_already_running_is_acknowledged(
    start_jobs_on: Any, pubsub_topic: PubSubTopic, job_steps: JobSteps
) -> None:
    client = await start_jobs_on(pubsub_topic)
    trigger = client.app[PUBSUB_TRIGGER]
    release = job_steps.hold(JobName.INDEX_MANIFESTS)
    by_http = asyncio.create_task(client.post("/internal/indexManifests"))
    await job_steps.wait_runs(JobName.INDEX_MANIFESTS)

    await pubsub_topic.publish(job="indexManifests")
    await wait_while_subscribed(trigger, trigger.wait_settled(1))
    release.set()
    assert (await by_http).status == 204

    await client.close()
    assert job_steps.runs == [JobName.INDEX_MANIFESTS]  # once: the message found it running
    assert await pubsub_topic.unacknowledged() == []


async def test_shutdown_interrupts_a_long_job_and_leaves_its_message_for_redelivery(
    start_jobs_on: Any, pubsub_topic: PubSubTopic, job_steps: JobSteps
) -> None:
    job_steps.hold(JobName.RUN_BLOB_GC)  # never released
    client = await start_jobs_on(pubsub_topic, shutdown_timeout=0.05)
    message_id = await pubsub_topic.publish(job="runBlobGC")
    await wait_while_subscribed(
        client.app[PUBSUB_TRIGGER], job_steps.wait_runs(JobName.RUN_BLOB_GC)
    )

    async with asyncio.timeout(30):  # the streaming pull stops cleanly and promptly
        await client.close()
    assert [message.message_id for message in await pubsub_topic.unacknowledged()] == [message_id]


async def test_missing_subscription_is_reported_and_picked_up_once_created(
    start_jobs_on: Any, pubsub_topic: PubSubTopic, job_steps: JobSteps
) -> None:
    later = pubsub_topic.subscription + "-later"
    client = await start_jobs_on(pubsub_topic, pubsub_subscription=later)
    trigger = client.app[PUBSUB_TRIGGER]
    async with asyncio.timeout(WAIT_TIMEOUT):
        await trigger.stream_failed.wait()
    assert isinstance(trigger.last_error, NotFound)

    # The trigger subscribes again (backing off), so creating the subscription later is enough.
    await asyncio.to_thread(pubsub_topic.create_subscription, later)
    await pubsub_topic.publish(job="runBlobGC")
    await job_steps.wait_runs(JobName.RUN_BLOB_GC)

    await client.close()
    assert await pubsub_topic.unacknowledged(later) == []


async def test_subscriber_takes_one_message_at_a_time(
    start_jobs_on: Any,
    fake_pubsub: FakePubSub,
    fake_pubsub_topic: PubSubTopic,
    job_steps: JobSteps,
) -> None:
    # The flow control a stream asked for is visible on the fake only.
    client = await start_jobs_on(fake_pubsub_topic)
    await fake_pubsub_topic.publish(job="runBlobGC")
    await wait_while_subscribed(
        client.app[PUBSUB_TRIGGER], job_steps.wait_runs(JobName.RUN_BLOB_GC)
    )
    await client.close()
    assert fake_pubsub.stream_limits[fake_pubsub_topic.subscription] == [1]
