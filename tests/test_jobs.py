"""Job requests, manifests and window messages: validation, ids, and decoding every push form."""

import base64
import json
from pathlib import Path

import pytest

from temporal_median.errors import InvalidRequest, MalformedMessage, RequestTooLarge
from temporal_median.grid import Grid, TileId
from temporal_median.jobs import (
    Delivery,
    JobPaths,
    JobRequest,
    Manifest,
    WindowMessage,
    parse_error_object,
    parse_tile_object,
    parse_time,
)
from temporal_median.settings import Settings
from temporal_median.storage import GsUrl

EVENTS = Path(__file__).parent / "fixtures" / "events"
SETTINGS = Settings()
LOCAL = Settings(allow_local_paths=True, max_inputs=3)


def load(name):
    return json.loads((EVENTS / name).read_text())


def manifest(**overrides):
    values = dict(
        job_id="job-0123456789abcdef",
        datasets=("gs://in/a_TCI.tif", "gs://in/b_TCI.tif"),
        grid=Grid(3000, 2000, 1024),
        raster={"width": 3000, "height": 2000},
        method="luminance",
        output="gs://tm-results",
        created="2026-11-25T10:00:00Z",
        work="gs://tm-work",
    )
    values.update(overrides)
    return Manifest(**values)


def test_request_defaults_and_prefix():
    request = JobRequest.from_json({"inputs": "gs://tb-be-bigdata/t31tcj/"}, SETTINGS)
    assert (request.tile_size, request.method, request.output) == (1024, "luminance", "gs://tm-results")


@pytest.mark.parametrize(
    "body, match",
    [
        ([], "JSON object"),
        ({}, "'inputs' is required"),
        ({"inputs": "gs://b/p", "colour": 1}, "unknown field"),
        ({"inputs": "/data/series"}, "local paths are not allowed"),
        ({"inputs": "s3://bucket/x"}, "gs:// or https://"),
        ({"inputs": "https://host/dir/"}, "cannot be listed"),
        ({"inputs": []}, "empty list"),
        ({"inputs": ["gs://b/a.tif", "gs://b/a.tif"]}, "twice"),
        ({"inputs": ["gs://b/a.jp2"]}, ".tif"),
        ({"inputs": "gs://b/p", "tile_size": 100}, "tile_size"),
        ({"inputs": "gs://b/p", "tile_size": "1024"}, "tile_size"),
        ({"inputs": "gs://b/p", "method": "mean"}, "luminance, per-band"),
        ({"inputs": "gs://b/p", "output": "/tmp/out"}, "output"),
        ({"inputs": "gs://b/p", "job_id": "Bad Id"}, "job_id"),
        ({"inputs": "gs://b/../p"}, "'..'"),
    ],
)
def test_bad_requests_name_the_problem(body, match):
    with pytest.raises(InvalidRequest, match=match):
        JobRequest.from_json(body, SETTINGS)


def test_too_many_inputs_is_its_own_error():
    with pytest.raises(RequestTooLarge):
        JobRequest.from_json({"inputs": [f"/d/{i}.tif" for i in range(4)]}, LOCAL)


def test_local_paths_allowed_only_when_configured():
    request = JobRequest.from_json({"inputs": "/data/series"}, LOCAL)
    assert request.inputs == "/data/series"


def test_job_id_is_deterministic_and_depends_on_inputs_and_parameters():
    request = JobRequest.from_json({"inputs": "gs://b/p/"}, SETTINGS)
    datasets = ("gs://b/p/a.tif", "gs://b/p/b.tif")
    assert request.derive_job_id(datasets) == request.derive_job_id(datasets)
    assert request.derive_job_id(datasets) != request.derive_job_id(datasets[:1])
    per_band = JobRequest.from_json({"inputs": "gs://b/p/", "method": "per-band"}, SETTINGS)
    assert per_band.derive_job_id(datasets) != request.derive_job_id(datasets)
    named = JobRequest.from_json({"inputs": "gs://b/p/", "job_id": "my-job"}, SETTINGS)
    assert named.derive_job_id(datasets) == "my-job"


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


def test_tile_and_error_object_names():
    work = GsUrl.parse("gs://tm-work")
    assert parse_tile_object(work, "tm-work", "jobs/job-abc/tiles/r001_c002.tif") == ("job-abc", TileId(1, 2))
    assert parse_tile_object(work, "other", "jobs/job-abc/tiles/r001_c002.tif") is None
    assert parse_tile_object(work, "tm-work", "jobs/job-abc/manifest.json") is None
    assert parse_tile_object(work, "tm-work", "x/jobs/job-abc/tiles/r001_c002.tif") is None
    prefixed = GsUrl.parse("gs://tm-work/pipeline")
    assert parse_tile_object(prefixed, "tm-work", "pipeline/jobs/job-abc/tiles/r000_c000.tif") == ("job-abc", TileId(0, 0))
    paths = JobPaths.of("gs://tm-work", "job-abc")
    assert parse_error_object(paths.error(TileId(0, 1), 3).key) == (TileId(0, 1), 3)
    assert parse_error_object(paths.error(TileId(0, 1), None).key) == (TileId(0, 1), None)


def test_manifest_identity_ignores_creation_time():
    assert manifest().same_job(manifest(created="2027-01-01T00:00:00Z"))
    assert not manifest().same_job(manifest(method="per-band"))
    assert Manifest.from_dict(manifest().to_dict()) == manifest()


def test_log_lines_are_json_with_the_job_fields_at_the_configured_level(capsys, monkeypatch):
    from temporal_median.logs import get_logger
    from temporal_median.settings import get_settings

    monkeypatch.setenv("TM_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    try:
        log = get_logger("temporal_median.test-logs")
        log.info("not shown at WARNING")
        log.warning("tile slow", extra={"job_id": "job-1", "tile": "r000_c001", "fields": {"seconds": 2.5}})
    finally:
        get_settings.cache_clear()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"severity": "WARNING", "message": "tile slow", "job_id": "job-1", "tile": "r000_c001", "seconds": 2.5,
         "logger": "temporal_median.test-logs"}
    ]
