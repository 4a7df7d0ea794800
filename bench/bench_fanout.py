"""Fanout on a full granule: list + inspect 216 scenes + manifest + publish 121 windows, whole and in parts.

Run: .venv/bin/python bench/bench_fanout.py [--rounds 3]

Stand-ins: 216 scenes with the granule's real grid (10980 x 10980, 3-band uint8, EPSG:32631,
10 m, UL 300000 / 4900020, 512-pixel blocks, overviews, DEFLATE) whose blocks are all empty
(sparse), so each COG is a few KB yet opens like a real one. Named like the course's
(T31TCJ_2023MMDDT104629_TCI.tif), written once into bench/.data/granule-standins and reused.
They are also uploaded to the local storage emulator, to time the gs:// path (listing through
the JSON API, headers through GDAL's /vsigs/), as deployed.

Two clouds, both on free ports in private run directories:

* A: Pub/Sub + storage only (no function servers). In this process: list_inputs alone,
  inspect_inputs alone, publishing 121 window messages of the real size alone (the PublisherClient
  fanout uses, datasets named gs://tb-be-bigdata/t31tcj/...), and start_job whole. A pull
  subscription keeps what is published, as the real push subscription would.
* B: the pipeline's own topology. POST /jobs through fanout's HTTP server until the 202, then
  DELETE the job at once so median acknowledges the remaining windows without work. Median starts
  on the first windows as soon as they are published (that is the design), so on this 2-core
  machine the POST shares the CPU with up to `cores` tiles; each round waits for those to drain.

Measurements alternate (a round does every one of them) with a fresh job_id each time, GDAL's
remote-file cache is cleared before every gs:// inspection, and an uncounted warm-up round goes
first (clients, channels, imports). Medians over the rounds are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localcloud import clean_environ  # noqa: E402
from temporal_median_cli.run import http_json  # noqa: E402

DATA = ROOT / "bench" / ".data"
STANDINS = DATA / "granule-standins"
MARKER = "standins.json"
SCENES = 216
SIZE = 10980
TILE_SIZE = 1024
CRS = "EPSG:32631"
ORIGIN = (300000.0, 4900020.0)
INPUTS_BUCKET = "tm-inputs"
INPUTS_PREFIX = "t31tcj/"
COURSE_PREFIX = "gs://tb-be-bigdata/t31tcj/"
MAX_STANDIN_BYTES = 64 << 10
DRAIN_TIMEOUT_SECONDS = 300

EMULATORS_ONLY = f"""
project = "local-project"
buckets = ["tm-work", "tm-results", "{INPUTS_BUCKET}"]
topics = ["windows", "windows-dead-letter"]
[pubsub]
port = 0
[storage]
port = 0
[subscriptions.windows-pull]
topic = "windows"
ack_deadline_seconds = 600
"""


# -- stand-in scenes -------------------------------------------------------------------------


def standin_names() -> list[str]:
    """216 acquisition dates spread over 2023 (about one every 1.7 days), in the course's naming."""
    start = dt.date(2023, 1, 1)
    return [f"T31TCJ_{(start + dt.timedelta(days=i * 365 // SCENES)):%Y%m%d}T104629_TCI.tif" for i in range(SCENES)]


