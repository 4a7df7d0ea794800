"""A compact Pub/Sub emulator (gRPC) with push delivery, retry backoff, dead-lettering and push flow control.

The local cloud's builtin emulator, used when Google's (gcloud) is not installed or not chosen.
It speaks google.pubsub.v1 with google-cloud-pubsub's own message types, so the unchanged
PublisherClient / SubscriberClient work against it through PUBSUB_EMULATOR_HOST. Run it with
``python -m localcloud.pubsub_emulator --port N``. Where it differs from Pub/Sub and from
Google's emulator is listed in the README's section on the local cloud.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import ipaddress
import itertools
import logging
import os
import re
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Callable, Iterable
from urllib.parse import urlsplit

import grpc
import urllib3
from google.protobuf import empty_pb2
from google.pubsub_v1 import types as t

from .pubsub_filter import compile_filter
from .push_formats import FORMAT_ATTRIBUTE, FORMATS, PUBSUB, PushedMessage, build_push

log = logging.getLogger("localcloud.pubsub")

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
GRPC_MESSAGE_LIMIT = 20 * 1024 * 1024  # above Pub/Sub's 10 MB request limit, with room for framing
DEFAULT_ACK_DEADLINE = 10
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 600.0
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
MAX_PULL_WAIT = 2.0
# What acknowledges a push, as the Pub/Sub docs list it (Google's emulator takes 203, not 202).
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
# Push flow control ("delivery rate" in the Pub/Sub docs): the number of pushes in flight, the
# push window, starts small, grows by one per success (doubling per round trip, a slow start) up
# to the subscription's concurrency, and halves on each failure. After PUSH_BACKOFF_AFTER
# failures in a row the subscription also stops pushing for a while ("push backoff"): 100 ms,
# doubling per further failure, at most 60 s.
INITIAL_PUSH_WINDOW = 4
PUSH_BACKOFF_AFTER = 3
PUSH_BACKOFF_MIN = 0.1
PUSH_BACKOFF_MAX = 60.0

# Endpoint settings real Pub/Sub does not have; all live in push_config.attributes.
CONCURRENCY_ATTRIBUTE = "x-localcloud-max-concurrency"
ACK_DEADLINE_ATTRIBUTE = "x-localcloud-ack-deadline-seconds"
_KNOWN_PUSH_ATTRIBUTES = {FORMAT_ATTRIBUTE, CONCURRENCY_ATTRIBUTE, ACK_DEADLINE_ATTRIBUTE, "x-goog-version"}

_ID = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
_TOPIC_NAME = re.compile(rf"^projects/([a-z][a-z0-9\-]{{4,28}}[a-z0-9]|[A-Za-z0-9\-_.:]+)/topics/({_ID})$")
_SUB_NAME = re.compile(rf"^projects/([a-z][a-z0-9\-]{{4,28}}[a-z0-9]|[A-Za-z0-9\-_.:]+)/subscriptions/({_ID})$")
_PROJECT_NAME = re.compile(r"^projects/([A-Za-z0-9\-_.:]+)$")
DELETED_TOPIC = "_deleted-topic_"


class RpcError(Exception):
    """An error answered to the client with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _check_name(pattern: re.Pattern, name: str, kind: str) -> None:
    match = pattern.match(name)
    if match is None:
        raise RpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid {kind} name {name!r}: expected projects/PROJECT/{pattern.pattern.split('/')[-2]}/ID, the ID "
            "3-255 characters of letters, digits and -_.~+% starting with a letter",
        )
    if match.group(2).lower().startswith("goog"):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{kind} id may not start with 'goog': {name!r}")


def _seconds(duration: dt.timedelta | None, default: float) -> float:
    return default if duration is None else duration.total_seconds()


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Delivery:
    """One message's life on one subscription: how often it was attempted."""

    __slots__ = ("message", "attempts", "topic")

    def __init__(self, message: PushedMessage, topic: str) -> None:
        self.message = message
        self.attempts = 0
        self.topic = topic


