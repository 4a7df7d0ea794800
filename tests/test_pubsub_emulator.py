"""The local Pub/Sub emulator through the real google-cloud-pubsub clients and real functions-framework servers."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import uuid
from collections import Counter

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2
from handlers.support import EVENT_RECORDER, PUSH_RECORDER, clean_environ, read_records, wait_for_records, write_topology

from localcloud import LocalCloud

PROJECT = "test-project"
# return_immediately is deprecated for high throughput, and exactly right for "is anything left?".
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag is deprecated")
FAST_RETRY = {"minimum_backoff": duration_pb2.Duration(nanos=50_000_000), "maximum_backoff": duration_pb2.Duration(nanos=200_000_000)}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """Pub/Sub emulator plus two stand-in handlers (raw-envelope recorder, @cloud_event recorder)."""
    base = tmp_path_factory.mktemp("pubsub-cloud")
    records = base / "records"
    records.mkdir()
    topology = write_topology(
        base / "topology.toml",
        f"""
project = "{PROJECT}"
[pubsub]
port = 0
[storage]
enabled = false
[functions.recorder]
source = "{PUSH_RECORDER}"
target = "record"
signature_type = "http"
port = 0
workers = 1
threads = 16
env = {{ RECORD_DIR = "{records}" }}
[functions.events]
source = "{EVENT_RECORDER}"
target = "record_event"
signature_type = "cloudevent"
port = 0
workers = 1
threads = 4
env = {{ RECORD_DIR = "{records}" }}
""",
    )
    local = LocalCloud.load(topology, base / "run", environ=clean_environ()).up()
    local.records = records
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
    published = dt.datetime.fromisoformat(message["publishTime"])
    assert abs((dt.datetime.now(dt.timezone.utc) - published).total_seconds()) < 60
    assert envelope["subscription"] == sub
    assert "deliveryAttempt" not in envelope  # only with a dead-letter policy, as Pub/Sub
    subscriber.delete_subscription(subscription=sub)


def test_cloudevent_format_is_accepted_by_a_cloud_event_function(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("ce")
    publisher.create_topic(name=topic)
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("events"), attributes={"x-localcloud-format": "cloudevent"}
    )
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


def test_handler_failing_twice_gets_attempts_one_two_three(cloud, clients):
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
    time.sleep(0.6)  # longer than the maximum backoff: a 4th attempt would have arrived
    records = read_records(cloud.records, key)
    assert [r["envelope"]["deliveryAttempt"] for r in records] == [1, 2, 3]
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(records, records[1:])]
    assert all(gap >= 0.04 for gap in gaps), gaps  # the minimum backoff separates attempts
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
    future = publisher.publish(topic, b"poison", always_fail="1", job="j-9")
    future.result(timeout=10)

    received = []
    deadline = time.monotonic() + 20
    while not received and time.monotonic() < deadline:
        received = list(subscriber.pull(subscription=dead_sub, max_messages=10, timeout=10).received_messages)
    assert len(received) == 1
    records = read_records(cloud.records, key)
    assert [r["envelope"]["deliveryAttempt"] for r in records] == [1, 2, 3, 4, 5]
    dead = received[0].message
    assert dead.data == b"poison"
    attributes = dict(dead.attributes)
    assert attributes["always_fail"] == "1" and attributes["job"] == "j-9"
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == sub.rsplit("/", 1)[-1]
    assert attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] == PROJECT
    assert attributes["CloudPubSubDeadLetterSourceTopicPublishTime"] == records[0]["envelope"]["message"]["publishTime"]
    subscriber.acknowledge(subscription=dead_sub, ack_ids=[received[0].ack_id])
    time.sleep(0.3)
    assert len(read_records(cloud.records, key)) == 5  # dead-lettered messages are not pushed again
    assert not subscriber.pull(subscription=dead_sub, max_messages=10, return_immediately=True).received_messages
    subscriber.delete_subscription(subscription=sub)


def test_push_outliving_the_ack_deadline_is_redelivered(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("slow")
    publisher.create_topic(name=topic)
    # ack_deadline_seconds cannot go below 10 s; the localcloud attribute shortens it for this test.
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"),
        retry_policy=FAST_RETRY, attributes={"x-localcloud-ack-deadline-seconds": "1"},
    )
    publisher.publish(topic, b"slow", sleep_first="3").result(timeout=10)

    first, second = wait_for_records(cloud.records, key, lambda r: len(r) >= 2, timeout=10)
    assert first["envelope"]["message"]["messageId"] == second["envelope"]["message"]["messageId"]
    # Redelivered while the first handler was still sleeping: the deadline, not a failure, did it.
    assert 0.9 < second["received_at"] - first["received_at"] < 3
    time.sleep(max(0.0, first["received_at"] + 3.5 - time.time()))
    assert len(read_records(cloud.records, key)) == 2  # the late 2xx of the first push changes nothing
    subscriber.delete_subscription(subscription=sub)


def test_thousand_messages_each_delivered_within_the_concurrency_limit(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("bulk")
    publisher.create_topic(name=topic)
    limit = 4
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"), attributes={"x-localcloud-max-concurrency": str(limit)}
    )
    futures = [publisher.publish(topic, str(i).encode(), sleep="0.002") for i in range(1000)]
    ids = {f.result(timeout=30) for f in futures}
    assert len(ids) == 1000

    records = wait_for_records(cloud.records, key, lambda r: len(r) >= 1000, timeout=60)
    delivered = Counter(r["envelope"]["message"]["messageId"] for r in records)
    assert set(delivered) == ids
    assert max(delivered.values()) == 1  # all acked in time: no redelivery
    peak = max(r["active"] for r in records)
    assert 2 <= peak <= limit  # pushes overlap, but never beyond the limit
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

    (first,) = subscriber.pull(subscription=sub, max_messages=5, timeout=10).received_messages
    assert first.message.data == b"one" and first.delivery_attempt == 1
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0)  # nack
    time.sleep(0.3)  # past the retry backoff
    (again,) = subscriber.pull(subscription=sub, max_messages=5, timeout=10).received_messages
    assert again.message.message_id == first.message.message_id and again.delivery_attempt == 2
    subscriber.acknowledge(subscription=sub, ack_ids=[again.ack_id])
    assert not subscriber.pull(subscription=sub, max_messages=5, return_immediately=True).received_messages


def test_filter_drops_messages_it_does_not_match(cloud, clients):
    publisher, subscriber = clients
    topic, sub, key = _names("filtered")
    publisher.create_topic(name=topic)
    _push_subscription(
        subscriber, sub, topic, cloud.function_url("recorder"), filter='attributes.bucket = "keep" AND NOT attributes:skip'
    )
    publisher.publish(topic, b"a", bucket="other").result(timeout=10)
    publisher.publish(topic, b"b", bucket="keep", skip="1").result(timeout=10)
    kept = publisher.publish(topic, b"c", bucket="keep").result(timeout=10)
    wait_for_records(cloud.records, key, lambda r: len(r) >= 1)
    time.sleep(0.3)
    assert [r["envelope"]["message"]["messageId"] for r in read_records(cloud.records, key)] == [kept]


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


@pytest.mark.parametrize(
    "call, error",
    [
        ("create existing topic", exceptions.AlreadyExists),
        ("create existing subscription", exceptions.AlreadyExists),
        ("get missing topic", exceptions.NotFound),
        ("publish to missing topic", exceptions.NotFound),
        ("subscribe to missing topic", exceptions.NotFound),
        ("delete missing subscription", exceptions.NotFound),
        ("pull missing subscription", exceptions.NotFound),
        ("topic id too short", exceptions.InvalidArgument),
        ("ack deadline 5 s", exceptions.InvalidArgument),
        ("ack deadline 601 s", exceptions.InvalidArgument),
        ("3 delivery attempts", exceptions.InvalidArgument),
        ("push to another machine", exceptions.InvalidArgument),
        ("unknown push format", exceptions.InvalidArgument),
        ("unsupported filter", exceptions.InvalidArgument),
    ],
)
def test_grpc_error_codes_through_the_real_clients(cloud, clients, call, error):
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
        "push to another machine": lambda: _push_subscription(subscriber, missing_sub, topic, "http://192.0.2.1/push"),
        "unknown push format": lambda: _push_subscription(
            subscriber, missing_sub, topic, cloud.function_url("recorder"), attributes={"x-localcloud-format": "xml"}
        ),
        "unsupported filter": lambda: subscriber.create_subscription(
            request={"name": missing_sub, "topic": topic, "filter": "attributes.a > 3"}
        ),
    }
    with pytest.raises(error):
        calls[call]()
    subscriber.delete_subscription(subscription=sub)
