"""Pub/Sub behaviour through the real google-cloud-pubsub clients and real function front ends,
on both emulators the local cloud runs on: Google's (when installed) and the builtin one.

Each test runs once per emulator (one local cloud per emulator for the module). Where the two
differ, the test says how, and docs/concepts/local-cloud.md lists it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import signal
import time
import uuid
from collections import Counter

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2
from handlers.support import (
    EMULATORS,
    EVENT_RECORDER,
    PUSH_RECORDER,
    clean_environ,
    read_records,
    wait_for_records,
    write_topology,
)

from localcloud import LocalCloud
from localcloud.eventarc import PUBSUB, endpoint_url

PROJECT = "test-project"
# return_immediately is deprecated for high throughput, and exactly right for "is anything left?".
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag is deprecated")
FAST_RETRY = {"minimum_backoff": duration_pb2.Duration(nanos=50_000_000), "maximum_backoff": duration_pb2.Duration(nanos=200_000_000)}
# Longest gap between two attempts under FAST_RETRY: Google's emulator raises the backoff to at
# least 1 s and retries about every 3 s after the second attempt.
MAX_RETRY_GAP = {"builtin": 0.6, "google": 4.5}


@pytest.fixture(scope="module", params=EMULATORS)
def cloud(request, tmp_path_factory):
    """One emulator plus two stand-in handlers (raw-envelope recorder, @cloud_event recorder)."""
    base = tmp_path_factory.mktemp(f"pubsub-{request.param}")
    records = base / "records"
    records.mkdir()
    topology = write_topology(
        base / "topology.toml",
        f"""
project = "{PROJECT}"
topics = ["events-topic"]
[pubsub]
port = 0
emulator = "{request.param}"
[storage]
enabled = false
[functions.recorder]
source = "{PUSH_RECORDER}"
target = "record"
signature_type = "http"
port = 0
max_instances = 1
concurrency = 16
timeout_seconds = 60
[functions.recorder.env]
RECORD_DIR = "{records}"
[functions.events]
source = "{EVENT_RECORDER}"
target = "record_event"
signature_type = "cloudevent"
port = 0
max_instances = 1
concurrency = 4
[functions.events.env]
RECORD_DIR = "{records}"
[functions.crashy]
source = "{PUSH_RECORDER}"
target = "record"
port = 0
max_instances = 1
concurrency = 1
[functions.crashy.env]
RECORD_DIR = "{records}"
# Makes the local cloud start its Eventarc adapter (the messagePublished test uses it).
[subscriptions.to-events]
topic = "events-topic"
push_function = "events"
format = "cloudevent"
""",
    )
    local = LocalCloud.load(topology, base / "run", environ=clean_environ()).up()
    local.records = records
    local.kind = request.param
    yield local
    local.down()


@pytest.fixture()
def clients(cloud, monkeypatch):
    """Unchanged PublisherClient/SubscriberClient, pointed at the emulator the documented way."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", cloud.env()["PUBSUB_EMULATOR_HOST"])
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.01)
    )
    subscriber = pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    subscriber.close()


def _names(prefix: str) -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    return (
        f"projects/{PROJECT}/topics/{prefix}-{suffix}",
        f"projects/{PROJECT}/subscriptions/{prefix}-{suffix}",
        f"{prefix}-{suffix}",
    )


def _push_subscription(subscriber, name, topic, endpoint, **extra):
    attributes = extra.pop("attributes", {})
    request = {"name": name, "topic": topic, "push_config": {"push_endpoint": endpoint, "attributes": attributes}}
    request.update(extra)
    return subscriber.create_subscription(request=request)


def _pull_until(subscriber, subscription, count=1, timeout=20.0):
    """Pull until ``count`` messages arrived (Google's emulator may answer a pull with nothing at once)."""
    received = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        received += list(subscriber.pull(subscription=subscription, max_messages=10, timeout=10).received_messages)
        if len(received) < count:
            time.sleep(0.1)
    return received


