"""fake-gcs-server -> Pub/Sub notifications -> the Eventarc adapter -> finalized CloudEvents, and GDAL /vsigs/ reads.

The storage trigger runs on both Pub/Sub emulators through one code path: a plain push
subscription on the notifications topic to the local Eventarc adapter, which POSTs the CloudEvent
to the function and answers with the function's status.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import rasterio
from affine import Affine
from google.api_core.exceptions import PreconditionFailed
from google.cloud import storage
from handlers.support import (
    EMULATORS,
    EVENT_RECORDER,
    clean_environ,
    read_records,
    wait_for_records,
    write_topology,
)
from rasterio.windows import Window

from localcloud import LocalCloud
from localcloud.eventarc import PUBSUB, STORAGE, EventarcServer, endpoint_url

WATCHED, OTHER = "watched-bucket", "other-bucket"


@pytest.fixture(scope="module", params=EMULATORS)
def cloud(request, tmp_path_factory):
    """Storage + Pub/Sub (each emulator) + a @cloud_event recorder triggered by finalize events of one bucket."""
    base = tmp_path_factory.mktemp(f"storage-{request.param}")
    records = base / "records"
    records.mkdir()
    topology = write_topology(
        base / "topology.toml",
        f"""
project = "test-project"
buckets = ["{WATCHED}", "{OTHER}"]
[pubsub]
port = 0
emulator = "{request.param}"
[storage]
port = 0
[functions.events]
source = "{EVENT_RECORDER}"
target = "record_event"
signature_type = "cloudevent"
port = 0
concurrency = 4
env = {{ RECORD_DIR = "{records}" }}
[triggers.on-upload]
bucket = "{WATCHED}"
function = "events"
min_backoff_seconds = 0.05
max_backoff_seconds = 0.2
""",
    )
    local = LocalCloud.load(topology, base / "run", environ=clean_environ()).up()
    local.records = records
    yield local
    local.down()


@pytest.fixture()
def gcs(cloud, monkeypatch):
    """An unchanged google-cloud-storage Client configured by STORAGE_EMULATOR_HOST."""
    for key, value in cloud.env().items():
        monkeypatch.setenv(key, value)
    return storage.Client()


def _events_for(records, name):
    return [r for r in records if r["data"]["name"] == name]


def test_finalized_object_reaches_the_function_as_a_cloudevent_only_for_its_bucket(cloud, gcs):
    name = f"tiles/{uuid.uuid4().hex}.json"
    gcs.bucket(OTHER).blob(name).upload_from_string(b"elsewhere")
    blob = gcs.bucket(WATCHED).blob(name)
    blob.upload_from_string(b'{"tile": 1}', content_type="application/json")

    records = wait_for_records(cloud.records, f"storage-{WATCHED}", lambda r: _events_for(r, name))
    (event,) = _events_for(records, name)
    attributes, data = event["attributes"], event["data"]
    assert attributes["type"] == "google.cloud.storage.object.v1.finalized"
    assert attributes["source"] == f"//storage.googleapis.com/projects/_/buckets/{WATCHED}"
    assert attributes["subject"] == f"objects/{name}"
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["bucket"] == WATCHED
    assert attributes["id"] and attributes["time"]
    blob.reload()
    assert (data["bucket"], data["name"], data["size"]) == (WATCHED, name, "11")
    assert data["generation"] == str(blob.generation)
    assert data["contentType"] == "application/json"
    time.sleep(0.3)  # the other bucket's notification went through the same topic earlier
    assert not read_records(cloud.records, f"storage-{OTHER}")


def test_failed_storage_event_is_redelivered(cloud, gcs):
    name = f"fail-once-{uuid.uuid4().hex}.txt"
    gcs.bucket(WATCHED).blob(name).upload_from_string(b"x")
    records = wait_for_records(cloud.records, f"storage-{WATCHED}", lambda r: len(_events_for(r, name)) >= 2)
    first, second = _events_for(records, name)[:2]
    assert first["attributes"]["id"] == second["attributes"]["id"]  # the same event, retried
    assert first["data"] == second["data"]
    time.sleep(1.5)
    assert len(_events_for(read_records(cloud.records, f"storage-{WATCHED}"), name)) == 2  # acked once it succeeded


def test_generation_precondition_is_enforced(cloud, gcs):
    blob = gcs.bucket(WATCHED).blob(f"once-{uuid.uuid4().hex}")
    blob.upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"second", if_generation_match=0)
    assert blob.download_as_bytes() == b"first"


def test_gdal_reads_a_window_of_a_cog_through_vsigs(cloud, gcs, tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(3, 600, 700), dtype=np.uint8)
    local = tmp_path / "scene.tif"
    profile = dict(
        driver="COG", width=700, height=600, count=3, dtype="uint8", blocksize=256, compress="deflate",
        crs="EPSG:32631", transform=Affine(10, 0, 300000, 0, -10, 4900020),
    )
    with rasterio.Env():
        with rasterio.open(local, "w", **profile) as dst:
            dst.write(pixels)
    name = f"scenes/{uuid.uuid4().hex}.tif"
    gcs.bucket(OTHER).blob(name).upload_from_filename(local)

    env = cloud.env()
    window = Window(col_off=333, row_off=211, width=97, height=64)
    # As the functions get them: environment variables. GDAL options set through rasterio.Env
    # here outlived the block and sent later tests of this process to this cloud's endpoint.
    monkeypatch.setenv("CPL_GS_ENDPOINT", env["CPL_GS_ENDPOINT"])
    monkeypatch.setenv("GS_NO_SIGN_REQUEST", "YES")
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(f"/vsigs/{OTHER}/{name}") as src:
            assert (src.width, src.height, src.count) == (700, 600, 3)
            block = src.read(window=window)
    np.testing.assert_array_equal(block, pixels[:, 211:275, 333:430])


# -- the adapter alone ---------------------------------------------------------------------------


class _Target(BaseHTTPRequestHandler):
    """A destination answering the status its path names (/status/429), recording what it got."""

    protocol_version = "HTTP/1.1"
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), body))
        status = int(self.path.rsplit("/", 1)[-1])
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def adapter():
    _Target.received = []
    target = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    with EventarcServer(port=0) as server:
        yield server.url, f"http://127.0.0.1:{target.server_port}"
    target.shutdown()
    target.server_close()


def _envelope(data: bytes, **attributes) -> bytes:
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "77",
               "message_id": "77", "publishTime": "2026-01-02T03:04:05.678Z", "publish_time": "2026-01-02T03:04:05.678Z"}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/eventarc-x"}).encode()


def _post(url: str, body: bytes) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


RESOURCE = json.dumps({"bucket": "b-1", "name": "jobs/j/tiles/r000_c001.tif", "generation": "5",
                       "updated": "2026-01-02T03:04:05.000Z"}).encode()


@pytest.mark.parametrize("status, answer", [(200, 200), (202, 200), (204, 200), (429, 429), (500, 500), (503, 503)])
def test_adapter_answers_with_the_destination_status(adapter, status, answer):
    """Any 2xx acknowledges (as 200, which every emulator takes); failures pass through, so Pub/Sub retries."""
    base, target = adapter
    url = endpoint_url(base, STORAGE, f"{target}/status/{status}", bucket="b-1", type="google.cloud.storage.object.v1.finalized")
    assert _post(url, _envelope(RESOURCE, bucketId="b-1", eventType="OBJECT_FINALIZE")) == answer
    ((_path, headers, body),) = _Target.received
    assert headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert headers["ce-source"] == "//storage.googleapis.com/projects/_/buckets/b-1"
    assert headers["ce-subject"] == "objects/jobs/j/tiles/r000_c001.tif"
    assert headers["ce-id"] == "77" and headers["ce-time"] == "2026-01-02T03:04:05.000Z"
    assert json.loads(body) == json.loads(RESOURCE)


@pytest.mark.parametrize(
    "attributes",
    [{"bucketId": "b-2", "eventType": "OBJECT_FINALIZE"}, {"bucketId": "b-1", "eventType": "OBJECT_DELETE"}, {}],
)
def test_adapter_acknowledges_notifications_not_for_its_trigger(adapter, attributes):
    base, target = adapter
    url = endpoint_url(base, STORAGE, f"{target}/status/200", bucket="b-1", type="google.cloud.storage.object.v1.finalized")
    assert _post(url, _envelope(RESOURCE, **attributes)) == 204
    assert _Target.received == []


def test_adapter_refuses_what_is_not_a_push_envelope_and_reports_a_dead_destination(adapter):
    base, target = adapter
    url = endpoint_url(base, STORAGE, f"{target}/status/200", bucket="b-1")
    assert _post(url, b"{not json") == 400
    assert _post(url, _envelope(b"not a resource", bucketId="b-1", eventType="OBJECT_FINALIZE")) == 400
    assert _post(base + "/elsewhere", _envelope(RESOURCE)) == 400
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    assert _post(endpoint_url(base, PUBSUB, dead, topic="projects/p/topics/t"), _envelope(b"x")) == 502
    assert _Target.received == []
