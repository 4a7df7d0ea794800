"""The HTTP bodies of a delivery: Pub/Sub's raw push envelope or Eventarc's CloudEvents.

The local cloud's Eventarc adapter (localcloud/eventarc.py) builds the CloudEvents from the raw
envelopes any Pub/Sub emulator pushes to it: that is the pipeline's only path. The builtin
emulator can also build them itself, an extra chosen with the push_config attribute
``x-localcloud-format`` (real Pub/Sub has no such field; Google's emulator drops it):

``pubsub`` (default)
    the raw push envelope Pub/Sub POSTs to a push endpoint.
``cloudevent``
    a binary-mode ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent, as an Eventarc
    Pub/Sub trigger delivers it.
``storage-finalized``
    a binary-mode ``google.cloud.storage.object.v1.finalized`` CloudEvent built from a GCS
    OBJECT_FINALIZE notification (JSON_API_V1 payload), as an Eventarc Cloud Storage trigger
    delivers it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Mapping

from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

FORMAT_ATTRIBUTE = "x-localcloud-format"
PUBSUB = "pubsub"
CLOUDEVENT = "cloudevent"
STORAGE_FINALIZED = "storage-finalized"
FORMATS = (PUBSUB, CLOUDEVENT, STORAGE_FINALIZED)

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
OBJECT_FINALIZED = "google.cloud.storage.object.v1.finalized"
# GCS notification eventType -> Eventarc CloudEvent type.
STORAGE_EVENT_TYPES = {
    "OBJECT_FINALIZE": OBJECT_FINALIZED,
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}


@dataclass(frozen=True)
class PushedMessage:
    """What a push delivery needs to know about one message; plain values, no protobufs."""

    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    publish_time: str  # RFC 3339
    ordering_key: str = ""

    def to_json(self) -> dict:
        """The message as the push envelope spells it (both camelCase and snake_case ids, as Pub/Sub)."""
        body: dict = {"data": base64.b64encode(self.data).decode("ascii")}
        if self.attributes:
            body["attributes"] = dict(self.attributes)
        body["messageId"] = self.message_id
        body["message_id"] = self.message_id
        body["publishTime"] = self.publish_time
        body["publish_time"] = self.publish_time
        if self.ordering_key:
            body["orderingKey"] = self.ordering_key
        return body


def build_push(
    fmt: str,
    message: PushedMessage,
    subscription: str,
    topic: str,
    delivery_attempt: int | None,
) -> tuple[dict[str, str], bytes]:
    """Return (headers, body) of the POST for one delivery attempt.

    Parameters
    ----------
    fmt : str
        One of FORMATS.
    message : PushedMessage
        The message being delivered.
    subscription : str
        Full subscription name ``projects/P/subscriptions/S``.
    topic : str
        Full topic name the subscription is attached to.
    delivery_attempt : int or None
        Sent as ``deliveryAttempt`` in the raw envelope; None when the subscription has no
        dead-letter policy (Pub/Sub only counts attempts then).

    Raises
    ------
    ValueError
        For an unknown format, or a storage notification whose payload is not an object resource.
    """
    if fmt == PUBSUB:
        envelope: dict = {"message": message.to_json(), "subscription": subscription}
        if delivery_attempt is not None:
            envelope["deliveryAttempt"] = delivery_attempt
        return {"Content-Type": "application/json"}, json.dumps(envelope).encode()
    if fmt == CLOUDEVENT:
        return message_published_event(message.to_json(), subscription, topic)
    if fmt == STORAGE_FINALIZED:
        return storage_event(message.data, message.message_id, message.publish_time)
    raise ValueError(f"unknown push format {fmt!r}; expected one of {', '.join(FORMATS)}")


def message_published_event(message: Mapping, subscription: str, topic: str) -> tuple[dict[str, str], bytes]:
    """A binary ``messagePublished`` CloudEvent, as an Eventarc Pub/Sub trigger delivers a message.

    ``message`` is the message as the push envelope spells it (``PushedMessage.to_json()``).
    """
    event = CloudEvent(
        {
            "type": MESSAGE_PUBLISHED,
            "source": f"//pubsub.googleapis.com/{topic}",
            "id": message["messageId"],
            "time": message["publishTime"],
            "datacontenttype": "application/json",
        },
        {"message": dict(message), "subscription": subscription},
    )
    return to_binary(event)


def storage_event(
    data: bytes, message_id: str, publish_time: str, event_type: str = OBJECT_FINALIZED
) -> tuple[dict[str, str], bytes]:
    """A binary Cloud Storage CloudEvent built from a GCS notification's JSON_API_V1 payload.

    As Eventarc: source ``//storage.googleapis.com/projects/_/buckets/B``, subject
    ``objects/NAME``, data the object resource, time the object's update time.
    """
    try:
        resource = json.loads(data)
        bucket = resource["bucket"]
        name = resource["name"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"message {message_id} is not a GCS JSON_API_V1 notification (no bucket/name)") from None
    event = CloudEvent(
        {
            "type": event_type,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "subject": f"objects/{name}",
            "id": message_id,
            # Eventarc stamps the event with the object's update time, not the notification's.
            "time": resource.get("updated") or resource.get("timeCreated") or publish_time,
            "datacontenttype": "application/json",
            "bucket": bucket,
        },
        resource,
    )
    return to_binary(event)
