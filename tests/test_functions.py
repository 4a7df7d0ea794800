"""The three functions through functions-framework's test client, against the storage and Pub/Sub emulators."""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
from area_support import BBOX, median_oracle, oracle, write_area_series
from functions_framework import create_app
from pipeline_support import (
    RESULTS,
    WORK,
    emulators,
    environment,
    function_env,
    make_series,
)

from localcloud import subscriber_client
from temporal_median.base import storage
from temporal_median.base.errors import MosaicBusy
from temporal_median.base.grid import TileId
from temporal_median.base.settings import get_settings
from temporal_median.base.storage import GsUrl
from temporal_median.compute.tile import compute_tile
from temporal_median.functions.mosaic import handle_object
from temporal_median.job.paths import JobPaths

# Draining a pull subscription without waiting needs return_immediately, deprecated but served.
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "fixtures" / "events"
WIDTH, HEIGHT, TILE = 600, 420, 256  # 3 x 2 windows, edge windows of 88 and 164 px


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("functions-cloud")
    local = emulators(base)
    with environment(function_env(local, TM_MAX_ATTEMPTS="3", TM_MOSAIC_LOCK_SECONDS="3")):
        yield local
    local.down()


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("series"), scenes=6, width=WIDTH, height=HEIGHT)


@pytest.fixture(scope="module")
def apps(cloud):
    def client(name, signature):
        return create_app(name, str(ROOT / "functions" / name / "main.py"), signature).test_client()

    return {"fanout": client("fanout", "http"), "median": client("median", "http"), "mosaic": client("mosaic", "cloudevent")}


@pytest.fixture()
def pull(cloud):
    """Pull (and ack) every message currently on the windows topic's pull subscription."""
    subscriber = subscriber_client(cloud.env()["PUBSUB_EMULATOR_HOST"])
    path = subscriber.subscription_path("local-project", "windows-pull")

    def drain():
        messages = []
        while True:
            response = subscriber.pull(
                request={"subscription": path, "max_messages": 1000, "return_immediately": True}, timeout=10
            )
            if not response.received_messages:
                return messages
            subscriber.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]})
            messages.extend(m.message for m in response.received_messages)

    drain()
    return drain


def post(apps, body, **kwargs):
    return apps["fanout"].post("/jobs", data=json.dumps(body), content_type="application/json", **kwargs)


def envelope(message, attempt=1, publish_time=None):
    """A push envelope; ``attempt=None`` leaves out deliveryAttempt, as Google's emulator does."""
    publish_time = publish_time or datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    if attempt is None:
        return {key: value for key, value in envelope(message, 1, publish_time).items() if key != "deliveryAttempt"}
    return {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id or "m-1",
            "publishTime": publish_time,
        },
        "subscription": "projects/local-project/subscriptions/windows-median",
        "deliveryAttempt": attempt,
    }


def push(apps, message, **kwargs):
    return apps["median"].post("/", data=json.dumps(envelope(message, **kwargs)), content_type="application/json")


def start(apps, pull, series, **body):
    answer = post(apps, {"inputs": str(Path(series[0]).parent), "tile_size": TILE, **body})
    assert answer.status_code == 202, answer.get_json()
    messages = pull()
    assert len(messages) == answer.get_json()["published"]
    return answer.get_json(), {m.attributes["tile"]: m for m in messages}