def ensure_standins() -> list[str]:
    """The stand-in scenes (written once: one sparse COG, copied under every name; marker last)."""
    import rasterio
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import Affine

    names = standin_names()
    paths = [str(STANDINS / name) for name in names]
    if (STANDINS / MARKER).exists() and all(os.path.exists(p) for p in paths):
        return paths
    t0 = time.perf_counter()
    STANDINS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".standin-", dir=STANDINS))
    try:
        sparse = work / "sparse.tif"
        cog = work / "cog.tif"
        profile = {
            "driver": "GTiff", "width": SIZE, "height": SIZE, "count": 3, "dtype": "uint8", "crs": CRS,
            "transform": Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1]), "tiled": True,
            "blockxsize": 512, "blockysize": 512, "compress": "DEFLATE", "predictor": 2,
            "interleave": "pixel", "sparse_ok": True,
        }
        # Nothing written: every block is left empty (offset 0) and reads as 0 (nodata).
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(sparse, "w", **profile):
            pass
        with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_NUM_THREADS="ALL_CPUS"):
            rio_copy(str(sparse), str(cog), driver="COG", compress="DEFLATE", predictor=2, blocksize=512,
                     overviews="AUTO", sparse_ok=True)
        size = cog.stat().st_size
        if size > MAX_STANDIN_BYTES:
            raise RuntimeError(f"a stand-in scene is {size} bytes; expected a few KB (sparse blocks)")
        with rasterio.open(cog) as ds:
            if (ds.width, ds.height, ds.count, ds.crs.to_string()) != (SIZE, SIZE, 3, CRS) or not ds.overviews(1):
                raise RuntimeError(f"the stand-in scene has the wrong grid: {ds.profile}")
        for path in paths:
            shutil.copyfile(cog, path)
        (STANDINS / MARKER).write_text(json.dumps({"scenes": SCENES, "size": SIZE, "bytes_each": size}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {SCENES} stand-in scenes of {SIZE} x {SIZE} ({size} bytes each) into {STANDINS} "
          f"in {time.perf_counter() - t0:.1f} s")
    return paths


# -- helpers ---------------------------------------------------------------------------------


def upload_standins(cloud, paths: list[str]) -> str:
    """Copy the stand-ins to gs://tm-inputs/t31tcj/ on ``cloud``'s storage; the gs:// prefix."""
    from concurrent.futures import ThreadPoolExecutor

    from localcloud import storage_client

    bucket = storage_client(cloud.env()["STORAGE_EMULATOR_HOST"], cloud.topology.project).bucket(INPUTS_BUCKET)

    def put(path: str) -> None:
        bucket.blob(INPUTS_PREFIX + os.path.basename(path)).upload_from_filename(path, content_type="image/tiff")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, paths))
    return f"gs://{INPUTS_BUCKET}/{INPUTS_PREFIX}"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def median_log_lines(cloud, job_id: str) -> int:
    """How many of ``job_id``'s deliveries median has finished with (any outcome it logs)."""
    log = cloud.run_dir / "logs" / "function-median.log"
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if job_id in line and line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("job_id") == job_id and entry.get("message", "").startswith(
                ("job cancelled", "tile written", "tile exists already")
            ):
                count += 1
    return count


