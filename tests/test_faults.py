"""Jobs finish by themselves after the faults a deployment meets: instances killed mid-tile or while
building the mosaic, windows refused for capacity, the fanout restarted. Through the running local
cloud and HTTP only; each job ends with a mosaic equal to the core's result.

Each test prints the seconds from the fault to the completed job (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from handlers.record_lines import complete_lines
import rasterio
from pipeline_support import EMULATOR_KINDS, full_cloud, make_series

from localcloud import subscriber_client
from temporal_median.base import storage
from temporal_median.base.grid import Window
from temporal_median.raster.read import inspect_inputs
from temporal_median.compute.median import compute_median
from temporal_median.job.paths import JobPaths
from temporal_median.base.storage import GsUrl
from temporal_median.compute.tile import read_window

pytestmark = pytest.mark.slow


def call(cloud, method, path, body=None, timeout=120):
    url = cloud.function_url("fanout").rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload or b"{}")
        except ValueError:  # the front end's own 429 / 503 / 504 are plain text, as Cloud Run's
            return exc.code, {"error": payload.decode(errors="replace")}


def wait_state(cloud, job_id, states, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        code, status = call(cloud, "GET", f"/jobs/{job_id}")
        if code == 200 and status["state"] in states:
            return status
        assert time.monotonic() < deadline, f"job {job_id}: {code} {status.get('state')} {status.get('tiles')}"
        time.sleep(0.2)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)
    return found


def assert_mosaic_is_the_core_result(status, series, tmp_path):
    cog = tmp_path / "median.tif"
    storage.download_file(GsUrl.parse(status["mosaic"]["cog"]), str(cog))
    raster = inspect_inputs(series)
    expected = compute_median(read_window(series, Window(0, 0, raster.width, raster.height)))
    with rasterio.open(cog) as ds:
        assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)
        assert np.array_equal(ds.read(4), np.minimum(expected.count, 255))


def log_count(cloud, needle) -> int:
    # The servers are still appending: a half-written last line is not counted yet.
    return sum(line.count(needle) for path in (cloud.run_dir / "logs").glob("*.log") for line in complete_lines(path))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    # 4 windows of 512 over 40 scenes: a tile takes long enough to be caught mid-way.
    return make_series(tmp_path_factory.mktemp("faults-series"), scenes=40, width=1024, height=1024, seed=5)


@pytest.fixture(scope="module", params=EMULATOR_KINDS)
def cloud(request, tmp_path_factory):
    # A short mosaic lease, so a dead holder's lock goes stale in seconds (deployed: 60 s).
    with full_cloud(tmp_path_factory.mktemp(f"faults-{request.param}"), emulator=request.param,
                    function_env={"TM_MOSAIC_LOCK_SECONDS": "6"}) as local:
        yield local


def test_a_median_instance_killed_mid_tile(cloud, series, tmp_path):
    code, job = call(cloud, "POST", "/jobs", {"inputs": str(Path(series[0]).parent), "tile_size": 512, "job_id": "kill-median"})
    assert code == 202, job
    paths = JobPaths.of("gs://tm-work", "kill-median")

    def computing():
        # A window claimed (its attempt record written) and no tile yet: an instance is mid-tile.
        claimed = len(list(storage.list_objects(paths.attempts)))
        done = len(list(storage.list_objects(paths.tiles)))
        return claimed > done and cloud.busy_pids("median")

    victims = wait_for(computing, 60, "a median instance computing a tile")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    status = wait_state(cloud, "kill-median", {"complete", "failed", "mosaic-failed"})
    print(f"\n[{cloud.emulator}] median instance killed mid-tile: job complete {time.monotonic() - killed:.1f} s later")
    assert status["state"] == "complete", status
    assert not set(victims) & {i["pid"] for i in cloud.instances("median")}  # replaced by fresh instances
    # The killed attempt counted: a window was claimed twice.
    assert len(list(storage.list_objects(paths.attempts))) > 4
    assert_mosaic_is_the_core_result(status, series, tmp_path)


def test_the_mosaic_instance_killed_while_it_holds_the_lock(cloud, series, tmp_path):
    lock = JobPaths.of("gs://tm-work", "kill-mosaic").lock
    code, job = call(cloud, "POST", "/jobs", {"inputs": str(Path(series[0]).parent), "tile_size": 256, "job_id": "kill-mosaic"})
    assert code == 202, job
    wait_for(lambda: storage.exists(lock), 120, "the mosaic lock")
    holder = wait_for(lambda: cloud.busy_pids("mosaic"), 10, "the mosaic instance building")[0]
    os.kill(holder, signal.SIGKILL)
    killed = time.monotonic()
    assert storage.exists(lock), "the build ended before the kill: nothing was tested"
    status = wait_state(cloud, "kill-mosaic", {"complete", "failed", "mosaic-failed"}, timeout=120)
    seconds = time.monotonic() - killed
    print(f"\n[{cloud.emulator}] mosaic instance killed holding the lock: job complete {seconds:.1f} s later")
    assert status["state"] == "complete", status
    # No re-post: a redelivered event found the lock stale (6 s without renewal) and took it over.
    assert log_count(cloud, "took over a stale mosaic lock") >= 1
    assert seconds < 60
    assert_mosaic_is_the_core_result(status, series, tmp_path)


def test_the_fanout_restarted_while_a_job_runs(cloud, series):
    code, job = call(cloud, "POST", "/jobs", {"inputs": str(Path(series[0]).parent), "tile_size": 256, "job_id": "kill-fanout"})
    assert code == 202, job
    killed = {instance["pid"] for instance in cloud.instances("fanout")}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: any(i["state"] == "ready" and i["pid"] not in killed for i in cloud.instances("fanout")),
             30, "a fresh fanout instance")
    # The state lives in storage: the fresh fanout instance answers for the job.
    code, status = call(cloud, "GET", "/jobs/kill-fanout")
    assert code == 200 and status["job_id"] == "kill-fanout" and status["tiles"]["expected"] == 16
    code, cancelled = call(cloud, "DELETE", "/jobs/kill-fanout")
    assert code == 200 and cancelled["state"] == "cancelled"
    code, resumed = call(cloud, "POST", "/jobs", {"inputs": str(Path(series[0]).parent), "tile_size": 256, "job_id": "kill-fanout"})
    assert code == 202
    assert wait_state(cloud, "kill-fanout", {"complete", "failed"})["state"] == "complete"


# -- capacity: more pushes than instances ------------------------------------------------------


@pytest.fixture(scope="module")
def wide_series(tmp_path_factory):
    # 100 windows of 256 px over 24 scenes.
    return make_series(tmp_path_factory.mktemp("wide-series"), scenes=24, width=2560, height=2560, seed=9)


def test_a_hundred_windows_on_two_instances_are_refused_but_never_dead_lettered(tmp_path_factory, wide_series, tmp_path):
    # Deployed delivery settings (TM_MAX_ATTEMPTS 5, the subscription's 100 attempts) with far
    # more pushes in flight (16) than instances (2 x concurrency 1) and a short pending queue:
    # Cloud Run's 429s. Google's emulator never pushes more than 2 at once, so only ours can.
    overrides = {
        "functions": {"median": {"max_instances": 2, "pending_timeout_seconds": 0.3}},
        "subscriptions": {"windows-median": {"max_concurrency": 16}},
    }
    with full_cloud(tmp_path_factory.mktemp("capacity"), emulator="builtin", **overrides) as cloud:
        started = time.monotonic()
        code, job = call(cloud, "POST", "/jobs", {"inputs": str(Path(wide_series[0]).parent), "tile_size": 256})
        assert code == 202 and job["tiles"] == 100, job
        status = wait_state(cloud, job["job_id"], {"complete", "failed", "mosaic-failed"}, timeout=300)
        refused = log_count(cloud, ": 429, no instance free")
        print(f"\n[builtin] 100 windows, 2 instances: complete in {time.monotonic() - started:.1f} s, {refused} pushes refused (429)")
        assert status["state"] == "complete", status["failed"]
        assert refused > 0, "no push was refused: the test exercised nothing"
        subscriber = subscriber_client(cloud.env()["PUBSUB_EMULATOR_HOST"])
        path = subscriber.subscription_path("local-project", "windows-dead-letter-sub")
        dead = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=5).received_messages
        assert dead == [] and status["tiles"]["failed"] == 0
        assert_mosaic_is_the_core_result(status, wide_series, tmp_path)