def test_push_envelope_carries_attributes_and_exact_payload(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("envelope")
    publisher.create_topic(name=topic)
    _push_subscription(subscriber, sub, topic, cloud.function_url("recorder"))
    payload = bytes(range(256)) * 3 + b"\x00\xff"
    message_id = publisher.publish(topic, payload, job="j-1", window="7").result(timeout=10)

    (record,) = wait_for_records(cloud.records, key, lambda r: len(r) >= 1)
    envelope = record["envelope"]
    message = envelope["message"]
    assert base64.b64decode(message["data"]) == payload
    assert message["attributes"] == {"job": "j-1", "window": "7"}
    assert message["messageId"] == message["message_id"] == message_id
    assert message["publishTime"] == message["publish_time"]
    published = dt.datetime.fromisoformat(message["publishTime"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - published).total_seconds()) < 60
    assert envelope["subscription"] == sub
    assert "deliveryAttempt" not in envelope  # only with a dead-letter policy, as Pub/Sub
    subscriber.delete_subscription(subscription=sub)


def test_message_published_cloudevent_through_the_eventarc_adapter(cloud, clients):
    """A Pub/Sub trigger as Eventarc realises it: plain push to the adapter, a CloudEvent to the function."""
    publisher, subscriber = clients
    topic, sub, key = _names("ce")
    publisher.create_topic(name=topic)
    endpoint = endpoint_url(cloud.eventarc_url(), PUBSUB, cloud.function_url("events"), topic=topic)
    _push_subscription(subscriber, sub, topic, endpoint)
    message_id = publisher.publish(topic, b'{"window": 3}', kind="window").result(timeout=10)

    (record,) = wait_for_records(cloud.records, key, lambda r: len(r) >= 1)
    attributes, data = record["attributes"], record["data"]
    assert attributes["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert attributes["source"] == f"//pubsub.googleapis.com/{topic}"
    assert attributes["id"] == message_id
    assert attributes["specversion"] == "1.0"
    assert data["subscription"] == sub
    assert base64.b64decode(data["message"]["data"]) == b'{"window": 3}'
    assert data["message"]["attributes"] == {"kind": "window"}
    assert attributes["time"].startswith(data["message"]["publishTime"][:19])
    subscriber.delete_subscription(subscription=sub)


def test_handler_failing_twice_gets_three_attempts_separated_by_the_backoff(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("flaky")
    dead_topic = topic + "-dead"
    publisher.create_topic(name=topic)
    publisher.create_topic(name=dead_topic)
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"),
        retry_policy=FAST_RETRY, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5},
    )
    publisher.publish(topic, b"x", fail_until_attempt="3").result(timeout=10)

    wait_for_records(cloud.records, key, lambda r: len(r) >= 3)
    time.sleep(MAX_RETRY_GAP[cloud.kind])  # a 4th attempt would have arrived by now
    records = read_records(cloud.records, key)
    assert [r["attempt"] for r in records] == [1, 2, 3]
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(records, records[1:])]
    assert all(gap >= 0.04 for gap in gaps), gaps  # the minimum backoff separates attempts
    if cloud.kind == "builtin":
        # Pub/Sub sends deliveryAttempt when a dead-letter policy is set; Google's emulator never does.
        assert [r["envelope"]["deliveryAttempt"] for r in records] == [1, 2, 3]
    else:
        assert all("deliveryAttempt" not in r["envelope"] for r in records)
    subscriber.delete_subscription(subscription=sub)


def test_always_failing_message_is_dead_lettered_with_source_attributes(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("doomed")
    dead_topic, dead_sub = topic + "-dead", sub + "-dead"
    publisher.create_topic(name=topic)
    publisher.create_topic(name=dead_topic)
    subscriber.create_subscription(name=dead_sub, topic=dead_topic)
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"),
        retry_policy=FAST_RETRY, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5},
    )
    publisher.publish(topic, b"poison", always_fail="1", job="j-9").result(timeout=10)

    received = _pull_until(subscriber, dead_sub, timeout=30)
    assert len(received) == 1
    records = read_records(cloud.records, key)
    assert [r["attempt"] for r in records] == [1, 2, 3, 4, 5]
    dead = received[0].message
    assert dead.data == b"poison"
    attributes = dict(dead.attributes)
    assert attributes["always_fail"] == "1" and attributes["job"] == "j-9"
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == sub.rsplit("/", 1)[-1]
    assert attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] == PROJECT
    assert attributes["CloudPubSubDeadLetterSourceTopicPublishTime"] == records[0]["envelope"]["message"]["publishTime"]
    subscriber.acknowledge(subscription=dead_sub, ack_ids=[received[0].ack_id])
    time.sleep(MAX_RETRY_GAP[cloud.kind])
    assert len(read_records(cloud.records, key)) == 5  # dead-lettered messages are not pushed again
    assert not subscriber.pull(subscription=dead_sub, max_messages=10, return_immediately=True).received_messages
    subscriber.delete_subscription(subscription=sub)


