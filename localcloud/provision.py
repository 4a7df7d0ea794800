"""Creates a topology's topics, buckets and subscriptions on the running emulators, with the real clients.

Plain Pub/Sub and Storage requests, the same on both Pub/Sub emulators; what already exists is
left as it is.
"""

from __future__ import annotations

import time
from typing import Mapping

from .clients import publisher_client, storage_client, subscriber_client
from .parts import EVENTARC
from .push_formats import CLOUDEVENT, STORAGE_FINALIZED
from .topology import Subscription, Topology


def create_topics(host: str, topology: Topology, deadline: float) -> None:
    from google.api_core.exceptions import AlreadyExists, ServiceUnavailable

    publisher = publisher_client(host)
    for topic in topology.topics:
        while True:
            try:
                publisher.create_topic(name=f"projects/{topology.project}/topics/{topic}", timeout=10)
            except AlreadyExists:
                pass  # an external emulator that already has it
            except ServiceUnavailable:
                if time.monotonic() > deadline:  # a Java server that listens before it serves
                    raise
                time.sleep(0.1)
                continue
            break


def create_buckets(endpoint: str, topology: Topology) -> None:
    from google.api_core.exceptions import Conflict

    client = storage_client(endpoint, topology.project)
    for bucket in topology.buckets:
        try:
            client.create_bucket(bucket)
        except Conflict:
            pass


def create_subscriptions(host: str, topology: Topology, urls: Mapping[str, str]) -> None:
    from google.api_core.exceptions import AlreadyExists

    subscriber = subscriber_client(host)
    for sub in topology.subscriptions:
        request = subscription_request(topology.project, sub, urls)
        try:
            subscriber.create_subscription(request=request, timeout=10)
        except AlreadyExists:
            pass


def subscription_request(project: str, sub: Subscription, urls: Mapping[str, str]) -> dict:
    """The CreateSubscription request for a topology subscription (push URL resolved).

    Plain Pub/Sub on every emulator: a raw-envelope push, to the function itself or, for a
    trigger delivering CloudEvents, to the Eventarc adapter with the trigger's settings in the
    endpoint's query string. ``x-localcloud-*`` push attributes are extras of the builtin emulator
    (Google's drops them); nothing depends on them.
    """
    from google.protobuf import duration_pb2

    from . import (
        eventarc,  # here, not at the top: `python -m localcloud.eventarc` runs that module
    )

    def duration(seconds: float) -> duration_pb2.Duration:
        whole = int(seconds)
        return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))

    request: dict = {
        "name": f"projects/{project}/subscriptions/{sub.name}",
        "topic": f"projects/{project}/topics/{sub.topic}",
        "ack_deadline_seconds": sub.ack_deadline_seconds,
        "retry_policy": {"minimum_backoff": duration(sub.min_backoff_seconds), "maximum_backoff": duration(sub.max_backoff_seconds)},
        "filter": sub.filter,
    }
    if sub.dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": f"projects/{project}/topics/{sub.dead_letter_topic}",
            "max_delivery_attempts": sub.max_delivery_attempts,
        }
    if sub.is_push:
        endpoint = sub.push_endpoint or urls[f"function:{sub.push_function}"]
        deadline = sub.push_ack_deadline_seconds or sub.ack_deadline_seconds
        if sub.format == STORAGE_FINALIZED:
            endpoint = eventarc.endpoint_url(urls[EVENTARC], eventarc.STORAGE, endpoint, bucket=sub.bucket,
                                             type=sub.event_type, timeout=deadline)
        elif sub.format == CLOUDEVENT:
            endpoint = eventarc.endpoint_url(urls[EVENTARC], eventarc.PUBSUB, endpoint,
                                             topic=request["topic"], timeout=deadline)
        attributes = {"x-localcloud-max-concurrency": str(sub.max_concurrency)}
        if sub.push_ack_deadline_seconds is not None:
            attributes["x-localcloud-ack-deadline-seconds"] = repr(sub.push_ack_deadline_seconds)
        request["push_config"] = {"push_endpoint": endpoint, "attributes": attributes}
    return request