class _SubscriptionConfig:
    """The parts of a Subscription the delivery loop reads, validated once."""

    def __init__(self, sub: t.Subscription, default_concurrency: int) -> None:
        push = sub.push_config
        self.endpoint = push.push_endpoint
        attrs = dict(push.attributes)
        unknown = sorted(k for k in attrs if k.startswith("x-") and k not in _KNOWN_PUSH_ATTRIBUTES)
        if unknown:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown push_config attributes: {unknown}")
        self.format = attrs.get(FORMAT_ATTRIBUTE, PUBSUB)
        if self.format not in FORMATS:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{FORMAT_ATTRIBUTE} must be one of {', '.join(FORMATS)}, got {self.format!r}",
            )
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"push_endpoint is not an http(s) URL: {self.endpoint!r}")
            # An offline tool: never POST anywhere but this machine.
            if not _is_loopback(parts.hostname):
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"push_endpoint must be on this machine (loopback), got host {parts.hostname!r}",
                )
        if "no_wrapper" in push:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "push_config.no_wrapper is not supported by localcloud")
        self.concurrency = self._positive_int(attrs, CONCURRENCY_ATTRIBUTE, default_concurrency)
        self.ack_deadline = float(sub.ack_deadline_seconds)
        if ACK_DEADLINE_ATTRIBUTE in attrs:
            try:
                self.ack_deadline = float(attrs[ACK_DEADLINE_ATTRIBUTE])
            except ValueError:
                self.ack_deadline = -1.0
            if not 0 < self.ack_deadline <= 600:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{ACK_DEADLINE_ATTRIBUTE} must be a number of seconds in (0, 600], got {attrs[ACK_DEADLINE_ATTRIBUTE]!r}",
                )
        retry = sub.retry_policy if "retry_policy" in sub else None
        self.min_backoff = _seconds(retry.minimum_backoff if retry and "minimum_backoff" in retry else None, DEFAULT_MIN_BACKOFF)
        self.max_backoff = _seconds(retry.maximum_backoff if retry and "maximum_backoff" in retry else None, DEFAULT_MAX_BACKOFF)
        if not (0 <= self.min_backoff <= 600 and 0 <= self.max_backoff <= 600):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "retry_policy backoffs must be within 0..600 s")
        if self.min_backoff > self.max_backoff:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "retry_policy.minimum_backoff exceeds maximum_backoff")
        dead = sub.dead_letter_policy if "dead_letter_policy" in sub else None
        self.dead_letter_topic = dead.dead_letter_topic if dead else ""
        self.max_attempts = (dead.max_delivery_attempts or DEFAULT_MAX_DELIVERY_ATTEMPTS) if dead else 0
        try:
            self.filter = compile_filter(sub.filter)
        except ValueError as exc:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    @staticmethod
    def _positive_int(attrs: dict, key: str, default: int) -> int:
        if key not in attrs:
            return default
        value = attrs[key]
        if not value.isdigit() or int(value) < 1:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{key} must be a positive integer, got {value!r}")
        return int(value)

    def backoff(self, attempts: int) -> float:
        """Exponential backoff after the given number of failed attempts, within the retry policy."""
        return min(self.max_backoff, self.min_backoff * (2 ** max(0, attempts - 1)))


