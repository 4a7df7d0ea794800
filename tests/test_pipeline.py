"""End to end on the local cloud: real function servers, push delivery with retries, finalize events."""

from __future__ import annotations

import json
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
from handlers.record_lines import complete_lines
import rasterio
import rasterio.errors
from pipeline_support import EMULATOR_KINDS, RESULTS, WORK, full_cloud, make_series
from rio_cogeo.cogeo import cog_validate
from stac_support import stac_servers  # noqa: F401 - a fixture

from localcloud import publisher_client, subscriber_client
from temporal_median.base import storage
from temporal_median.base.clock import isoformat, utcnow
from temporal_median.base.grid import Grid, TileId, Window
from temporal_median.base.storage import GsUrl
from temporal_median.compute.median import compute_median
from temporal_median.compute.tile import read_window
from temporal_median.job.manifest import Manifest
from temporal_median.job.paths import JobPaths
from temporal_median.raster.read import inspect_inputs


@pytest.fixture(scope="module", params=EMULATOR_KINDS)
def cloud(request, tmp_path_factory):
    """The pipeline's own topology on free ports, with fast retries, on each Pub/Sub emulator."""
    with full_cloud(tmp_path_factory.mktemp(f"pipeline-{request.param}"), emulator=request.param) as local:
        yield local


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    # 1100 x 700 with 512 windows: 3 x 2 tiles, edges of 76 and 188 px.
    return make_series(tmp_path_factory.mktemp("e2e-series"), scenes=8, width=1100, height=700, seed=11)


def call(cloud, method, path, body=None):
    url = cloud.function_url("fanout").rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_state(cloud, job_id, states, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        code, status = call(cloud, "GET", f"/jobs/{job_id}")
        assert code == 200, status
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status['state']}: {status['tiles']}"
        time.sleep(0.3)


def log_lines(cloud, function, needle):
    # The function is still appending: a half-written last line is left for the next look.
    return [line for line in complete_lines(cloud.run_dir / "logs" / f"function-{function}.log") if needle in line]


def expected_median(series, method):
    raster = inspect_inputs(series)
    stack = read_window(series, Window(0, 0, raster.width, raster.height))
    return compute_median(stack, method), raster


def test_mosaic_equals_the_core_result_pixel_for_pixel(cloud, series, tmp_path):
    code, job = call(cloud, "POST", "/jobs", {"inputs": str(Path(series[0]).parent), "tile_size": 512})
    assert code == 202 and job["tiles"] == 6, job
    status = wait_state(cloud, job["job_id"], {"complete", "failed", "mosaic-failed"})
    assert status["state"] == "complete", status
    cog = tmp_path / "median.tif"
    storage.download_file(GsUrl.parse(status["mosaic"]["cog"]), str(cog))
    expected, raster = expected_median(series, "luminance")
    with rasterio.open(cog) as ds:
        assert ds.count == 4 and ds.nodata == 0 and ds.dtypes[0] == "uint8"
        assert ds.crs.to_string() == raster.crs and tuple(ds.transform)[:6] == tuple(raster.transform)
        assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)
        assert np.array_equal(ds.read(4), np.minimum(expected.count, 255))
        assert ds.overviews(1), "the mosaic COG has overviews"
    assert cog_validate(str(cog))[0]
    record = status["mosaic"]["figures"]
    assert record["tiles"] == 6 and record["inputs"] == 8 and record["seconds_fanout_to_mosaic"] > 0
    # The tiles, downloaded from gs://, gave the COG their blocks as they are.
    assert record["full_resolution"] == "tile blocks copied", record["full_resolution"]
    # Finalize events of the last tiles race: exactly one invocation built the mosaic.
    assert len(log_lines(cloud, "mosaic", '"mosaic built"')) == 1


