"""A small Pub/Sub server for tests, speaking the real gRPC protocol on loopback.

The real google-cloud-pubsub client talks to it through PUBSUB_EMULATOR_HOST, as it would to
Google's emulator. It serves what the jobs service and its tests use: topics, subscriptions,
Publish, StreamingPull (honouring the client's max_outstanding_messages), the unary
Acknowledge and ModifyAckDeadline the subscriber sends (a deadline of 0 is a nack: the message
is delivered again at once), and Pull, CreateSnapshot and Seek, with which tests find out which
messages are still unacknowledged. An unknown topic or subscription answers NOT_FOUND, so a
misconfigured test fails at once instead of waiting.

No servicer classes ship with google-cloud-pubsub: the handlers are registered by method name
with `grpc.method_handlers_generic_handler`, and the proto-plus message classes of
`google.pubsub_v1.types` (de)serialize the wire bytes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from google.pubsub_v1.types import pubsub

EMPTY = empty_pb2.Empty()
DEFAULT_ACK_DEADLINE = 10


@dataclass
class _Subscription:
    name: str
    topic: str
    ack_deadline: int
    available: deque[pubsub.PubsubMessage] = field(default_factory=deque)
    # ack id -> (message, monotonic deadline, stream id that holds it or None for Pull)
    leased: dict[str, tuple[pubsub.PubsubMessage, float, int | None]] = field(default_factory=dict)


class FakePubSub:
    """The server's state and its gRPC handlers; `start()` listens on a loopback port."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.subscriptions: dict[str, _Subscription] = {}
        self.snapshots: dict[str, list[pubsub.PubsubMessage]] = {}
        # Message ids the subscriber acknowledged and nacked (ModifyAckDeadline 0), in order.
        self.acknowledged: list[str] = []
        self.nacked: list[str] = []
        # max_outstanding_messages each streaming pull asked for, by subscription.
        self.stream_limits: dict[str, list[int]] = {}
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._server: grpc.Server | None = None
        self.host = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on a free loopback port; returns `127.0.0.1:<port>` for PUBSUB_EMULATOR_HOST."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        server.add_generic_rpc_handlers(self._handlers())
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{port}"
        return self.host

    def stop(self) -> None:
        """Stop serving; open streams end with CANCELLED."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        def unary(
            method: Callable[[Any, grpc.ServicerContext], Any],
            request: Any,
            reply: Callable[[Any], bytes],
        ) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request.deserialize, response_serializer=reply
            )

        empty = empty_pb2.Empty.SerializeToString
        publisher = {
            "CreateTopic": unary(self._create_topic, pubsub.Topic, pubsub.Topic.serialize),
            "Publish": unary(
                self._publish, pubsub.PublishRequest, pubsub.PublishResponse.serialize
            ),
        }
        subscriber = {
            "CreateSubscription": unary(
                self._create_subscription, pubsub.Subscription, pubsub.Subscription.serialize
            ),
            "Acknowledge": unary(self._acknowledge, pubsub.AcknowledgeRequest, empty),
            "ModifyAckDeadline": unary(
                self._modify_ack_deadline, pubsub.ModifyAckDeadlineRequest, empty
            ),
            "Pull": unary(self._pull, pubsub.PullRequest, pubsub.PullResponse.serialize),
            "CreateSnapshot": unary(
                self._create_snapshot, pubsub.CreateSnapshotRequest, pubsub.Snapshot.serialize
            ),
            "Seek": unary(self._seek, pubsub.SeekRequest, pubsub.SeekResponse.serialize),
            "StreamingPull": grpc.stream_stream_rpc_method_handler(
                self._streaming_pull,
                request_deserializer=pubsub.StreamingPullRequest.deserialize,
                response_serializer=pubsub.StreamingPullResponse.serialize,
            ),
        }
        return (
            grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", publisher),
            grpc.method_handlers_generic_handler("google.pubsub.v1.Subscriber", subscriber),
        )

    # -- publisher ---------------------------------------------------------------------------

    def _create_topic(self, topic: pubsub.Topic, context: grpc.ServicerContext) -> pubsub.Topic:
        with self._changed:
            if topic.name in self.topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            self.topics.add(topic.name)
        return pubsub.Topic(name=topic.name)

    def _publish(
        self, request: pubsub.PublishRequest, context: grpc.ServicerContext
    ) -> pubsub.PublishResponse:
        with self._changed:
            if request.topic not in self.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            if any(not message.data and not message.attributes for message in request.messages):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Some messages are empty")
            ids = []
            for message in request.messages:
                published = pubsub.PubsubMessage(
                    data=message.data,
                    attributes=dict(message.attributes),
                    ordering_key=message.ordering_key,
                    message_id=str(next(self._ids)),
                    publish_time=timestamp_pb2.Timestamp(seconds=int(time.time())),
                )
                ids.append(published.message_id)
                for subscription in self.subscriptions.values():
                    if subscription.topic == request.topic:
                        subscription.available.append(published)
            self._changed.notify_all()
        return pubsub.PublishResponse(message_ids=ids)

    # -- subscriber --------------------------------------------------------------------------

    def _create_subscription(
        self, subscription: pubsub.Subscription, context: grpc.ServicerContext
    ) -> pubsub.Subscription:
        with self._changed:
            if subscription.topic not in self.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            if subscription.name in self.subscriptions:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            deadline = subscription.ack_deadline_seconds or DEFAULT_ACK_DEADLINE
            self.subscriptions[subscription.name] = _Subscription(
                subscription.name, subscription.topic, deadline
            )
        return pubsub.Subscription(
            name=subscription.name, topic=subscription.topic, ack_deadline_seconds=deadline
        )

    def _subscription(self, name: str, context: grpc.ServicerContext) -> _Subscription:
        """The subscription called `name`; aborts the call with NOT_FOUND when there is none."""
        found = self.subscriptions.get(name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist: {name}")
        assert found is not None
        return found

    def _acknowledge(
        self, request: pubsub.AcknowledgeRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self._changed:
            subscription = self._subscription(request.subscription, context)
            for ack_id in request.ack_ids:
                # An expired or unknown ack id is ignored, as by the real service.
                lease = subscription.leased.pop(ack_id, None)
                if lease is not None:
                    self.acknowledged.append(lease[0].message_id)
            self._changed.notify_all()
        return EMPTY

    def _modify_ack_deadline(
        self, request: pubsub.ModifyAckDeadlineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self._changed:
            subscription = self._subscription(request.subscription, context)
            for ack_id in request.ack_ids:
                self._set_deadline(subscription, ack_id, request.ack_deadline_seconds)
            self._changed.notify_all()
        return EMPTY

    def _set_deadline(self, subscription: _Subscription, ack_id: str, seconds: int) -> None:
        lease = subscription.leased.get(ack_id)
        if lease is None:
            return
        message, _, stream = lease
        if seconds == 0:  # a nack: deliver again now
            del subscription.leased[ack_id]
            subscription.available.appendleft(message)
            self.nacked.append(message.message_id)
        else:
            subscription.leased[ack_id] = (message, time.monotonic() + seconds, stream)

    def _expire_leases(self, subscription: _Subscription) -> float | None:
        """Return expired messages to the backlog; seconds until the next lease expires."""
        now = time.monotonic()
        for ack_id, (message, deadline, _) in list(subscription.leased.items()):
            if deadline <= now:
                del subscription.leased[ack_id]
                subscription.available.appendleft(message)
        deadlines = [deadline for _, deadline, _ in subscription.leased.values()]
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _lease(
        self, subscription: _Subscription, count: int, stream: int | None
    ) -> list[pubsub.ReceivedMessage]:
        received: list[pubsub.ReceivedMessage] = []
        while subscription.available and len(received) < count:
            message = subscription.available.popleft()
            ack_id = f"{subscription.name}:{next(self._ids)}"
            deadline = time.monotonic() + subscription.ack_deadline
            subscription.leased[ack_id] = (message, deadline, stream)
            received.append(pubsub.ReceivedMessage(ack_id=ack_id, message=message))
        return received

    def _pull(self, request: pubsub.PullRequest, context: grpc.ServicerContext) -> Any:
        with self._changed:
            subscription = self._subscription(request.subscription, context)
            self._expire_leases(subscription)
            received = self._lease(subscription, request.max_messages or 1, None)
        return pubsub.PullResponse(received_messages=received)

    def _create_snapshot(
        self, request: pubsub.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> pubsub.Snapshot:
        with self._changed:
            subscription = self._subscription(request.subscription, context)
            unacknowledged = [message for message, _, _ in subscription.leased.values()]
            self.snapshots[request.name] = [*unacknowledged, *subscription.available]
        return pubsub.Snapshot(name=request.name, topic=subscription.topic)

    def _seek(
        self, request: pubsub.SeekRequest, context: grpc.ServicerContext
    ) -> pubsub.SeekResponse:
        with self._changed:
            subscription = self._subscription(request.subscription, context)
            if request.snapshot not in self.snapshots:
                context.abort(grpc.StatusCode.NOT_FOUND, "Snapshot not found")
            # Every message the snapshot held is unacknowledged again; earlier leases are void.
            subscription.leased.clear()
            subscription.available = deque(self.snapshots[request.snapshot])
            self._changed.notify_all()
        return pubsub.SeekResponse()

    def _streaming_pull(
        self, requests: Iterator[pubsub.StreamingPullRequest], context: grpc.ServicerContext
    ) -> Iterator[pubsub.StreamingPullResponse]:
        first = next(requests, None)
        if first is None:  # cancelled before it began
            return
        stream = next(self._ids)
        with self._changed:
            subscription = self._subscription(first.subscription, context)
            self.stream_limits.setdefault(subscription.name, []).append(
                first.max_outstanding_messages
            )
        limit = first.max_outstanding_messages or 1000
        ended = threading.Event()

        def end() -> None:
            with self._changed:
                ended.set()
                self._changed.notify_all()

        context.add_callback(end)
        # Later requests are heartbeats (and, from older clients, acks): read them aside.
        threading.Thread(target=self._read_stream, args=(requests, subscription, end)).start()
        while True:
            with self._changed:
                received: list[pubsub.ReceivedMessage] = []
                while not ended.is_set() and context.is_active():
                    next_expiry = self._expire_leases(subscription)
                    held = sum(1 for *_, holder in subscription.leased.values() if holder == stream)
                    received = self._lease(subscription, limit - held, stream)
                    if received:
                        break
                    self._changed.wait(timeout=next_expiry)
                if not received:
                    return
            yield pubsub.StreamingPullResponse(received_messages=received)

    def _read_stream(
        self,
        requests: Iterator[pubsub.StreamingPullRequest],
        subscription: _Subscription,
        end: Callable[[], None],
    ) -> None:
        try:
            for request in requests:
                with self._changed:
                    for ack_id in request.ack_ids:
                        lease = subscription.leased.pop(ack_id, None)
                        if lease is not None:
                            self.acknowledged.append(lease[0].message_id)
                    for ack_id, seconds in zip(
                        request.modify_deadline_ack_ids,
                        request.modify_deadline_seconds,
                        strict=False,
                    ):
                        self._set_deadline(subscription, ack_id, seconds)
                    self._changed.notify_all()
        except grpc.RpcError:
            pass  # the stream was cancelled
        finally:
            end()