class _Subscription:
    """Queue and delivery state of one subscription."""

    def __init__(self, broker: "Broker", proto: t.Subscription, config: _SubscriptionConfig) -> None:
        self.broker = broker
        self.proto = proto
        self.config = config
        self.cond = threading.Condition()
        self.ready: list[tuple[float, int, _Delivery]] = []
        self.outstanding: dict[str, tuple[_Delivery, float]] = {}
        self.closed = False
        self.generation = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.http: urllib3.PoolManager | None = None
        # Push flow control (see INITIAL_PUSH_WINDOW).
        self.window = min(INITIAL_PUSH_WINDOW, config.concurrency)
        self.failures_in_a_row = 0
        self.paused_until = 0.0

    @property
    def name(self) -> str:
        return self.proto.name

    def enqueue(self, delivery: _Delivery, delay: float = 0.0) -> None:
        with self.cond:
            if self.closed:
                return
            heapq.heappush(self.ready, (time.monotonic() + delay, next(self.broker.sequence), delivery))
            self.cond.notify_all()

    # -- push ---------------------------------------------------------------------------------

    def start_push(self) -> None:
        """(Re)start the push workers: as many as the concurrency limit, so it is never exceeded."""
        with self.cond:
            self.generation += 1
            generation = self.generation
            self.cond.notify_all()
        if not self.config.endpoint:
            return
        with self.cond:
            self.window = min(max(1, self.window), self.config.concurrency)
        self.http = urllib3.PoolManager(maxsize=self.config.concurrency, retries=False)
        for index in range(self.config.concurrency):
            worker = threading.Thread(
                target=self._push_loop, args=(generation,), name=f"push-{self.name.rsplit('/', 1)[-1]}-{index}", daemon=True
            )
            worker.start()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.generation += 1
            self.ready.clear()
            self.outstanding.clear()
            self.cond.notify_all()

    def _next_ready(self, generation: int) -> _Delivery | None:
        with self.cond:
            while True:
                if self.closed or self.generation != generation:
                    return None
                now = time.monotonic()
                if self.in_flight >= self.window:
                    self.cond.wait()  # the push window is full: a finished push wakes us
                    continue
                if now < self.paused_until:
                    self.cond.wait(self.paused_until - now)  # push backoff
                    continue
                if self.ready and self.ready[0][0] <= now:
                    delivery = heapq.heappop(self.ready)[2]
                    delivery.attempts += 1
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    return delivery
                self.cond.wait(self.ready[0][0] - now if self.ready else None)

    def _push_loop(self, generation: int) -> None:
        while True:
            delivery = self._next_ready(generation)
            if delivery is None:
                return
            ok = False
            try:
                ok = self._post(delivery)  # no lock held: a slow endpoint must not stall anything else
            finally:
                self._push_done(ok)
            if not ok:
                self.failed(delivery)

    def _push_done(self, ok: bool) -> None:
        """Adjust the push window after one push (flow control) and wake the push workers."""
        with self.cond:
            self.in_flight -= 1
            if ok:
                self.failures_in_a_row = 0
                self.window = min(self.config.concurrency, self.window + 1)
            else:
                self.failures_in_a_row += 1
                self.window = max(1, self.window // 2)
                if self.failures_in_a_row >= PUSH_BACKOFF_AFTER:
                    pause = min(PUSH_BACKOFF_MAX, PUSH_BACKOFF_MIN * 2 ** (self.failures_in_a_row - PUSH_BACKOFF_AFTER))
                    self.paused_until = time.monotonic() + pause
            self.cond.notify_all()

    def _post(self, delivery: _Delivery) -> bool:
        config = self.config
        attempt = delivery.attempts if config.max_attempts else None
        try:
            headers, body = build_push(config.format, delivery.message, self.name, delivery.topic, attempt)
        except ValueError as exc:
            log.error("%s: cannot build %s push for message %s: %s", self.name, config.format, delivery.message.message_id, exc)
            return False
        try:
            response = self.http.request(
                "POST",
                config.endpoint,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=config.ack_deadline),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            log.info("%s: message %s attempt %d: no answer (%s)", self.name, delivery.message.message_id, delivery.attempts, exc)
            return False
        if response.status in ACK_STATUSES:
            log.debug("%s: message %s attempt %d: HTTP %d", self.name, delivery.message.message_id, delivery.attempts, response.status)
            return True
        log.info(
            "%s: message %s attempt %d: HTTP %d", self.name, delivery.message.message_id, delivery.attempts, response.status
        )
        return False

    def failed(self, delivery: _Delivery) -> None:
        """A delivery was nacked, timed out or refused: dead-letter it or schedule a retry."""
        config = self.config
        if config.max_attempts and delivery.attempts >= config.max_attempts:
            self.broker.dead_letter(self, delivery)
            return
        self.enqueue(delivery, config.backoff(delivery.attempts))

    # -- pull ---------------------------------------------------------------------------------

    def _reclaim_expired(self, now: float) -> list[_Delivery]:
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
        self.subscriptions: dict[str, _Subscription] = {}
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
        _check_name(_TOPIC_NAME, topic.name, "topic")
        with self.lock:
            if topic.name in self.topics:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Topic already exists: {topic.name}")
            self.topics[topic.name] = topic
        return topic

    def get_topic(self, name: str) -> t.Topic:
        _check_name(_TOPIC_NAME, name, "topic")
        with self.lock:
            if name not in self.topics:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Topic not found: {name}")
            return self.topics[name]

    def list_topics(self, project: str) -> list[t.Topic]:
        self._check_project(project)
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
                sub.enqueue(_Delivery(message, topic))
        return message.message_id

    def dead_letter(self, sub: _Subscription, delivery: _Delivery) -> None:
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
        _check_name(_SUB_NAME, proto.name, "subscription")
        _check_name(_TOPIC_NAME, proto.topic, "topic")
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
            _check_name(_TOPIC_NAME, policy.dead_letter_topic, "dead-letter topic")
        if proto.enable_message_ordering:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "message ordering is not supported by localcloud")
        config = _SubscriptionConfig(proto, self.default_concurrency)
        with self.lock:
            if proto.name in self.subscriptions:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Subscription already exists: {proto.name}")
            if proto.topic not in self.topics:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Topic not found: {proto.topic}")
            if config.dead_letter_topic and config.dead_letter_topic not in self.topics:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Dead-letter topic not found: {config.dead_letter_topic}")
            sub = _Subscription(self, proto, config)
            self.subscriptions[proto.name] = sub
        sub.start_push()
        return proto

    def get_subscription(self, name: str) -> _Subscription:
        _check_name(_SUB_NAME, name, "subscription")
        with self.lock:
            if name not in self.subscriptions:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist: {name}")
            return self.subscriptions[name]

    def list_subscriptions(self, project: str) -> list[t.Subscription]:
        self._check_project(project)
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
        sub.config = _SubscriptionConfig(proto, self.default_concurrency)
        sub.proto = proto
        sub.start_push()

    def close(self) -> None:
        with self.lock:
            subs = list(self.subscriptions.values())
            self.subscriptions.clear()
        for sub in subs:
            sub.close()

    @staticmethod
    def _check_project(project: str) -> None:
        if not _PROJECT_NAME.match(project):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid project name {project!r}")