@pytest.mark.parametrize(
    "crs, pixel_size, origin",
    [("EPSG:4326", 0.0002, (1.2, 43.8)), ("EPSG:3035", 20.0, (3500000.0, 2400000.0))],
)
def test_any_crs_and_pixel_size(cloud, tmp_path_factory, crs, pixel_size, origin):
    folder = tmp_path_factory.mktemp("crs-series")
    series = make_series(folder, scenes=5, width=600, height=400, seed=5, crs=crs, pixel_size=pixel_size, origin=origin)
    code, job = call(cloud, "POST", "/jobs", {"inputs": str(folder), "tile_size": 256})
    assert code == 202 and job["tiles"] == 6, job
    status = wait_state(cloud, job["job_id"], {"complete", "failed", "mosaic-failed"})
    assert status["state"] == "complete", status
    cog = folder.parent / f"{folder.name}-median.tif"
    storage.download_file(GsUrl.parse(status["mosaic"]["cog"]), str(cog))
    expected, raster = expected_median(series, "luminance")
    with rasterio.open(cog) as ds, rasterio.open(series[0]) as scene:
        assert ds.crs == scene.crs and ds.transform.almost_equals(scene.transform)
        assert ds.transform.a == pytest.approx(pixel_size) and ds.transform.c == pytest.approx(origin[0])
        assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)


def test_run_command_copies_results_and_matches_per_band(cloud, series, tmp_path):
    from temporal_median_cli.run import main

    out = tmp_path / "out"
    assert main([str(Path(series[0]).parent), str(out), "--tile-size", "256", "--method", "per-band", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["collection.json", "item.json", "job.json", "median.tif", "quicklook.png", "timeline.png"]
    expected, _ = expected_median(series, "per-band")
    with rasterio.open(out / "median.tif") as ds:
        assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a PNG has no georeferencing
        ql = rasterio.open(out / "quicklook.png")
    with ql:
        assert ql.driver == "PNG" and max(ql.width, ql.height) <= 1024
    assert json.loads((out / "job.json").read_text())["method"] == "per-band"


def test_cancel_stops_the_work_and_posting_again_resumes(cloud, tmp_path_factory):
    series = make_series(tmp_path_factory.mktemp("cancel-series"), scenes=6, width=1500, height=1100, seed=3)
    body = {"inputs": str(Path(series[0]).parent), "tile_size": 256}
    code, job = call(cloud, "POST", "/jobs", body)
    assert code == 202 and job["tiles"] == 30
    code, cancelled = call(cloud, "DELETE", f"/jobs/{job['job_id']}")
    assert code == 200 and cancelled["state"] == "cancelled"
    # Wait until the remaining messages have been acknowledged without work.
    deadline = time.monotonic() + 60
    while len(log_lines(cloud, "median", job["job_id"])) < 30 and time.monotonic() < deadline:
        time.sleep(0.2)
    status = wait_state(cloud, job["job_id"], {"cancelled"})
    done = status["tiles"]["done"]
    assert done < 30 and status["mosaic"]["state"] == "pending"
    assert len(log_lines(cloud, "median", "job cancelled: acknowledging without work")) >= 30 - done - 2
    code, resumed = call(cloud, "POST", "/jobs", body)
    assert code == 202 and (resumed["published"], resumed["already_done"]) == (30 - done, done)
    assert wait_state(cloud, job["job_id"], {"complete", "failed"})["state"] == "complete"


def test_a_window_that_always_fails_is_failed_after_its_attempts_and_not_dead_lettered(cloud, series):
    # A job whose one window reads from a host that refuses connections: a transient error, every time.
    job_id = "always-fails"
    raster = inspect_inputs(series)
    manifest = Manifest(
        job_id=job_id,
        datasets=(series[0], "https://127.0.0.1:9/refused_TCI.tif"),
        grid=Grid(raster.width, raster.height, 4096),
        raster=raster,
        method="luminance",
        output=f"gs://{RESULTS}",
        created=isoformat(utcnow()),
        work=f"gs://{WORK}",
    )
    storage.create_json(JobPaths.of(f"gs://{WORK}", job_id).manifest, manifest.to_dict())
    message = manifest.message(TileId(0, 0))
    env = cloud.env()
    publisher = publisher_client(env["PUBSUB_EMULATOR_HOST"])
    publisher.publish(publisher.topic_path("local-project", "windows"), message.to_bytes(), **message.attributes()).result()

    status = wait_state(cloud, job_id, {"failed"}, timeout=60)
    failure = status["failed"]["r000_c000"]
    assert failure["code"] == "attempts_exhausted" and "5 attempts failed" in failure["reason"]
    assert "127.0.0.1:9" in failure["reason"]
    assert len(log_lines(cloud, "median", '"tile failed, will be retried')) == 4
    assert status["mosaic"]["state"] == "pending"
    assert storage.read_json(GsUrl.parse(f"gs://{RESULTS}/{job_id}/job.json")) is None
    # Acknowledged on its last attempt: the dead-letter topic, a safety net, stays empty.
    subscriber = subscriber_client(env["PUBSUB_EMULATOR_HOST"])
    path = subscriber.subscription_path("local-project", "windows-dead-letter-sub")
    received = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=5).received_messages
    assert not [r for r in received if r.message.attributes.get("job_id") == job_id]


def test_a_window_published_twice_gives_one_identical_tile(cloud, series, tmp_path):
    code, job = call(cloud, "POST", "/jobs", {"inputs": str(Path(series[0]).parent), "tile_size": 1024})
    assert code == 202
    wait_state(cloud, job["job_id"], {"complete"})
    paths = JobPaths.of(f"gs://{WORK}", job["job_id"])
    tile = paths.tile(TileId(0, 1))
    before = tmp_path / "before.tif"
    storage.download_file(tile, str(before))
    storage.delete(tile)
    manifest = Manifest.from_dict(storage.read_json(paths.manifest))
    message = manifest.message(TileId(0, 1))
    env = cloud.env()
    publisher = publisher_client(env["PUBSUB_EMULATOR_HOST"])
    topic = publisher.topic_path("local-project", "windows")
    futures = [publisher.publish(topic, message.to_bytes(), **message.attributes()) for _ in range(2)]
    for future in futures:
        future.result()
    # One log line for the first computation, then one per delivery of the duplicate pair.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(
        [l for l in log_lines(cloud, "median", '"tile": "r000_c001"') if job["job_id"] in l]
    ) < 3:
        time.sleep(0.2)
    after = tmp_path / "after.tif"
    storage.download_file(tile, str(after))
    with rasterio.open(before) as a, rasterio.open(after) as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform
    names = [info.url.key for info in storage.list_objects(paths.tiles)]
    assert names.count(tile.key) == 1