def status(apps, job_id):
    answer = apps["fanout"].get(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def read_tile(job_id, tile, tmp_path):
    path = tmp_path / f"{job_id}-{tile}.tif"
    storage.download_file(JobPaths.of(f"gs://{WORK}", job_id).tile(TileId.parse(tile)), str(path))
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.crs


# -- fanout -------------------------------------------------------------------------------------


def test_post_writes_the_manifest_then_publishes_one_message_per_window(apps, pull, series):
    job, messages = start(apps, pull, series, job_id="fanout-basic")
    assert (job["tiles"], job["published"], job["already_done"], job["inputs"]) == (6, 6, 0, 6)
    manifest = storage.read_json(JobPaths.of(f"gs://{WORK}", "fanout-basic").manifest)
    assert manifest["datasets"] == series and manifest["grid"] == {"width": WIDTH, "height": HEIGHT, "tile_size": TILE}
    windows = {tile: json.loads(m.data)["window"] for tile, m in messages.items()}
    assert windows["r000_c000"] == [0, 0, 256, 256]
    assert windows["r001_c002"] == [512, 256, 88, 164]
    assert all(json.loads(m.data)["datasets"] == series for m in messages.values())


def test_job_id_is_derived_so_posting_twice_is_the_same_job(apps, pull, series):
    first, _ = start(apps, pull, series)
    second, _ = start(apps, pull, series)
    assert first["job_id"] == second["job_id"] and first["job_id"].startswith("job-")
    other, _ = start(apps, pull, series, method="per-band")
    assert other["job_id"] != first["job_id"]


def test_same_job_id_with_other_parameters_is_a_conflict(apps, pull, series):
    start(apps, pull, series, job_id="conflicting")
    answer = post(apps, {"inputs": str(Path(series[0]).parent), "tile_size": 512, "job_id": "conflicting"})
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "job_conflict"
    assert pull() == []


def test_a_scene_on_another_grid_makes_an_area_job_on_the_union_grid(apps, pull, series, tmp_path):
    # Before areas, a scene of another size was refused; now it is a footprint like any other.
    for path in series[:3]:
        shutil.copy(path, tmp_path)
    odd = tmp_path / "T31TCJ_20231231T000000_TCI.tif"
    with rasterio.open(series[0]) as src:
        profile = src.profile | {"width": WIDTH - 300, "transform": src.transform @ rasterio.Affine.translation(300, 0)}
        data = src.read(window=((0, HEIGHT), (300, WIDTH)))
    with rasterio.open(odd, "w", **profile) as dst:
        dst.write(data)
    answer = post(apps, {"inputs": str(tmp_path), "job_id": "other-grid", "tile_size": TILE})
    assert answer.status_code == 202, answer.get_json()
    manifest = storage.read_json(JobPaths.of(f"gs://{WORK}", "other-grid").manifest)
    assert manifest["raster"]["width"] == WIDTH and manifest["raster"]["crs"] == "EPSG:32631"
    assert len(manifest["area"]["observations"]) == 4
    # The window west of the odd scene's footprint does not read it.
    messages = {m.attributes["tile"]: json.loads(m.data) for m in pull()}
    assert str(odd) not in messages["r000_c000"]["datasets"] and str(odd) in messages["r000_c002"]["datasets"]


def first_scene_wrong(series, folder: Path, **changes) -> dict:
    """A request whose first scene (the earliest stamp) differs from the rest by ``changes``."""
    folder.mkdir()
    for path in series:
        shutil.copy(path, folder)
    first = folder / "T31TCJ_20000101T000000_TCI.tif"
    with rasterio.open(series[0]) as src:
        data, profile = src.read(), src.profile
    count = changes.get("count", profile["count"])
    data = np.concatenate([data, data[:1]])[:count]
    with rasterio.open(first, "w", **(profile | changes)) as dst:
        dst.write(data.astype(changes.get("dtype", "uint8")))
    return {"inputs": str(folder), "job_id": f"first-{folder.name}", "_names": first.name}


@pytest.mark.parametrize(
    "body, status_code, code",
    [
        ({"inputs": "/nonexistent/dir"}, 400, "input_unreadable"),
        ({"inputs": "gs://tm-work/no-such-prefix/"}, 400, "no_inputs"),
        ({"inputs": "gs://tm-work/x", "method": "mean"}, 400, "invalid_request"),
        ({"inputs": "gs://tm-work/x", "tile_size": 8192}, 400, "invalid_request"),
        ({"inputs": "gs://no-such-bucket/x/", "_names": "no-such-bucket"}, 400, "input_unreadable"),
        # The first scene is the reference every other is checked against; it is checked too.
        (lambda series, tmp: first_scene_wrong(series, tmp / "uint16", dtype="uint16"), 400, "input_mismatch"),
        (lambda series, tmp: first_scene_wrong(series, tmp / "four-band", count=4), 400, "input_mismatch"),
    ],
    ids=["missing-dir", "empty-prefix", "bad-method", "huge-tile", "no-bucket", "first-scene-uint16", "first-scene-4-band"],
)
def test_bad_requests_get_json_errors_and_publish_nothing(apps, pull, series, tmp_path, body, status_code, code):
    body = dict(body(series, tmp_path) if callable(body) else body)
    named = body.pop("_names", None)
    answer = post(apps, body)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (status_code, code)
    if named:
        assert named in answer.get_json()["error"]["message"]
    if "job_id" in body:
        assert storage.read_json(JobPaths.of(f"gs://{WORK}", body["job_id"]).manifest) is None
    assert pull() == []


def test_request_limits(apps, pull):
    huge = {"inputs": [f"/d/{i:06d}.tif" for i in range(get_settings().max_inputs + 1)]}
    assert post(apps, huge).status_code == 413
    big_body = json.dumps({"inputs": "/d", "job_id": "x" * (2 << 20)})
    assert apps["fanout"].post("/jobs", data=big_body, content_type="application/json").status_code == 413
    assert apps["fanout"].post("/jobs", data="not json", content_type="application/json").status_code == 400
    assert apps["fanout"].put("/jobs").status_code == 405
    assert pull() == []


def test_status_of_an_unknown_job_is_404(apps):
    answer = apps["fanout"].get("/jobs/no-such-job")
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "job_not_found"
    assert apps["fanout"].get("/jobs/Bad%20Id").status_code == 400


# -- median -------------------------------------------------------------------------------------


def test_median_writes_the_tile_the_core_computes_from_each_push_form(apps, pull, series, tmp_path):
    job, messages = start(apps, pull, series, job_id="median-forms")
    message = messages["r001_c002"]
    answer = push(apps, message)
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "written"
    pixels, transform, crs = read_tile("median-forms", "r001_c002", tmp_path)
    from temporal_median.base.grid import Window

    expected_path = tmp_path / "expected.tif"
    compute_tile(series, Window(512, 256, 88, 164), str(expected_path))
    with rasterio.open(expected_path) as ds:
        assert np.array_equal(ds.read(), pixels) and ds.transform == transform and ds.crs == crs

    # The binary and structured CloudEvent forms (as Eventarc delivers) decode to the same work.
    for name in ("pubsub_cloudevent_binary.json", "pubsub_cloudevent_structured.json"):
        event = json.loads((EVENTS / name).read_text())
        tile = "r000_c000" if "binary" in name else "r000_c001"
        body = event["body"]
        inner = body["data"] if "data" in body and "specversion" in body else body
        inner["message"]["data"] = base64.b64encode(messages[tile].data).decode()
        inner["message"]["attributes"] = dict(messages[tile].attributes)
        inner["message"]["publishTime"] = datetime.now(timezone.utc).isoformat()
        answer = apps["median"].post("/", data=json.dumps(body), headers=event["headers"])
        assert answer.status_code == 200 and answer.get_json()["outcome"] == "written", answer.get_json()
        assert storage.exists(JobPaths.of(f"gs://{WORK}", "median-forms").tile(TileId.parse(tile)))


def test_redelivery_does_no_work_and_keeps_the_tile(apps, pull, series, tmp_path):
    _, messages = start(apps, pull, series, job_id="median-twice")
    url = JobPaths.of(f"gs://{WORK}", "median-twice").tile(TileId(0, 0))
    assert push(apps, messages["r000_c000"]).get_json()["outcome"] == "written"
    generation = storage.generation(url)
    assert push(apps, messages["r000_c000"], attempt=2).get_json()["outcome"] == "already-done"
    assert storage.generation(url) == generation


def test_concurrent_deliveries_of_one_window_give_one_identical_tile(apps, pull, series, tmp_path):
    _, messages = start(apps, pull, series, job_id="median-race")
    outcomes = []

    def deliver():
        outcomes.append(push(apps, messages["r001_c000"]).get_json()["outcome"])

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("written") == 1 and len(outcomes) == 3
    listing = list(storage.list_objects(JobPaths.of(f"gs://{WORK}", "median-race").tiles))
    assert [info.url.key.rsplit("/", 1)[-1] for info in listing] == ["r001_c000.tif"]


def test_malformed_messages_are_acknowledged_and_recorded(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="median-malformed")
    bad = envelope(messages["r000_c000"])
    bad["message"]["data"] = base64.b64encode(b'{"version": 1, "job_id": "median-malformed"}').decode()
    answer = apps["median"].post("/", data=json.dumps(bad), content_type="application/json")
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "failed-permanently"
    state = status(apps, "median-malformed")
    assert state["failed"]["r000_c000"]["permanent"] and "lacks" in state["failed"]["r000_c000"]["reason"]
    # Not even an envelope: acknowledged (a retry cannot fix it), nothing written.
    answer = apps["median"].post("/", data="garbage", content_type="application/json")
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "malformed"


def test_message_for_another_work_location_is_refused(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="median-foreign")
    body = json.loads(messages["r000_c000"].data)
    body["work"] = f"gs://{RESULTS}"
    body["destination"] = f"gs://{RESULTS}/jobs/median-foreign/tiles/r000_c000.tif"
    forged = envelope(messages["r000_c000"])
    forged["message"]["data"] = base64.b64encode(json.dumps(body).encode()).decode()
    answer = apps["median"].post("/", data=json.dumps(forged), content_type="application/json")
    assert answer.get_json()["outcome"] == "failed-permanently"
    assert not storage.exists(GsUrl.parse(body["destination"]))


def test_missing_input_is_a_permanent_failure_shown_in_status(apps, pull, series, tmp_path):
    for path in series:
        shutil.copy(path, tmp_path)
    answer = post(apps, {"inputs": str(tmp_path), "tile_size": TILE, "job_id": "median-missing"})
    messages = {m.attributes["tile"]: m for m in pull()}
    Path(tmp_path / Path(series[2]).name).unlink()
    answer = push(apps, messages["r000_c000"])
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "failed-permanently"
    state = status(apps, "median-missing")
    assert state["tiles"]["failed"] == 1 and Path(series[2]).name in state["failed"]["r000_c000"]["reason"]
    assert state["state"] == "running"  # the other windows are still to come


def test_transient_failures_are_counted_by_median_not_by_delivery_attempt(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="median-transient")
    body = json.loads(messages["r000_c000"].data)
    body["datasets"][1] = "https://127.0.0.1:9/unreachable_TCI.tif"  # nothing listens on port 9
    message = envelope(messages["r000_c000"], attempt=None)  # no deliveryAttempt, as on Google's emulator
    message["message"]["data"] = base64.b64encode(json.dumps(body).encode()).decode()
    for attempt in (1, 2):  # TM_MAX_ATTEMPTS=3 in this module
        answer = apps["median"].post("/", data=json.dumps(message), content_type="application/json")
        assert answer.status_code == 503 and answer.get_json()["outcome"] == "retry"
        state = status(apps, "median-transient")
        assert state["retrying"]["r000_c000"]["attempt"] == attempt and state["tiles"]["failed"] == 0
    # The third, last, attempt fails too: the window is failed, with its reason, and acknowledged.
    answer = apps["median"].post("/", data=json.dumps(message), content_type="application/json")
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "failed-permanently"
    state = status(apps, "median-transient")
    reason = state["failed"]["r000_c000"]["reason"]
    assert "3 attempts failed" in reason and "unreachable_TCI.tif" in reason and "r000_c000" not in state["retrying"]
    # A redelivery after that (a duplicate) changes nothing.
    answer = apps["median"].post("/", data=json.dumps(message), content_type="application/json")
    assert answer.status_code == 200 and status(apps, "median-transient")["tiles"]["failed"] == 1
    assert state["failed"]["r000_c000"]["code"] == "attempts_exhausted"
    # A re-post gives the window a fresh budget.
    again, republished = start(apps, pull, series, job_id="median-transient")
    assert "r000_c000" in republished and status(apps, "median-transient")["tiles"]["failed"] == 0


def test_an_attempt_that_died_without_a_record_still_counts(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="median-died")
    paths = JobPaths.of(f"gs://{WORK}", "median-died")
    for number in (1, 2, 3):  # three instances killed mid-tile: attempts claimed, no error written
        assert storage.create_json(paths.attempt(TileId(0, 0), number), {"started": "2026-12-01T00:00:00Z"})
    answer = push(apps, messages["r000_c000"])
    assert answer.get_json()["outcome"] == "failed-permanently"
    reason = status(apps, "median-died")["failed"]["r000_c000"]["reason"]
    assert "3 attempt(s) ended without an error record" in reason
    assert not storage.exists(paths.tile(TileId(0, 0)))


def test_old_events_are_dropped(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="median-old")
    old = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    answer = push(apps, messages["r000_c000"], publish_time=old)
    assert answer.get_json()["outcome"] == "too-old"
    assert not storage.exists(JobPaths.of(f"gs://{WORK}", "median-old").tile(TileId(0, 0)))


def test_cancelled_job_messages_do_no_work_and_posting_again_resumes(apps, pull, series):
    job, messages = start(apps, pull, series, job_id="median-cancel")
    assert push(apps, messages["r000_c000"]).get_json()["outcome"] == "written"
    answer = apps["fanout"].delete("/jobs/median-cancel")
    assert answer.status_code == 200 and answer.get_json()["state"] == "cancelled"
    assert push(apps, messages["r000_c001"]).get_json()["outcome"] == "cancelled"
    assert not storage.exists(JobPaths.of(f"gs://{WORK}", "median-cancel").tile(TileId(0, 1)))
    resumed, again = start(apps, pull, series, job_id="median-cancel")
    assert (resumed["published"], resumed["already_done"]) == (5, 1) and "r000_c000" not in again
    assert status(apps, "median-cancel")["state"] == "running"


# -- mosaic -------------------------------------------------------------------------------------


def finalized(name, bucket=WORK):
    event = json.loads((EVENTS / "storage_finalized_binary.json").read_text())
    headers = dict(event["headers"])
    headers["ce-subject"] = f"objects/{name}"
    headers["ce-source"] = f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    body = dict(event["body"], name=name, bucket=bucket)
    return headers, json.dumps(body)


def complete_tiles(apps, pull, series, job_id, **body):
    _, messages = start(apps, pull, series, job_id=job_id, **body)
    for message in messages.values():
        assert push(apps, message).get_json()["outcome"] == "written"
    return messages


def test_mosaic_ignores_objects_that_are_not_tiles(apps, pull, series):
    complete_tiles(apps, pull, series, "mosaic-ignore")
    for name, bucket in [
        ("jobs/mosaic-ignore/manifest.json", WORK),
        ("jobs/mosaic-ignore/mosaic.lock", WORK),
        ("mosaic-ignore/median.tif", RESULTS),
        ("jobs/mosaic-ignore/tiles/r000_c000.tif", RESULTS),
    ]:
        headers, body = finalized(name, bucket)
        assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200
    assert storage.read_json(GsUrl.parse(f"gs://{RESULTS}/mosaic-ignore/job.json")) is None


def test_last_tile_builds_the_mosaic_once_even_when_events_race(apps, pull, series, tmp_path):
    complete_tiles(apps, pull, series, "mosaic-race")
    settings = get_settings()
    outcomes = []
    barrier = threading.Barrier(4)

    def event(tile):
        barrier.wait()
        try:
            outcomes.append(handle_object(WORK, f"jobs/mosaic-race/tiles/{tile}.tif", settings))
        except MosaicBusy:
            outcomes.append("busy")  # answered 500: redelivered, then finds the job complete

    threads = [threading.Thread(target=event, args=(t,)) for t in ("r000_c000", "r001_c002", "r001_c002", "r000_c001")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("built") == 1, outcomes
    assert set(outcomes) <= {"built", "busy", "already-complete"}
    # A redelivered event after completion does nothing.
    headers, body = finalized("jobs/mosaic-race/tiles/r000_c000.tif")
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200
    record = storage.read_json(GsUrl.parse(f"gs://{RESULTS}/mosaic-race/job.json"))
    assert record["tiles"] == 6 and record["width"] == WIDTH and record["bytes_read"] > 0
    cost = record["cost_estimate"]
    assert cost["usage"]["windows"] == 6 and cost["usage"]["scenes"] == 6 and cost["usage"]["median_seconds"] > 0
    assert cost["usage"]["bytes_read"] == record["bytes_read"] and 0 < cost["usd_total"] < 0.01
    state = status(apps, "mosaic-race")
    assert state["state"] == "complete" and state["mosaic"]["figures"]["job_id"] == "mosaic-race"


def test_mosaic_waits_for_every_tile_and_never_for_a_failed_job(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="mosaic-failed")
    bad = envelope(messages["r000_c000"])
    bad["message"]["data"] = base64.b64encode(b"{}").decode()
    apps["median"].post("/", data=json.dumps(bad), content_type="application/json")
    for tile, message in messages.items():
        if tile != "r000_c000":
            push(apps, message)
    headers, body = finalized("jobs/mosaic-failed/tiles/r001_c002.tif")
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200
    assert handle_object(WORK, "jobs/mosaic-failed/tiles/r001_c002.tif", get_settings()) == "waiting"
    state = status(apps, "mosaic-failed")
    assert state["state"] == "failed" and state["mosaic"]["state"] == "pending"
    assert list(state["failed"]) == ["r000_c000"]


def test_corrupt_tile_fails_the_mosaic_permanently_and_a_repost_retries(apps, pull, series, tmp_path):
    complete_tiles(apps, pull, series, "mosaic-corrupt")
    tile = JobPaths.of(f"gs://{WORK}", "mosaic-corrupt").tile(TileId(1, 1))
    good = tmp_path / "good.tif"
    storage.download_file(tile, str(good))
    storage.delete(tile)
    storage.create_bytes(tile, b"II*\x00 not a tiff", "image/tiff")
    headers, body = finalized(tile.key)
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200  # acknowledged, not retried
    state = status(apps, "mosaic-corrupt")
    assert state["state"] == "mosaic-failed" and "r001_c001" in state["mosaic"]["error"]["error"]
    storage.delete(tile)
    storage.create_file(tile, str(good), "image/tiff")
    again, messages = start(apps, pull, series, job_id="mosaic-corrupt")
    assert again["published"] == 0 and messages == {}
    headers, body = finalized("jobs/mosaic-corrupt/resume.json")
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200
    assert status(apps, "mosaic-corrupt")["state"] == "complete"


def test_local_paths_in_messages_are_refused_where_not_allowed(apps, pull, series):
    _, messages = start(apps, pull, series, job_id="median-local")
    with environment({"TM_ALLOW_LOCAL_PATHS": "false"}):
        answer = push(apps, messages["r000_c000"])
    assert answer.get_json()["outcome"] == "failed-permanently"
    assert not storage.exists(JobPaths.of(f"gs://{WORK}", "median-local").tile(TileId(0, 0)))
    assert "local paths are not allowed" in status(apps, "median-local")["failed"]["r000_c000"]["reason"]


def test_the_mosaic_lock_is_released_even_when_the_error_record_cannot_be_written(apps, pull, series, monkeypatch):
    from temporal_median.base.errors import StorageUnavailable
    from temporal_median.functions import mosaic as mosaic_core

    complete_tiles(apps, pull, series, "mosaic-unrecorded")
    paths = JobPaths.of(f"gs://{WORK}", "mosaic-unrecorded")

    def build_fails(*args, **kwargs):
        raise StorageUnavailable("uploading results: HTTP 503")

    def record_fails(url, value):
        raise StorageUnavailable(f"writing {url}: HTTP 503")

    monkeypatch.setattr(mosaic_core, "_build", build_fails)
    monkeypatch.setattr(mosaic_core.storage, "put_json", record_fails)
    headers, body = finalized("jobs/mosaic-unrecorded/tiles/r000_c000.tif")
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 500  # retried
    assert not storage.exists(paths.lock)
    monkeypatch.undo()
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200
    assert status(apps, "mosaic-unrecorded")["state"] == "complete"


def test_a_live_mosaic_lock_asks_for_a_retry_and_a_stale_one_is_taken_over(apps, pull, series):
    from temporal_median.base.clock import isoformat, utcnow

    complete_tiles(apps, pull, series, "mosaic-lease")
    paths = JobPaths.of(f"gs://{WORK}", "mosaic-lease")
    headers, body = finalized("jobs/mosaic-lease/tiles/r000_c000.tif")
    # A live holder (renewed just now): the event is not acknowledged, so it comes back later.
    storage.create_json(paths.lock, {"holder": "elsewhere:1:abc", "time": isoformat(utcnow())})
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 500
    assert status(apps, "mosaic-lease")["state"] == "mosaicking"
    # The holder died: no renewal for longer than TM_MOSAIC_LOCK_SECONDS (3 s here).
    storage.put_json(paths.lock, {"holder": "elsewhere:1:abc", "time": "2026-01-01T00:00:00Z"})
    assert apps["mosaic"].post("/", data=body, headers=headers).status_code == 200
    assert status(apps, "mosaic-lease")["state"] == "complete" and not storage.exists(paths.lock)


def test_the_lease_is_renewed_while_held_and_released_after(cloud):
    import time

    from temporal_median.base.lease import Lease

    url = JobPaths.of(f"gs://{WORK}", "lease-renewal").lock
    lease = Lease.take(url, seconds=1)
    first = storage.read_json(url)["time"]
    with pytest.raises(MosaicBusy):
        Lease.take(url, seconds=1)
    time.sleep(1.2)  # three renewals a lease: every third of a second here
    renewed = storage.read_json(url)["time"]
    assert renewed > first and not lease.lost
    with pytest.raises(MosaicBusy):  # renewed, so never stale while its holder lives
        Lease.take(url, seconds=1)
    lease.release()
    assert not storage.exists(url)


# -- choosing scenes: date range, cloud ceiling, STAC ItemCollections --------------------------


def items_json(series) -> Path:
    return Path(series[0]).parent / "items.json"


def scene_dates(series) -> dict[str, str]:
    """Scene URL -> acquisition day, and cloud cover, from the series' own ItemCollection."""
    items = json.loads(items_json(series).read_text())["features"]
    return {i["assets"]["visual"]["href"]: (i["properties"]["datetime"][:10], i["properties"]["eo:cloud_cover"]) for i in items}


def test_a_date_range_keeps_the_scenes_inside_and_lists_the_others_with_reasons(apps, pull, series):
    days = sorted(day for day, _ in scene_dates(series).values())
    start, end = days[1], days[3]
    answer = post(apps, {"inputs": str(Path(series[0]).parent), "tile_size": TILE, "start": start, "end": end,
                         "job_id": "select-dates"})
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["inputs"] == 3 and answer.get_json()["dropped"] == 3
    manifest = storage.read_json(JobPaths.of(f"gs://{WORK}", "select-dates").manifest)
    assert [Path(u).name for u in manifest["datasets"]] == [Path(u).name for u in series[1:4]]
    scenes = status(apps, "select-dates")["scenes"]
    assert scenes["criteria"]["start"] == start and len(scenes["kept"]) == 3
    reasons = {Path(d["url"]).name: d["reason"] for d in scenes["dropped"]}
    assert reasons[Path(series[0]).name] == f"before start {start}"
    assert reasons[Path(series[-1]).name] == f"after end {end}"
    assert len(pull()) == 6  # every window, over the three kept scenes


def test_an_item_collection_with_a_cloud_ceiling_keeps_the_clearer_scenes(apps, pull, series):
    covers = {url: cover for url, (_, cover) in scene_dates(series).items()}
    ceiling = sorted(covers.values())[3]  # keeps the four clearest
    answer = post(apps, {"inputs": str(items_json(series)), "tile_size": TILE, "max_cloud": ceiling, "job_id": "select-clouds"})
    assert answer.status_code == 202, answer.get_json()
    manifest = storage.read_json(JobPaths.of(f"gs://{WORK}", "select-clouds").manifest)
    assert manifest["datasets"] == [url for url in series if covers[url] <= ceiling]
    dropped = status(apps, "select-clouds")["scenes"]["dropped"]
    assert {d["url"] for d in dropped} == {url for url in series if covers[url] > ceiling}
    assert all(d["reason"].startswith("cloud cover ") and f"> {ceiling:g}%" in d["reason"] for d in dropped)
    assert len(pull()) == 6


def test_a_selection_that_keeps_nothing_is_a_400_and_publishes_nothing(apps, pull, series):
    answer = post(apps, {"inputs": str(Path(series[0]).parent), "start": "1990-01-01", "end": "1990-12-31"})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "no_inputs"
    assert "before start" in answer.get_json()["error"]["message"] or "after end" in answer.get_json()["error"]["message"]
    assert pull() == []


@pytest.mark.parametrize(
    "extra, field",
    [({"start": "2023-13-01"}, "start"), ({"end": "yesterday"}, "end"), ({"max_cloud": 101}, "max_cloud"),
     ({"start": "2023-06-01", "end": "2023-01-01"}, "start"), ({"asset": "visual"}, "asset")],
)
def test_bad_selection_fields_are_400s_naming_the_field(apps, pull, series, extra, field):
    answer = post(apps, {"inputs": str(Path(series[0]).parent), **extra})
    assert answer.status_code == 400 and field in answer.get_json()["error"]["message"], answer.get_json()
    assert pull() == []


def test_an_unreachable_stac_api_is_a_503_naming_it_and_nothing_is_written(apps, pull):
    answer = post(apps, {"stac": {"url": "http://127.0.0.1:9/stac", "collections": ["sentinel-2-c1-l2a"]}, "job_id": "stac-down"})
    assert answer.status_code == 503 and "127.0.0.1:9" in answer.get_json()["error"]["message"]
    assert storage.read_json(JobPaths.of(f"gs://{WORK}", "stac-down").manifest) is None
    assert pull() == []


# -- areas: several tiles and UTM zones on one output grid ------------------------------------------


@pytest.fixture(scope="module")
def area_items(tmp_path_factory):
    return write_area_series(tmp_path_factory.mktemp("area-series"))


def test_an_area_job_by_http_equals_the_oracle(apps, pull, area_items, tmp_path):
    body = {"inputs": str(area_items), "bbox": BBOX, "crs": "EPSG:32631", "resolution": 10, "tile_size": TILE,
            "job_id": "area-http"}
    answer = post(apps, body)
    assert answer.status_code == 202, answer.get_json()
    messages = {m.attributes["tile"]: m for m in pull()}
    assert len(messages) == answer.get_json()["tiles"]
    for message in messages.values():
        assert push(apps, message).get_json()["outcome"] == "written"
    last = sorted(messages)[-1]
    headers, event = finalized(f"jobs/area-http/tiles/{last}.tif")
    assert apps["mosaic"].post("/", headers=headers, data=event).status_code == 200
    assert storage.read_json(GsUrl.parse(f"gs://{RESULTS}/area-http/job.json")) is not None
    local = tmp_path / "median.tif"
    storage.download_file(GsUrl.parse(f"gs://{RESULTS}/area-http/median.tif"), str(local))
    with rasterio.open(local) as ds:
        data, crs, transform = ds.read(), ds.crs.to_string(), ds.transform
    items = json.loads(area_items.read_text())["features"]
    lum, _, count = oracle(items, crs, transform, data.shape[2], data.shape[1])
    same = np.all(data[:3] == lum, axis=0) & (data[3] == np.minimum(count, 255))
    assert crs == "EPSG:32631" and same.mean() >= 0.999, f"{np.count_nonzero(~same)} pixels differ"
    state = status(apps, "area-http")
    assert state["state"] == "complete"


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"bbox": [10.0, 50.0, 10.1, 50.1]}, "'bbox': the area touches no scene"),
        ({"bbox": BBOX, "crs": "EPSG:99999"}, "'crs': unknown CRS"),
        ({"bbox": BBOX, "resolution": 0}, "'resolution' must be a positive number"),
        ({"bbox": BBOX, "resolution": 50000}, "'resolution' 50000.0 is coarser than the area"),
        ({"bbox": BBOX, "resolution": 0.05}, "'bbox': the output grid is .* windows"),
        ({"bbox": [0.05, 44.99, -0.05, 45.02]}, "'bbox': west"),
    ],
)
def test_bad_grids_are_400s_naming_the_field_and_publish_nothing(apps, pull, area_items, extra, field):
    answer = post(apps, {"inputs": str(area_items), "job_id": "bad-grid", **extra})
    assert answer.status_code == 400, answer.get_json()
    assert re.search(field, answer.get_json()["error"]["message"]), answer.get_json()
    assert storage.read_json(JobPaths.of(f"gs://{WORK}", "bad-grid").manifest) is None
    assert pull() == []