def test_push_outliving_the_ack_deadline_is_redelivered(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("slow")
    publisher.create_topic(name=topic)
    # ack_deadline_seconds cannot go below 10 s; the builtin emulator's extra attribute shortens it
    # (Google's drops it), so Google's takes the real 10 s.
    deadline = 1.0 if cloud.kind == "builtin" else 10.0
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"), ack_deadline_seconds=10,
        retry_policy=FAST_RETRY, attributes={"x-localcloud-ack-deadline-seconds": "1"},
    )
    publisher.publish(topic, b"slow", sleep_first=str(deadline + 2)).result(timeout=10)

    first, second = wait_for_records(cloud.records, key, lambda r: len(r) >= 2, timeout=deadline + 10)[:2]
    assert first["envelope"]["message"]["messageId"] == second["envelope"]["message"]["messageId"]
    # Redelivered while the first handler was still sleeping: the deadline, not a failure, did it.
    assert deadline - 0.1 < second["received_at"] - first["received_at"] < deadline + 2
    time.sleep(max(0.0, first["received_at"] + deadline + 2.5 - time.time()))
    assert len(read_records(cloud.records, key)) == 2  # the late 2xx of the first push changes nothing
    subscriber.delete_subscription(subscription=sub)


def test_thousand_messages_each_delivered_within_the_concurrency_limit(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("bulk")
    publisher.create_topic(name=topic)
    limit = 4  # the builtin emulator's extra; Google's pushes at most 2 at once per subscription
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"), attributes={"x-localcloud-max-concurrency": str(limit)}
    )
    futures = [publisher.publish(topic, str(i).encode(), sleep="0.002") for i in range(1000)]
    ids = {f.result(timeout=30) for f in futures}
    assert len(ids) == 1000

    records = wait_for_records(cloud.records, key, lambda r: len(r) >= 1000, timeout=90)
    delivered = Counter(r["envelope"]["message"]["messageId"] for r in records)
    assert set(delivered) == ids
    assert max(delivered.values()) == 1  # all acked in time: no redelivery
    peak = max(r["active"] for r in records)
    assert 2 <= peak <= (limit if cloud.kind == "builtin" else 2)  # pushes overlap, never beyond the limit
    subscriber.delete_subscription(subscription=sub)


def test_message_over_four_mebibytes_is_pushed_whole(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("big")
    publisher.create_topic(name=topic)
    _push_subscription(subscriber, sub, topic, cloud.function_url("recorder"))
    payload = bytes(range(256)) * (9 * 4096)  # 9 MiB: above gRPC's default 4 MiB limit
    publisher.publish(topic, payload).result(timeout=30)

    (record,) = wait_for_records(cloud.records, key, lambda r: len(r) >= 1)
    assert record["size"] == len(payload)
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()
    subscriber.delete_subscription(subscription=sub)


def test_pull_ack_and_nack_through_the_subscriber_client(cloud, clients):
    publisher, subscriber = clients
    topic, sub, _ = _names("pull")
    publisher.create_topic(name=topic)
    publisher.create_topic(name=topic + "-dead")
    subscriber.create_subscription(
        request={"name": sub, "topic": topic, "retry_policy": FAST_RETRY,
                 "dead_letter_policy": {"dead_letter_topic": topic + "-dead", "max_delivery_attempts": 5}}
    )
    publisher.publish(topic, b"one").result(timeout=10)

    (first,) = _pull_until(subscriber, sub)
    assert first.message.data == b"one" and first.delivery_attempt == 1
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0)  # nack
    (again,) = _pull_until(subscriber, sub)  # after the retry backoff
    assert again.message.message_id == first.message.message_id and again.delivery_attempt == 2
    subscriber.acknowledge(subscription=sub, ack_ids=[again.ack_id])
    time.sleep(MAX_RETRY_GAP[cloud.kind])
    assert not subscriber.pull(subscription=sub, max_messages=5, return_immediately=True).received_messages


def test_filter_is_applied_by_the_builtin_emulator_only(cloud, clients):
    """Google's emulator stores a subscription filter but delivers every message (a difference docs/concepts/local-cloud.md lists)."""
    publisher, subscriber = clients
    topic, sub, key = _names("filtered")
    publisher.create_topic(name=topic)
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"), filter='attributes.bucket = "keep" AND NOT attributes:skip'
    )
    assert subscriber.get_subscription(subscription=sub).filter == 'attributes.bucket = "keep" AND NOT attributes:skip'
    ids = [
        publisher.publish(topic, b"a", bucket="other").result(timeout=10),
        publisher.publish(topic, b"b", bucket="keep", skip="1").result(timeout=10),
        publisher.publish(topic, b"c", bucket="keep").result(timeout=10),
    ]
    expected = ids[2:] if cloud.kind == "builtin" else ids
    wait_for_records(cloud.records, key, lambda r: len(r) >= len(expected))
    time.sleep(0.3)
    delivered = sorted(r["envelope"]["message"]["messageId"] for r in read_records(cloud.records, key))
    assert delivered == sorted(expected)
    subscriber.delete_subscription(subscription=sub)


