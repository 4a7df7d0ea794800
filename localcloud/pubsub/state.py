"""The emulator's state: topics, subscriptions, messages in queue, outstanding acks, retries, dead letters.

The Broker routes each published message to the queue of every subscription on its topic; each
Subscription hands messages out (pull, or its Pusher) and takes them back when an ack deadline
passes or a push fails, for a retry after the retry policy's backoff or the dead-letter topic.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import os
import threading
import time
from typing import Iterable

import grpc
from google.pubsub_v1 import types as t

from ..push_formats import PushedMessage
from .config import (
    DEFAULT_ACK_DEADLINE,
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    DELETED_TOPIC,
    MAX_MESSAGE_BYTES,
    SUB_NAME,
    TOPIC_NAME,
    RpcError,
    SubscriptionConfig,
    check_name,
    check_project,
)
from .push import Pusher

log = logging.getLogger("localcloud.pubsub")


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Delivery:
    """One message's life on one subscription: how often it was attempted."""

    __slots__ = ("message", "attempts", "topic")

    def __init__(self, message: PushedMessage, topic: str) -> None:
        self.message = message
        self.attempts = 0
        self.topic = topic


class Subscription:
    """Queue and delivery state of one subscription."""

    def __init__(self, broker: Broker, proto: t.Subscription, config: SubscriptionConfig) -> None:
        self.broker = broker
        self.proto = proto
        self.config = config
        self.cond = threading.Condition()
        self.ready: list[tuple[float, int, Delivery]] = []
        self.outstanding: dict[str, tuple[Delivery, float]] = {}
        self.closed = False
        self.pusher = Pusher(self)

    @property
    def name(self) -> str:
        return self.proto.name

    def enqueue(self, delivery: Delivery, delay: float = 0.0) -> None:
        with self.cond:
            if self.closed:
                return
            heapq.heappush(self.ready, (time.monotonic() + delay, next(self.broker.sequence), delivery))
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True  # the push workers see it and end
            self.ready.clear()
            self.outstanding.clear()
            self.cond.notify_all()

    def failed(self, delivery: Delivery) -> None:
        """A delivery was nacked, timed out or refused: dead-letter it or schedule a retry."""
        config = self.config
        if config.max_attempts and delivery.attempts >= config.max_attempts:
            self.broker.dead_letter(self, delivery)
            return
        self.enqueue(delivery, config.backoff(delivery.attempts))

    # -- pull ---------------------------------------------------------------------------------

    def _reclaim_expired(self, now: float) -> list[Delivery]:
        expired = [ack_id for ack_id, (_, deadline) in self.outstanding.items() if deadline <= now]
        return [self.outstanding.pop(ack_id)[0] for ack_id in expired]

    def pull(self, max_messages: int, wait: float) -> list[t.ReceivedMessage]:
        deadline = time.monotonic() + wait
        received: list[t.ReceivedMessage] = []
        while True:
            with self.cond:
                now = time.monotonic()
                expired = self._reclaim_expired(now)
                if not expired:
                    while self.ready and self.ready[0][0] <= now and len(received) < max_messages:
                        delivery = heapq.heappop(self.ready)[2]
                        delivery.attempts += 1
                        ack_id = f"{self.name.rsplit('/', 1)[-1]}/{delivery.message.message_id}/{next(self.broker.sequence)}"
                        self.outstanding[ack_id] = (delivery, now + self.proto.ack_deadline_seconds)
                        received.append(
                            t.ReceivedMessage(
                                ack_id=ack_id,
                                message=self.broker.to_proto(delivery.message),
                                delivery_attempt=delivery.attempts if self.config.max_attempts else 0,
                            )
                        )
                    if received or now >= deadline or self.closed:
                        return received
                    wakeups = [deadline] + [d for _, d in self.outstanding.values()]
                    if self.ready:
                        wakeups.append(self.ready[0][0])
                    self.cond.wait(max(0.0, min(wakeups) - now))
                    continue
            for delivery in expired:  # outside the lock: may publish to a dead-letter topic
                self.failed(delivery)

    def acknowledge(self, ack_ids: Iterable[str]) -> None:
        with self.cond:
            for ack_id in ack_ids:
                self.outstanding.pop(ack_id, None)

    def modify_ack_deadline(self, ack_ids: Iterable[str], seconds: int) -> None:
        nacked = []
        with self.cond:
            for ack_id in ack_ids:
                if ack_id not in self.outstanding:
                    continue
                delivery, _ = self.outstanding[ack_id]
                if seconds == 0:
                    nacked.append(self.outstanding.pop(ack_id)[0])
                else:
                    self.outstanding[ack_id] = (delivery, time.monotonic() + seconds)
        for delivery in nacked:
            self.failed(delivery)