def test_the_same_cog_in_two_collections_is_one_scene(apps, pull, area_items, tmp_path):
    items = json.loads(area_items.read_text())
    twin = dict(items["features"][0], id="v0-" + items["features"][0]["id"])
    doubled = tmp_path / "doubled.json"
    doubled.write_text(json.dumps({**items, "features": [*items["features"], twin]}))
    answer = post(apps, {"inputs": str(doubled), "job_id": "doubled", "tile_size": TILE})
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["inputs"] == 12 and answer.get_json()["dropped"] == 1
    manifest = storage.read_json(JobPaths.of(f"gs://{WORK}", "doubled").manifest)
    assert [d["reason"] for d in manifest["selection"]["dropped"]] == [f"duplicate of {items['features'][0]['id']} (same href)"]
    pull()


# -- periods and masks: every period's composite from one read, clouds dropped by the SCL ---------------------


def masked_oracle(paths, first, stop, exclude):
    """Brute force for a run of scenes: each 10 m pixel takes its 20 m SCL pixel's class (row // 2, col // 2)."""
    stack = []
    for path in paths[first:stop]:
        with rasterio.open(path) as ds:
            data = ds.read()
        scl_path = Path(path).parent / "scl" / Path(path).name.replace("_TCI", "_SCL")
        with rasterio.open(scl_path) as ds:
            classes = ds.read(1)
        rows, cols = np.arange(data.shape[1]) // 2, np.arange(data.shape[2]) // 2
        data[:, np.isin(classes[rows][:, cols], exclude)] = 0
        stack.append(data)
    return median_oracle(np.stack(stack))