def test_which_2xx_statuses_acknowledge(cloud, clients):
    """The docs: 102, 200, 201, 202, 204 acknowledge. Google's emulator takes 203 instead of 202."""
    publisher, subscriber = clients
    topic, sub, key = _names("status")
    publisher.create_topic(name=topic)
    _push_subscription(subscriber, sub, topic, cloud.function_url("recorder"), retry_policy=FAST_RETRY)
    accepted = publisher.publish(topic, b"a", status="202").result(timeout=10)
    wait_for_records(cloud.records, key, lambda r: len(r) >= 1)
    time.sleep(1.5)
    attempts = Counter(r["envelope"]["message"]["messageId"] for r in read_records(cloud.records, key))
    if cloud.kind == "builtin":
        assert attempts[accepted] == 1
    else:
        assert attempts[accepted] >= 2  # retried: 202 is not an acknowledgement there
    subscriber.delete_subscription(subscription=sub)  # stops the retries


def test_instance_killed_mid_push_is_redelivered_to_a_fresh_instance(cloud, clients):
    """kill -9 of the instance serving a push: the push fails (503), Pub/Sub redelivers, a new instance serves it."""
    publisher, subscriber = clients
    topic, sub, key = _names("killed")
    publisher.create_topic(name=topic)
    _push_subscription(subscriber, sub, topic, cloud.function_url("crashy"), retry_policy=FAST_RETRY)
    publisher.publish(topic, b"tile", sleep_first="30").result(timeout=10)

    (first,) = wait_for_records(cloud.records, key, lambda r: len(r) >= 1)
    deadline = time.monotonic() + 10
    while first["pid"] not in cloud.busy_pids("crashy"):
        assert time.monotonic() < deadline, cloud.instances("crashy")
        time.sleep(0.05)
    os.kill(first["pid"], signal.SIGKILL)

    records = wait_for_records(cloud.records, key, lambda r: len(r) >= 2, timeout=30)
    second = records[1]
    assert second["envelope"]["message"]["messageId"] == first["envelope"]["message"]["messageId"]
    assert second["pid"] != first["pid"]  # a fresh instance (in which the message is a first delivery again)
    assert second["received_at"] - first["received_at"] < 15  # not the 30 s the first would have slept
    (instance,) = cloud.instances("crashy")
    assert instance["pid"] == second["pid"] and instance["state"] == "ready"
    subscriber.delete_subscription(subscription=sub)


@pytest.mark.parametrize("concurrency", [8])
def test_push_flow_control_shrinks_the_window_on_failures_and_grows_it_back(cloud, clients, concurrency):
    """Builtin emulator: the push window starts small, halves per failure (plus push backoff), grows per success."""
    if cloud.kind == "google":
        pytest.skip("Google's emulator has no push flow control: always at most 2 pushes per subscription")
    publisher, subscriber = clients
    topic, sub, key = _names("flow")
    publisher.create_topic(name=topic)
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"), retry_policy=FAST_RETRY,
        attributes={"x-localcloud-max-concurrency": str(concurrency)},
    )
    # 30 messages failing for 1.5 s, each push taking 0.1 s.
    fail_until = time.time() + 1.5
    for future in [publisher.publish(topic, str(i).encode(), sleep="0.1", fail_before=str(fail_until)) for i in range(30)]:
        future.result(timeout=10)

    records = wait_for_records(
        cloud.records, key, lambda r: len({x["envelope"]["message"]["messageId"] for x in r if x["received_at"] >= fail_until}) >= 30,
        timeout=30,
    )
    failing = [r for r in records if r["received_at"] < fail_until]
    later = [r for r in records if r["received_at"] >= fail_until]
    assert max(r["active"] for r in failing[:4]) <= 4  # a slow start: 4 pushes, not 8 at once
    # Each failure halves the window: after the first burst, one push at a time...
    assert all(r["active"] == 1 for r in failing[4:]), [(r["active"], round(r["received_at"] - fail_until, 3)) for r in failing]
    # ... and push backoff spaces them more and more (without it: dozens in 1.5 s at a 50-200 ms backoff).
    assert len(failing) < 12, len(failing)
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(failing[3:], failing[4:])]
    assert gaps and gaps[-1] >= 0.2, gaps
    assert max(r["active"] for r in later) > 4  # successes open the window again, up to the limit
    assert max(r["active"] for r in records) <= concurrency
    subscriber.delete_subscription(subscription=sub)