class Broker:
    """Topics, subscriptions and message routing; the gRPC servicers are thin layers on it."""

    def __init__(self, default_concurrency: int | None = None) -> None:
        self.lock = threading.RLock()
        self.topics: dict[str, t.Topic] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.sequence = itertools.count(1)
        self.message_ids = itertools.count(1)
        self.default_concurrency = default_concurrency or os.cpu_count() or 1

    @staticmethod
    def to_proto(message: PushedMessage) -> t.PubsubMessage:
        return t.PubsubMessage(
            data=message.data,
            attributes=dict(message.attributes),
            message_id=message.message_id,
            publish_time=dt.datetime.strptime(message.publish_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc),
            ordering_key=message.ordering_key,
        )

    # -- topics -------------------------------------------------------------------------------

    def create_topic(self, topic: t.Topic) -> t.Topic:
        check_name(TOPIC_NAME, topic.name, "topic")
        with self.lock:
            if topic.name in self.topics:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Topic already exists: {topic.name}")
            self.topics[topic.name] = topic
        return topic

    def get_topic(self, name: str) -> t.Topic:
        check_name(TOPIC_NAME, name, "topic")
        with self.lock:
            if name not in self.topics:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Topic not found: {name}")
            return self.topics[name]

    def list_topics(self, project: str) -> list[t.Topic]:
        check_project(project)
        with self.lock:
            return [self.topics[n] for n in sorted(self.topics) if n.startswith(project + "/topics/")]

    def list_topic_subscriptions(self, topic: str) -> list[str]:
        self.get_topic(topic)
        with self.lock:
            return sorted(n for n, s in self.subscriptions.items() if s.proto.topic == topic)

    def delete_topic(self, name: str) -> None:
        self.get_topic(name)
        with self.lock:
            del self.topics[name]
            # As Pub/Sub: subscriptions stay, detached from a topic that no longer exists.
            for sub in self.subscriptions.values():
                if sub.proto.topic == name:
                    sub.proto.topic = DELETED_TOPIC

    def publish(self, topic: str, messages: list[t.PubsubMessage]) -> list[str]:
        self.get_topic(topic)
        if not messages:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "publish request has no messages")
        total = 0
        for message in messages:
            if not message.data and not message.attributes:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "a message needs data or at least one attribute")
            for key, value in message.attributes.items():
                if not key or len(key.encode()) > 256 or len(value.encode()) > 1024:
                    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"attribute {key[:40]!r}: key must be 1..256 bytes, value at most 1024")
                if key.startswith("goog"):
                    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"attribute keys may not start with 'goog': {key!r}")
            total += len(message.data)
        if total > MAX_MESSAGE_BYTES:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"publish request carries {total} bytes; the limit is {MAX_MESSAGE_BYTES}")
        return [self._route(topic, m.data, dict(m.attributes), m.ordering_key) for m in messages]

    def _route(self, topic: str, data: bytes, attributes: dict[str, str], ordering_key: str = "") -> str:
        now = _rfc3339(dt.datetime.now(dt.timezone.utc))
        with self.lock:
            message = PushedMessage(str(next(self.message_ids)), data, attributes, now, ordering_key)
            targets = [s for s in self.subscriptions.values() if s.proto.topic == topic]
        for sub in targets:
            # As Pub/Sub: a message the filter rejects is acknowledged at once, never delivered.
            if sub.config.filter(attributes):
                sub.enqueue(Delivery(message, topic))
        return message.message_id

    def dead_letter(self, sub: Subscription, delivery: Delivery) -> None:
        target = sub.config.dead_letter_topic
        _, project, _, sub_id = sub.name.split("/")
        attributes = dict(delivery.message.attributes)
        attributes.update(
            {
                "CloudPubSubDeadLetterSourceDeliveryCount": str(delivery.attempts),
                "CloudPubSubDeadLetterSourceSubscription": sub_id,
                "CloudPubSubDeadLetterSourceSubscriptionProject": project,
                "CloudPubSubDeadLetterSourceTopicPublishTime": delivery.message.publish_time,
            }
        )
        with self.lock:
            exists = target in self.topics
        if not exists:
            log.error("%s: dead-letter topic %s does not exist; message %s dropped", sub.name, target, delivery.message.message_id)
            return
        new_id = self._route(target, delivery.message.data, attributes)
        log.warning(
            "%s: message %s dead-lettered to %s as %s after %d attempts",
            sub.name, delivery.message.message_id, target, new_id, delivery.attempts,
        )

    # -- subscriptions ------------------------------------------------------------------------

    def create_subscription(self, proto: t.Subscription) -> t.Subscription:
        check_name(SUB_NAME, proto.name, "subscription")
        check_name(TOPIC_NAME, proto.topic, "topic")
        if proto.ack_deadline_seconds == 0:
            proto.ack_deadline_seconds = DEFAULT_ACK_DEADLINE
        if not 10 <= proto.ack_deadline_seconds <= 600:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ack_deadline_seconds must be between 10 and 600, got {proto.ack_deadline_seconds}",
            )
        if "dead_letter_policy" in proto:
            policy = proto.dead_letter_policy
            if policy.max_delivery_attempts == 0:
                policy.max_delivery_attempts = DEFAULT_MAX_DELIVERY_ATTEMPTS
            if not 5 <= policy.max_delivery_attempts <= 100:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"max_delivery_attempts must be between 5 and 100, got {policy.max_delivery_attempts}",
                )
            check_name(TOPIC_NAME, policy.dead_letter_topic, "dead-letter topic")
        if proto.enable_message_ordering:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "message ordering is not supported by localcloud")
        config = SubscriptionConfig(proto, self.default_concurrency)
        with self.lock:
            if proto.name in self.subscriptions:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Subscription already exists: {proto.name}")
            if proto.topic not in self.topics:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Topic not found: {proto.topic}")
            if config.dead_letter_topic and config.dead_letter_topic not in self.topics:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Dead-letter topic not found: {config.dead_letter_topic}")
            sub = Subscription(self, proto, config)
            self.subscriptions[proto.name] = sub
        sub.pusher.start()
        return proto

    def get_subscription(self, name: str) -> Subscription:
        check_name(SUB_NAME, name, "subscription")
        with self.lock:
            if name not in self.subscriptions:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist: {name}")
            return self.subscriptions[name]

    def list_subscriptions(self, project: str) -> list[t.Subscription]:
        check_project(project)
        with self.lock:
            return [self.subscriptions[n].proto for n in sorted(self.subscriptions) if n.startswith(project + "/subscriptions/")]

    def delete_subscription(self, name: str) -> None:
        sub = self.get_subscription(name)
        with self.lock:
            self.subscriptions.pop(name, None)
        sub.close()

    def modify_push_config(self, name: str, push_config: t.PushConfig) -> None:
        sub = self.get_subscription(name)
        proto = t.Subscription(sub.proto)
        proto.push_config = push_config
        sub.config = SubscriptionConfig(proto, self.default_concurrency)
        sub.proto = proto
        sub.pusher.start()

    def close(self) -> None:
        with self.lock:
            subs = list(self.subscriptions.values())
            self.subscriptions.clear()
        for sub in subs:
            sub.close()
