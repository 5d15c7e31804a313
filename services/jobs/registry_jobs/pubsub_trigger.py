"""Pub/Sub trigger: pull PUBSUB_SUBSCRIPTION and run the job each message names.

The message names its job in the `job` attribute or in a JSON body `{"job": "runBlobGC"}` (the
attribute wins); an empty body, `{}`, or no `job` at all means `runAll`. A message is
acknowledged once its job completed, or found that job already running elsewhere; it is nacked
when the job failed, so Pub/Sub delivers it again (jobs are idempotent, so a repeated delivery
is harmless). A message naming no known job is logged and acknowledged, so it does not come
back forever.

google-cloud-pubsub's streaming pull calls back on its own threads. The callback hands the job
to the aiohttp event loop and blocks until it ends, so with flow control of one message the
next message is only taken once this one is settled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import threading
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.futures import StreamingPullFuture
from google.cloud.pubsub_v1.subscriber.message import Message

from registry_common.http import SETTINGS
from registry_common.jobs.base import JobFailed, JobName, JobOutcome
from registry_common.settings import ConfigError
from registry_jobs.runs import JOB_RUNS, JobRuns, job_context

JOB_ATTRIBUTE = "job"
SUBSCRIPTION_PATH = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
# Pub/Sub keeps extending the lease of a message while its job runs, up to this long; a job
# running longer is delivered again and finds itself already running.
MAX_JOB_LEASE = timedelta(hours=4)
# After the stream failed for good (subscription missing, permission denied), subscribe again
# after this many seconds, doubling up to the maximum.
RESUBSCRIBE_FIRST_DELAY = 1.0
RESUBSCRIBE_MAX_DELAY = 300.0
# How long closing waits for the stream's threads to stop once no job runs any more.
STREAM_STOP_TIMEOUT = 30.0

log = structlog.get_logger("registry.jobs.pubsub")


class UnknownJob(ValueError):
    """A message that names no known job; `name` is what it named (shortened)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown job {name!r}")
        self.name = name


def check_subscription_path(subscription: str) -> None:
    """ConfigError unless `subscription` is a full `projects/<p>/subscriptions/<s>` path."""
    if not SUBSCRIPTION_PATH.match(subscription):
        raise ConfigError(
            "PUBSUB_SUBSCRIPTION", "expected projects/<project>/subscriptions/<subscription>"
        )


def job_named_by(data: bytes, attributes: Mapping[str, str]) -> JobName:
    """The job a message asks for; UnknownJob when it names none that exists."""
    name: Any = attributes.get(JOB_ATTRIBUTE)
    if name is None and data.strip():
        try:
            body = json.loads(data)
        except ValueError:
            raise UnknownJob(data[:100].decode(errors="replace")) from None
        if not isinstance(body, dict):
            raise UnknownJob(str(body)[:100])
        name = body.get(JOB_ATTRIBUTE)
    if name is None:
        return JobName.RUN_ALL
    try:
        return JobName(name)
    except ValueError:
        raise UnknownJob(str(name)[:100]) from None