def wait_drained(cloud, job_id: str, expected: int) -> float:
    t0 = time.perf_counter()
    while median_log_lines(cloud, job_id) < expected:
        if time.perf_counter() - t0 > DRAIN_TIMEOUT_SECONDS:
            raise RuntimeError(f"median handled only {median_log_lines(cloud, job_id)} of {expected} windows of {job_id}")
        time.sleep(0.2)
    return time.perf_counter() - t0


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- main ------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from localcloud import LocalCloud

    print(f"cores {os.cpu_count()}; load average (1, 5, 15 min) before: {loadavg()}")
    paths = ensure_standins()
    local_dir = str(STANDINS.resolve())
    each = os.path.getsize(paths[0])
    print(f"{len(paths)} stand-in scenes of {SIZE} x {SIZE}, {each} bytes each ({each * len(paths) / 1e6:.1f} MB in all)")

    base = Path(tempfile.mkdtemp(prefix="bench_fanout_"))
    (base / "topology.toml").write_text(EMULATORS_ONLY)
    cloud_a = LocalCloud.load(base / "topology.toml", base / "run-a", environ=clean_environ())
    overrides = {
        "buckets": ["tm-work", "tm-results", INPUTS_BUCKET],
        "pubsub": {"port": 0},
        "storage": {"port": 0},
        "functions": {name: {"port": 0} for name in ("fanout", "median", "mosaic")},
    }
    cloud_b = LocalCloud.load(None, base / "run-b", environ=clean_environ(), overrides=overrides)
    stamp = time.strftime("%H%M%S")
    rows: dict[str, list[float]] = {}
    try:
        cloud_a.up()
        cloud_b.up()
        # This process is fanout for cloud A: its settings and clients come from the environment.
        os.environ.update(cloud_a.env())
        os.environ.update({"GOOGLE_CLOUD_PROJECT": "local-project", "TM_WINDOWS_TOPIC": "windows",
                           "TM_WORK_URL": "gs://tm-work", "TM_RESULTS_URL": "gs://tm-results",
                           "TM_ALLOW_LOCAL_PATHS": "true"})
        from temporal_median.base.clock import isoformat, utcnow
        from temporal_median.base.grid import Grid
        from temporal_median.base.settings import get_settings
        from temporal_median.functions.fanout import list_inputs, publisher, start_job
        from temporal_median.job.manifest import Manifest
        from temporal_median.job.request import JobRequest
        from temporal_median.raster.gdal import forget_remote_files
        from temporal_median.raster.read import inspect_inputs

        settings = get_settings()
        # This process plays fanout: its "job started" lines would clutter the figures.
        logging.getLogger("temporal_median.fanout").setLevel(logging.WARNING)
        gs_a = upload_standins(cloud_a, paths)
        gs_b = upload_standins(cloud_b, paths)
        fanout_url = cloud_b.function_url("fanout")

        raster = inspect_inputs(paths, max_workers=settings.read_threads)
        grid = Grid(raster.width, raster.height, TILE_SIZE)
        course_datasets = tuple(COURSE_PREFIX + os.path.basename(p) for p in paths)

        def course_manifest(job_id: str) -> Manifest:
            return Manifest(job_id=job_id, datasets=course_datasets, grid=grid, raster=raster,
                            method="luminance", output=settings.results_url, created=isoformat(utcnow()),
                            work=settings.work_url)

        message_bytes = len(course_manifest("size-probe").message(next(grid.tile_ids())).to_bytes())
        print(f"grid {grid.rows} x {grid.cols} = {len(grid)} windows of {TILE_SIZE}; a window message of "
              f"{len(course_datasets)} gs://tb-be-bigdata/... datasets is {message_bytes / 1e3:.1f} kB")
        print(f"clouds up: A (pubsub + storage) {cloud_a.env()['PUBSUB_EMULATOR_HOST']}, "
              f"B (pipeline) fanout {fanout_url}; inspect threads {settings.read_threads}")

        def publish_only(job_id: str) -> int:
            # What fanout's _publish does: one publish per window on the batching client, then wait all.
            manifest = course_manifest(job_id)
            client = publisher()
            futures = [client.publish(settings.topic_path, m.to_bytes(), **m.attributes())
                       for m in (manifest.message(tile) for tile in grid.tile_ids())]
            for future in futures:
                future.result(timeout=120)
            return len(futures)

        def start(inputs: str, job_id: str) -> int:
            request = JobRequest.from_json({"inputs": inputs, "tile_size": TILE_SIZE, "job_id": job_id}, settings)
            result = start_job(request, settings)
            if result.published != len(grid) or len(result.manifest.datasets) != SCENES:
                raise RuntimeError(f"start_job published {result.published} windows of {len(result.manifest.datasets)} scenes")
            return result.published

        def inspect_gs(prefix: str) -> None:
            forget_remote_files()  # a new job's inputs are not in GDAL's cache
            urls = list_inputs(JobRequest.from_json({"inputs": prefix}, settings), settings)
            inspect_inputs(list(urls), max_workers=settings.read_threads)

        def http_post(inputs: str, job_id: str) -> None:
            forget_remote_files()
            t0 = time.perf_counter()
            code, answer = http_json("POST", fanout_url + "jobs", {"inputs": inputs, "tile_size": TILE_SIZE, "job_id": job_id})
            seconds = time.perf_counter() - t0
            code_del, cancelled = http_json("DELETE", f"{fanout_url}jobs/{job_id}")
            if code != 202 or answer.get("published") != len(grid) or code_del != 200:
                raise RuntimeError(f"POST answered {code}: {answer}; DELETE answered {code_del}: {cancelled}")
            drained = wait_drained(cloud_b, job_id, len(grid))
            return seconds, drained

        # fanout (cloud B) reads local files itself, gs:// ones through its storage emulator.
        measurements = [
            ("list_inputs, local dir", lambda j: list_inputs(JobRequest.from_json({"inputs": local_dir}, settings), settings)),
            ("list_inputs, gs:// prefix", lambda j: list_inputs(JobRequest.from_json({"inputs": gs_a}, settings), settings)),
            ("inspect_inputs, local", lambda j: inspect_inputs(paths, max_workers=settings.read_threads)),
            ("list + inspect, gs://", lambda j: inspect_gs(gs_a)),
            ("publish 121 messages", publish_only),
            ("start_job in-process, local", lambda j: start(local_dir, j)),
            ("start_job in-process, gs://", lambda j: (forget_remote_files(), start(gs_a, j))),
        ]
        drains = []
        print("each round, in this order: " + "; ".join(name for name, _ in measurements)
              + "; HTTP POST -> 202, local; HTTP POST -> 202, gs://")
        for r in range(args.rounds + 1):
            label = "warm-up" if r == 0 else f"r{r}"
            line = []
            for i, (name, fn) in enumerate(measurements):
                seconds, _ = timed(lambda: fn(f"bench-fanout-{stamp}-{label}-{i}"))
                line.append(f"{seconds:.2f}")
                if r:
                    rows.setdefault(name, []).append(seconds)
            for i, (name, inputs) in enumerate((("HTTP POST -> 202, local", local_dir), ("HTTP POST -> 202, gs://", gs_b))):
                seconds, drained = http_post(inputs, f"bench-fanout-{stamp}-{label}-http{i}")
                line.append(f"{seconds:.2f}")
                if r:
                    rows.setdefault(name, []).append(seconds)
                    drains.append(drained)
            print(f"round {label}: " + ", ".join(line))
    finally:
        for cloud in (cloud_b, cloud_a):
            try:
                cloud.down()
            except Exception as exc:  # noqa: BLE001 - still try to stop the other cloud
                print(f"stopping {cloud.run_dir}: {exc}")
        shutil.rmtree(base, ignore_errors=True)

    publish_s = statistics.median(rows["publish 121 messages"])
    print()
    print(f"medians over {args.rounds} rounds; {SCENES} inputs, {len(grid)} window messages of {message_bytes / 1e3:.1f} kB")
    print(f"| {'step':<34} | {'median s':>8} | {'runs':<20} | {'messages/s':>10} |")
    print(f"|{'-' * 36}|{'-' * 9}:|{'-' * 22}|{'-' * 11}:|")
    for name, values in rows.items():
        med = statistics.median(values)
        rate = f"{len(grid) / med:,.0f}" if ("publish" in name or "start_job" in name or "POST" in name) else ""
        print(f"| {name:<34} | {med:8.3f} | {', '.join(f'{v:.2f}' for v in values):<20} | {rate:>10} |")
    print(f"(messages/s = {len(grid)} window messages / the step's median seconds)")
    inspect_local = statistics.median(rows["inspect_inputs, local"])
    start_local = statistics.median(rows["start_job in-process, local"])
    http_local = statistics.median(rows["HTTP POST -> 202, local"])
    print()
    print(f"start_job (local) = inspect {inspect_local / start_local:.0%} + publish {publish_s / start_local:.0%} "
          f"+ rest (list, manifest, done-tile listing) {1 - (inspect_local + publish_s) / start_local:.0%}")
    print(f"HTTP POST / in-process start_job (local): {http_local / start_local:.2f}x "
          f"(HTTP, JSON, and median starting tiles on the same cores); "
          f"cancelled jobs drained in {statistics.median(drains):.1f} s (median)")
    print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