def test_listing_topics_and_topic_subscriptions(cloud, clients):
    publisher, subscriber = clients
    topic, sub, _ = _names("listed")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    assert topic in [t.name for t in publisher.list_topics(project=f"projects/{PROJECT}")]
    assert list(publisher.list_topic_subscriptions(topic=topic)) == [sub]
    assert sub in [s.name for s in subscriber.list_subscriptions(project=f"projects/{PROJECT}")]
    publisher.delete_topic(topic=topic)
    assert subscriber.get_subscription(subscription=sub).topic == "_deleted-topic_"


# call -> error on the builtin emulator, error on Google's (None: accepted there, a difference the docs list).
ERROR_CODES = {
    "create existing topic": (exceptions.AlreadyExists, exceptions.AlreadyExists),
    "create existing subscription": (exceptions.AlreadyExists, exceptions.AlreadyExists),
    "get missing topic": (exceptions.NotFound, exceptions.NotFound),
    "publish to missing topic": (exceptions.NotFound, exceptions.NotFound),
    "subscribe to missing topic": (exceptions.NotFound, exceptions.NotFound),
    "delete missing subscription": (exceptions.NotFound, exceptions.NotFound),
    "pull missing subscription": (exceptions.NotFound, exceptions.NotFound),
    "topic id too short": (exceptions.InvalidArgument, exceptions.InvalidArgument),
    "ack deadline 5 s": (exceptions.InvalidArgument, None),  # Google's keeps 5 (Pub/Sub: 10..600)
    "ack deadline 601 s": (exceptions.InvalidArgument, exceptions.InvalidArgument),
    "3 delivery attempts": (exceptions.InvalidArgument, exceptions.OutOfRange),
    "push to another machine": (exceptions.InvalidArgument, None),
    "unknown push format": (exceptions.InvalidArgument, None),
    "unsupported filter": (exceptions.InvalidArgument, None),  # Google's stores filters, never applies them
}


@pytest.mark.parametrize("call", list(ERROR_CODES))
def test_grpc_error_codes_through_the_real_clients(cloud, clients, call):
    publisher, subscriber = clients
    topic, sub, _ = _names("codes")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    missing_topic, missing_sub = topic + "-missing", sub + "-missing"
    calls = {
        "create existing topic": lambda: publisher.create_topic(name=topic),
        "create existing subscription": lambda: subscriber.create_subscription(name=sub, topic=topic),
        "get missing topic": lambda: publisher.get_topic(topic=missing_topic),
        "publish to missing topic": lambda: publisher.publish(missing_topic, b"x").result(timeout=10),
        "subscribe to missing topic": lambda: subscriber.create_subscription(name=missing_sub, topic=missing_topic),
        "delete missing subscription": lambda: subscriber.delete_subscription(subscription=missing_sub),
        "pull missing subscription": lambda: subscriber.pull(subscription=missing_sub, max_messages=1, timeout=5),
        "topic id too short": lambda: publisher.create_topic(name=f"projects/{PROJECT}/topics/ab"),
        "ack deadline 5 s": lambda: subscriber.create_subscription(name=missing_sub, topic=topic, ack_deadline_seconds=5),
        "ack deadline 601 s": lambda: subscriber.create_subscription(name=missing_sub, topic=topic, ack_deadline_seconds=601),
        "3 delivery attempts": lambda: subscriber.create_subscription(
            request={"name": missing_sub, "topic": topic, "dead_letter_policy": {"dead_letter_topic": topic, "max_delivery_attempts": 3}}
        ),
        # 192.0.2.1 is TEST-NET-1: never reached (the builtin emulator refuses it; Google's would
        # try, but the subscription is deleted before any message is published).
        "push to another machine": lambda: _push_subscription(subscriber, missing_sub, topic, "http://192.0.2.1/push"),
        "unknown push format": lambda: _push_subscription(
            subscriber, missing_sub, topic, cloud.function_url("recorder"), attributes={"x-localcloud-format": "xml"}
        ),
        "unsupported filter": lambda: subscriber.create_subscription(
            request={"name": missing_sub, "topic": topic, "filter": "attributes.a > 3"}
        ),
    }
    error = ERROR_CODES[call][0 if cloud.kind == "builtin" else 1]
    if error is None:
        calls[call]()  # accepted
        subscriber.delete_subscription(subscription=missing_sub)
    else:
        with pytest.raises(error):
            calls[call]()
    subscriber.delete_subscription(subscription=sub)
