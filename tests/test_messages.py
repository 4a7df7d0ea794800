"""Window messages and their deliveries: round trips, refusals, and decoding every push form."""

import base64
import json

import pytest
from job_support import load, manifest

from temporal_median.base.clock import parse_time
from temporal_median.base.errors import MalformedMessage
from temporal_median.base.grid import TileId
from temporal_median.job.messages import Delivery, WindowMessage


def test_window_message_round_trips_and_carries_the_course_fields():
    message = manifest().message(TileId(1, 2))
    body = json.loads(message.to_bytes())
    assert body["window"] == [2048, 1024, 952, 976]
    assert body["destination"] == "gs://tm-work/jobs/job-0123456789abcdef/tiles/r001_c002.tif"
    assert body["datasets"] == ["gs://in/a_TCI.tif", "gs://in/b_TCI.tif"]
    assert WindowMessage.from_bytes(message.to_bytes()) == message


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b.pop("tile"), "lacks"),
        (lambda b: b.update(window=[0, 0, -1, 5]), "window"),
        (lambda b: b.update(method="mode"), "method"),
        (lambda b: b.update(datasets=[]), "datasets"),
        (lambda b: b.update(version=99), "version"),
        (lambda b: b.update(destination="gs://elsewhere/x.tif"), "destination"),
    ],
)
def test_malformed_window_messages_are_refused(mutate, match):
    body = json.loads(manifest().message(TileId(0, 0)).to_bytes())
    mutate(body)
    with pytest.raises(MalformedMessage, match=match):
        WindowMessage.from_bytes(json.dumps(body).encode())


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_undecodable_message_data_is_malformed(data):
    with pytest.raises(MalformedMessage):
        WindowMessage.from_bytes(data)


def test_push_envelope_decodes_with_delivery_attempt():
    envelope = load("pubsub_push_envelope.json")
    delivery = Delivery.from_http({"Content-Type": "application/json"}, json.dumps(envelope).encode())
    assert delivery.form == "push-envelope"
    assert delivery.data == base64.b64decode(envelope["message"]["data"])
    assert delivery.attempt == 2
    assert delivery.attributes["tile"] == "r000_c001"
    assert delivery.publish_time == parse_time("2026-11-25T10:15:30.123456Z")


def test_binary_cloudevent_decodes():
    event = load("pubsub_cloudevent_binary.json")
    delivery = Delivery.from_http(event["headers"], json.dumps(event["body"]).encode())
    assert delivery.form == "cloudevent-binary"
    assert delivery.data == b'{"hello": "world"}'
    assert delivery.message_id == "2070443601311540" and delivery.attempt is None


def test_structured_cloudevent_decodes():
    event = load("pubsub_cloudevent_structured.json")
    delivery = Delivery.from_http(event["headers"], json.dumps(event["body"]).encode())
    assert delivery.form == "cloudevent-structured"
    assert delivery.data == b'{"hello": "world"}'


@pytest.mark.parametrize(
    "headers, body, match",
    [
        ({}, b"nope", "neither"),
        ({}, b'{"subscription": "s"}', "message"),
        ({}, b'{"message": {"data": "eyJ9"}}', "messageId"),
        ({}, b'{"message": {"data": "***", "messageId": "1"}}', "base64"),
        ({}, b'{"message": {"data": "", "messageId": "1"}, "deliveryAttempt": 0}', "deliveryAttempt"),
        ({"ce-specversion": "1.0", "ce-type": "x", "ce-source": "s", "ce-id": "1"}, b"{}", "type"),
        ({"ce-specversion": "1.0"}, b"{}", "CloudEvent"),
    ],
)
def test_bad_pushes_are_malformed(headers, body, match):
    with pytest.raises(MalformedMessage, match=match):
        Delivery.from_http(headers, body)
