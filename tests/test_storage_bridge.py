"""fake-gcs-server -> Pub/Sub notifications -> Eventarc-style finalized CloudEvents, and GDAL /vsigs/ reads."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import rasterio
from affine import Affine
from google.api_core.exceptions import PreconditionFailed
from google.cloud import storage
from handlers.support import EVENT_RECORDER, clean_environ, read_records, wait_for_records, write_topology
from rasterio.windows import Window

from localcloud import LocalCloud

WATCHED, OTHER = "watched-bucket", "other-bucket"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """Storage + Pub/Sub + a @cloud_event recorder triggered by finalize events of one bucket."""
    base = tmp_path_factory.mktemp("storage-cloud")
    records = base / "records"
    records.mkdir()
    topology = write_topology(
        base / "topology.toml",
        f"""
project = "test-project"
buckets = ["{WATCHED}", "{OTHER}"]
[pubsub]
port = 0
[storage]
port = 0
[functions.events]
source = "{EVENT_RECORDER}"
target = "record_event"
signature_type = "cloudevent"
port = 0
threads = 4
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


def test_generation_precondition_is_enforced(cloud, gcs):
    blob = gcs.bucket(WATCHED).blob(f"once-{uuid.uuid4().hex}")
    blob.upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"second", if_generation_match=0)
    assert blob.download_as_bytes() == b"first"


def test_gdal_reads_a_window_of_a_cog_through_vsigs(cloud, gcs, tmp_path):
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
    with rasterio.Env(CPL_GS_ENDPOINT=env["CPL_GS_ENDPOINT"], GS_NO_SIGN_REQUEST="YES", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(f"/vsigs/{OTHER}/{name}") as src:
            assert (src.width, src.height, src.count) == (700, 600, 3)
            block = src.read(window=window)
    np.testing.assert_array_equal(block, pixels[:, 211:275, 333:430])