def test_quarters_and_the_whole_range_from_one_read_with_scl_masks(apps, pull, series, tmp_path):
    body = {"inputs": str(Path(series[0]).parent), "tile_size": TILE, "periods": "quarter", "mask": {"asset": "scl"},
            "job_id": "quarters"}
    answer = post(apps, body)
    assert answer.status_code == 202, answer.get_json()
    quarters = ["2023-Q1", "2023-Q2", "2023-Q3", "2023-Q4"]
    assert answer.get_json()["periods"] == quarters and answer.get_json()["empty_periods"] == []
    messages = {m.attributes["tile"]: m for m in pull()}
    runs = json.loads(messages["r000_c000"].data)["periods"]
    assert runs == [["2023-Q1", 0, 2], ["2023-Q2", 2, 3], ["2023-Q3", 3, 4], ["2023-Q4", 4, 6]]
    for message in messages.values():
        assert push(apps, message).get_json()["outcome"] == "written"
    # Each composite's mosaic is its own invocation, started by its last tile's event.
    for prefix in ["", *(f"periods/{q}/" for q in quarters)]:
        headers, event = finalized(f"jobs/quarters/{prefix}tiles/r001_c002.tif")
        assert apps["mosaic"].post("/", headers=headers, data=event).status_code == 200
    state = status(apps, "quarters")
    assert state["state"] == "complete" and set(state["periods"]) == set(quarters)
    exclude = [0, 1, 3, 8, 9, 10]
    for name, (first, stop) in [(None, (0, 6)), ("2023-Q1", (0, 2)), ("2023-Q4", (4, 6))]:
        folder = f"quarters/{name}/" if name else "quarters/"
        local = tmp_path / f"{name}.tif"
        storage.download_file(GsUrl.parse(f"gs://{RESULTS}/{folder}median.tif"), str(local))
        with rasterio.open(local) as ds:
            got = ds.read()
        lum, _, count = masked_oracle(series, first, stop, exclude)
        np.testing.assert_array_equal(got[:3], lum)
        np.testing.assert_array_equal(got[3], np.minimum(count, 255))
        item = storage.read_json(GsUrl.parse(f"gs://{RESULTS}/{folder}item.json"))
        assert item["id"] == ("quarters" if name is None else f"quarters-{name}")
    collection = storage.read_json(GsUrl.parse(f"gs://{RESULTS}/quarters/collection.json"))
    assert len([link for link in collection["links"] if link["rel"] == "item"]) == 5
    gif = tmp_path / "timelapse.gif"
    storage.download_file(GsUrl.parse(f"gs://{RESULTS}/quarters/timelapse.gif"), str(gif))
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 4
    # The periods' records say their reads were the whole range's: one read per scene and window.
    q1 = storage.read_json(GsUrl.parse(f"gs://{RESULTS}/quarters/2023-Q1/job.json"))
    whole = storage.read_json(GsUrl.parse(f"gs://{RESULTS}/quarters/job.json"))
    assert q1["bytes_read"] == 0 and q1["inputs"] == 2 and whole["bytes_read"] > 0


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"periods": "fortnight"}, "'periods': 'fortnight' is neither"),
        ({"periods": "2023-05-01/2023-03-01"}, "runs backwards"),
        ({"periods": "2023-01-01/2023-06-30,2023-06-01/2023-09-30"}, "overlap"),
        ({"mask": {"asset": "scl", "exclude": [42]}}, "unknown class"),
        ({"mask": {"asset": "cloudmask"}}, "'mask': .* has no CLOUDMASK mask"),
    ],
)
def test_bad_periods_and_masks_are_400s_naming_the_field(apps, pull, series, extra, field):
    answer = post(apps, {"inputs": str(Path(series[0]).parent), "job_id": "bad-periods", **extra})
    assert answer.status_code == 400, answer.get_json()
    assert re.search(field, answer.get_json()["error"]["message"]), answer.get_json()
    assert storage.read_json(JobPaths.of(f"gs://{WORK}", "bad-periods").manifest) is None
    assert pull() == []


def test_a_dry_run_plans_the_job_and_writes_and_publishes_nothing(apps, pull, series):
    before = sorted(str(i.url) for i in storage.list_objects(GsUrl.parse(f"gs://{WORK}/")))
    answer = post(apps, {"inputs": str(Path(series[0]).parent), "tile_size": TILE, "job_id": "dry", "dry_run": True})
    assert answer.status_code == 200, answer.get_json()
    plan = answer.get_json()
    assert plan["dry_run"] is True and plan["windows"] == 6 and plan["bytes_to_read"] > 0
    assert plan["prediction"]["wall_seconds"] > 0 and plan["prediction"]["usd_total"] > 0
    assert sorted(str(i.url) for i in storage.list_objects(GsUrl.parse(f"gs://{WORK}/"))) == before
    assert pull() == []
    assert post(apps, {"inputs": "/x", "dry_run": "yes"}).status_code == 400