class PubSubTrigger:
    """A streaming pull on one subscription, running each message's job on the app's loop."""

    def __init__(self, subscription: str, runs: JobRuns, app: web.Application) -> None:
        self.subscription = subscription
        self._runs = runs
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: pubsub_v1.SubscriberClient | None = None
        self._stream: StreamingPullFuture | None = None
        self._resubscribe: asyncio.Task[None] | None = None
        self._resubscribe_delay = RESUBSCRIBE_FIRST_DELAY
        self._stopping = False
        self._stream_lock = threading.Lock()
        # Set (on the loop) each time the stream fails for good; tests wait on it to fail fast.
        self.stream_failed = asyncio.Event()
        self.last_error: BaseException | None = None
        # Messages acked or nacked so far (counted on the loop), and a wake-up for waiters.
        self.settled = 0
        self._settled_changed = asyncio.Event()

    async def start(self) -> None:
        """Create the client and open the streaming pull."""
        self._loop = asyncio.get_running_loop()
        # Creating the client looks up credentials: blocking, so off the loop.
        self._client = await asyncio.to_thread(pubsub_v1.SubscriberClient)
        await self._subscribe()

    async def _subscribe(self) -> None:
        if await asyncio.to_thread(self._open_stream):
            log.info("pubsub_subscribed", subscription=self.subscription)

    def _open_stream(self) -> bool:
        """Worker thread: open the streaming pull, unless stopping began (the lock makes
        `stop_pulling` either see the new stream or keep it from opening)."""
        assert self._client is not None
        flow_control = pubsub_v1.types.FlowControl(
            max_messages=1, max_lease_duration=MAX_JOB_LEASE.total_seconds()
        )
        with self._stream_lock:
            if self._stopping:
                return False
            self._stream = self._client.subscribe(
                self.subscription,
                self._on_message,
                flow_control=flow_control,
                # Cancelling then waits for the running callback, so its ack or nack is sent.
                await_callbacks_on_shutdown=True,
            )
            self._stream.add_done_callback(self._on_stream_done)
        return True

    def _on_stream_done(self, stream: Any) -> None:
        """Called on a subscriber thread when the streaming pull ended."""
        if self._stopping or stream.cancelled() or self._loop is None:
            return
        error = stream.exception()
        log.error(
            "pubsub_stream_failed",
            subscription=self.subscription,
            error_type=type(error).__name__,
            error=str(error),
        )
        self._loop.call_soon_threadsafe(self._stream_failed, error)

    def _stream_failed(self, error: BaseException | None) -> None:
        self.last_error = error
        self.stream_failed.set()
        if self._stopping:
            return
        delay = self._resubscribe_delay
        self._resubscribe_delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)
        self._resubscribe = asyncio.create_task(self._subscribe_after(delay))

    async def _subscribe_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._subscribe()
        except Exception as exc:
            log.exception("pubsub_subscribe_failed", subscription=self.subscription)
            self._stream_failed(exc)

    def _on_message(self, message: Message) -> None:
        """Subscriber thread: run the message's job, then ack or nack. Never raises (an error
        escaping a callback would end the whole streaming pull)."""
        try:
            settle = self._handle(message)
        except BaseException:
            log.exception("pubsub_message_failed", message_id=message.message_id)
            settle = "nack"
        if settle == "ack":
            message.ack()
        else:
            message.nack()
        log.info("pubsub_message_settled", message_id=message.message_id, settled=settle)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._count_settled)

    def _count_settled(self) -> None:
        self.settled += 1
        self._settled_changed.set()

    async def wait_settled(self, count: int) -> None:
        """Wait until `count` messages were acked or nacked since start."""
        while self.settled < count:
            self._settled_changed.clear()
            await self._settled_changed.wait()

    def _handle(self, message: Message) -> str:
        try:
            job = job_named_by(message.data, message.attributes)
        except UnknownJob as exc:
            log.warning("pubsub_unknown_job", message_id=message.message_id, job=exc.name)
            return "ack"
        assert self._loop is not None
        self._resubscribe_delay = RESUBSCRIBE_FIRST_DELAY  # the stream works
        running = asyncio.run_coroutine_threadsafe(self._run(job, message.message_id), self._loop)
        try:
            outcome = running.result()
        except JobFailed:
            return "nack"  # the runner logged the failure
        except (Exception, concurrent.futures.CancelledError) as exc:
            log.warning("pubsub_job_not_run", job=job.value, reason=type(exc).__name__)
            return "nack"
        if outcome is JobOutcome.ALREADY_RUNNING:
            log.info("pubsub_job_already_running", job=job.value)
        return "ack"

    async def _run(self, job: JobName, message_id: str) -> JobOutcome:
        structlog.contextvars.bind_contextvars(message_id=message_id)
        return await self._runs.run(job_context(self._app), job, trigger="pubsub")

    def stop_pulling(self) -> None:
        """Stop taking messages (the running callback, if any, still settles its message)."""
        with self._stream_lock:
            self._stopping = True
            stream = self._stream
        if self._resubscribe is not None:
            self._resubscribe.cancel()
        if stream is not None:
            stream.cancel()

    async def close(self) -> None:
        """Stop pulling, wait for the stream's threads to end and close the client."""
        self.stop_pulling()
        if self._stream is not None:
            try:
                await asyncio.to_thread(self._stream.result, STREAM_STOP_TIMEOUT)
            except concurrent.futures.TimeoutError:
                log.warning("pubsub_stream_stop_timeout", subscription=self.subscription)
            except Exception as exc:  # it had failed; that was logged when it happened
                log.debug("pubsub_stream_closed_after_failure", error_type=type(exc).__name__)
        if self._client is not None:
            await asyncio.to_thread(self._client.close)


PUBSUB_TRIGGER = web.AppKey("pubsub_trigger", PubSubTrigger)


async def pubsub_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the Pub/Sub trigger for the app's lifetime."""
    subscription = app[SETTINGS].pubsub_subscription
    assert subscription
    trigger = PubSubTrigger(subscription, app[JOB_RUNS], app)
    app[PUBSUB_TRIGGER] = trigger
    await trigger.start()
    yield
    await trigger.close()


async def stop_pulling(app: web.Application) -> None:
    """on_shutdown: take no more messages while the running jobs drain."""
    trigger = app.get(PUBSUB_TRIGGER)
    if trigger is not None:
        trigger.stop_pulling()