def _rpc(function: Callable, request_type, response_type) -> grpc.RpcMethodHandler:
    def handler(request, context: grpc.ServicerContext):
        try:
            return function(request, context)
        except RpcError as exc:
            context.abort(exc.code, str(exc))

    serializer = response_type.SerializeToString if response_type is empty_pb2.Empty else response_type.serialize
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_type.deserialize, response_serializer=serializer
    )


def _paged(items: list, page_size: int, page_token: str) -> tuple[list, str]:
    start = int(page_token) if page_token.isdigit() else 0
    size = page_size if page_size > 0 else 1000
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def build_handlers(broker: Broker) -> list[grpc.GenericRpcHandler]:
    """The Publisher and Subscriber services over one broker."""
    Empty = empty_pb2.Empty

    def list_topics(req, ctx):
        page, token = _paged(broker.list_topics(req.project), req.page_size, req.page_token)
        return t.ListTopicsResponse(topics=page, next_page_token=token)

    def list_topic_subscriptions(req, ctx):
        page, token = _paged(broker.list_topic_subscriptions(req.topic), req.page_size, req.page_token)
        return t.ListTopicSubscriptionsResponse(subscriptions=page, next_page_token=token)

    def list_subscriptions(req, ctx):
        page, token = _paged(broker.list_subscriptions(req.project), req.page_size, req.page_token)
        return t.ListSubscriptionsResponse(subscriptions=page, next_page_token=token)

    def pull(req, ctx):
        if req.max_messages <= 0:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "max_messages must be positive")
        remaining = ctx.time_remaining()
        wait = 0.0 if req.return_immediately else min(MAX_PULL_WAIT, max(0.0, (remaining or MAX_PULL_WAIT) - 0.2))
        messages = broker.get_subscription(req.subscription).pull(req.max_messages, wait)
        return t.PullResponse(received_messages=messages)

    def modify_ack_deadline(req, ctx):
        if not 0 <= req.ack_deadline_seconds <= 600:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"ack_deadline_seconds must be within 0..600, got {req.ack_deadline_seconds}")
        broker.get_subscription(req.subscription).modify_ack_deadline(req.ack_ids, req.ack_deadline_seconds)
        return Empty()

    def acknowledge(req, ctx):
        broker.get_subscription(req.subscription).acknowledge(req.ack_ids)
        return Empty()

    def delete_topic(req, ctx):
        broker.delete_topic(req.topic)
        return Empty()

    def delete_subscription(req, ctx):
        broker.delete_subscription(req.subscription)
        return Empty()

    def modify_push_config(req, ctx):
        broker.modify_push_config(req.subscription, req.push_config)
        return Empty()

    publisher = {
        "CreateTopic": _rpc(lambda req, ctx: broker.create_topic(req), t.Topic, t.Topic),
        "GetTopic": _rpc(lambda req, ctx: broker.get_topic(req.topic), t.GetTopicRequest, t.Topic),
        "ListTopics": _rpc(list_topics, t.ListTopicsRequest, t.ListTopicsResponse),
        "ListTopicSubscriptions": _rpc(list_topic_subscriptions, t.ListTopicSubscriptionsRequest, t.ListTopicSubscriptionsResponse),
        "DeleteTopic": _rpc(delete_topic, t.DeleteTopicRequest, Empty),
        "Publish": _rpc(
            lambda req, ctx: t.PublishResponse(message_ids=broker.publish(req.topic, list(req.messages))),
            t.PublishRequest,
            t.PublishResponse,
        ),
    }
    subscriber = {
        "CreateSubscription": _rpc(lambda req, ctx: broker.create_subscription(req), t.Subscription, t.Subscription),
        "GetSubscription": _rpc(lambda req, ctx: broker.get_subscription(req.subscription).proto, t.GetSubscriptionRequest, t.Subscription),
        "ListSubscriptions": _rpc(list_subscriptions, t.ListSubscriptionsRequest, t.ListSubscriptionsResponse),
        "DeleteSubscription": _rpc(delete_subscription, t.DeleteSubscriptionRequest, Empty),
        "ModifyPushConfig": _rpc(modify_push_config, t.ModifyPushConfigRequest, Empty),
        "Pull": _rpc(pull, t.PullRequest, t.PullResponse),
        "Acknowledge": _rpc(acknowledge, t.AcknowledgeRequest, Empty),
        "ModifyAckDeadline": _rpc(modify_ack_deadline, t.ModifyAckDeadlineRequest, Empty),
    }
    return [
        grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", publisher),
        grpc.method_handlers_generic_handler("google.pubsub.v1.Subscriber", subscriber),
    ]


class PubSubEmulator:
    """The emulator as an object: ``PubSubEmulator(port=0).start()`` serves in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_concurrency: int | None = None) -> None:
        self.host = host
        self.port = port
        self.broker = Broker(default_concurrency)
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        """host:port, the value for PUBSUB_EMULATOR_HOST."""
        return f"{self.host}:{self.port}"

    def start(self) -> "PubSubEmulator":
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"),
            handlers=build_handlers(self.broker),
            options=[
                ("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT),
                ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT),
                # Without this a second server could share a port already in use and split traffic.
                ("grpc.so_reuseport", 0),
            ],
        )
        try:
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"Pub/Sub emulator: cannot listen on {self.host}:{self.port} (port in use?)")
        self.port = bound
        server.start()
        self._server = server
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
            self._server = None
        self.broker.close()

    def __enter__(self) -> "PubSubEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.pubsub_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--default-concurrency", type=int, default=None, help="push concurrency when a subscription sets none")
    parser.add_argument("--log-level", default=os.environ.get("LOCALCLOUD_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    emulator = PubSubEmulator(args.host, args.port, args.default_concurrency)
    try:
        emulator.start()
    except OSError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("Pub/Sub emulator listening on %s", emulator.address)
    stop.wait()
    log.info("stopping")
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