def test_a_stac_search_job_is_the_median_of_exactly_the_selected_scenes(cloud, series, tmp_path, stac_servers):
    items = json.loads((Path(series[0]).parent / "items.json").read_text())["features"]
    api = stac_servers(items, name="pipeline-stac")
    by_url = {i["assets"]["visual"]["href"]: i["properties"] for i in items}
    days = sorted(p["datetime"][:10] for p in by_url.values())
    # The search narrows the dates on the server; the cloud ceiling drops more in fanout.
    in_range = [url for url in series if days[1] <= by_url[url]["datetime"][:10] <= days[6]]
    ceiling = sorted(by_url[url]["eo:cloud_cover"] for url in in_range)[-2]
    selected = [url for url in in_range if by_url[url]["eo:cloud_cover"] <= ceiling]
    assert 2 <= len(selected) < len(in_range) < len(series)
    body = {"stac": {"url": api.url, "collections": ["sample"], "datetime": f"{days[1]}/{days[6]}T23:59:59Z"},
            "asset": "visual", "max_cloud": ceiling, "tile_size": 512}
    code, job = call(cloud, "POST", "/jobs", body)
    assert code == 202 and job["inputs"] == len(selected), job
    status = wait_state(cloud, job["job_id"], {"complete", "failed", "mosaic-failed"})
    assert status["state"] == "complete", status
    assert [s["url"] for s in status["scenes"]["kept"]] == selected
    cog = tmp_path / "median.tif"
    storage.download_file(GsUrl.parse(status["mosaic"]["cog"]), str(cog))
    expected, _ = expected_median(selected, "luminance")
    with rasterio.open(cog) as ds:
        assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)
        assert np.array_equal(ds.read(4), np.minimum(expected.count, 255))
    # The CLI takes the same selection over the ItemCollection file.
    from temporal_median_cli.run import main

    out = tmp_path / "cli"
    argv = [str(Path(series[0]).parent / "items.json"), str(out), "--tile-size", "512", "--no-progress",
            "--start", days[1], "--end", days[6], "--max-cloud", str(ceiling)]
    assert main(argv) == 0
    record = json.loads((out / "job.json").read_text())
    assert record["job_id"] == job["job_id"] and record["inputs"] == len(selected)
