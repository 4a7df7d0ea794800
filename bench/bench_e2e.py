"""End to end on the local cloud: POST to mosaic complete vs a pure read of all inputs, side by side.

Run: .venv/bin/python bench/bench_e2e.py [--rounds 3] [--keep-run-dir] [--scenes N --width W --height H]

The demo series (108 scenes of 2600 x 2200, 3 x 3 windows of 1024) is generated once into
bench/.data/series-SCENESxWIDTHxHEIGHT and reused. The pipeline's own topology runs on free ports in a private
run directory (never the repository's .localcloud/). Each round times, in turn:

* "whole read": every scene read whole, the scenes shared out over as many processes as median
  has workers (= cores); one reading thread per process.
* "window read": the job's own windows, read with ``read_window`` and the median function's
  reading threads (TM_READ_THREADS), the windows shared out over the same number of processes:
  exactly the reads the job's tiles do, without median, tile write, upload or messaging.
* "pipeline": POST /jobs with a fresh job_id (nothing reused from storage), to the completion
  time in its job record; its status is polled every POLL_SECONDS (1 s: polls cost CPU) to
  notice the end.

The pure read of all inputs is the faster of the two reads (the least this machine needs to
decode every input pixel once with all its cores); the pipeline is reported as a ratio to it.
An uncounted warm-up of each goes first (numba kernels in every median worker, read buffers,
page cache), so the rounds compare steady states. Medians over the rounds are printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localcloud import clean_environ  # noqa: E402
from temporal_median.base.grid import Grid, Window  # noqa: E402
from temporal_median_cli.run import http_json  # noqa: E402
from temporal_median_cli.sample import PROFILES  # noqa: E402

DATA = ROOT / "bench" / ".data"
TILE_SIZE = 1024
RATIO_GOAL = 1.5
#: A status poll costs the cloud's processes about 25 ms of CPU (fanout reads the manifest and
#: lists tiles and errors in storage; measured: 100 polls, 2.5 CPU s). Every 0.1 s that was about
#: 1 CPU-s of a demo job's 9 (4.5 s on 2 cores): the benchmark slowed what it measured. The
#: pipeline's time comes from the job record (POST to the record's ``completed``), so a slow poll
#: costs no precision, only the wait before the bench notices.
POLL_SECONDS = 1.0
JOB_TIMEOUT_SECONDS = 600
END_STATES = {"complete", "failed", "mosaic-failed", "cancelled"}

# -- reading processes (module level so that spawned children find them) ----------------------

_buffers: dict[tuple, np.ndarray] = {}


def _buffer(shape: tuple) -> np.ndarray:
    """A per-process buffer of ``shape``, allocated and touched once: reads pay no page faults."""
    if shape not in _buffers:
        _buffers[shape] = np.ones(shape, np.uint8)
    return _buffers[shape]


def _read_scene(path: str) -> int:
    import rasterio

    from temporal_median.raster.gdal import gdal_env

    with gdal_env(), rasterio.open(path) as ds:
        out = _buffer((ds.count, ds.height, ds.width))
        ds.read(out=out)
    return out.nbytes


def _read_job_window(task: tuple) -> int:
    from temporal_median.compute.tile import read_window

    urls, window_list, threads = task
    window = Window(*window_list)
    out = _buffer((len(urls), 3, window.height, window.width))
    read_window(urls, window, max_workers=threads, out=out)
    return out.nbytes


# -- helpers ---------------------------------------------------------------------------------


def series_dir(geometry: dict) -> Path:
    return DATA / f"series-{geometry['scenes']}x{geometry['width']}x{geometry['height']}"


def ensure_series(geometry: dict) -> list[str]:
    from temporal_median_cli.sample import generate_series

    t0 = time.perf_counter()
    info = generate_series(str(series_dir(geometry)), **geometry, seed=0, ground_truth=False)
    took = time.perf_counter() - t0
    if took > 1:
        print(f"generated the series into {series_dir(geometry)} in {took:.1f} s")
    return sorted(str(p) for p in info.paths)


def warm_page_cache(paths) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def parse_utc(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- the pipeline ----------------------------------------------------------------------------


def run_job(fanout_url: str, inputs_dir: str, job_id: str) -> dict:
    """POST the job, poll until it ends; wall times measured here plus the job's own record."""
    body = {"inputs": inputs_dir, "tile_size": TILE_SIZE, "method": "luminance", "job_id": job_id}
    posted_at = time.time()
    t0 = time.perf_counter()
    code, answer = http_json("POST", fanout_url + "jobs", body)
    t_accepted = time.perf_counter() - t0
    if code != 202:
        raise RuntimeError(f"POST /jobs answered {code}: {answer}")
    deadline = t0 + JOB_TIMEOUT_SECONDS
    polls = 0
    while True:
        code, status = http_json("GET", f"{fanout_url}jobs/{job_id}")
        polls += 1
        if code == 200 and status["state"] in END_STATES:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {job_id} not done after {JOB_TIMEOUT_SECONDS} s: {status}")
        time.sleep(POLL_SECONDS)
    seen = time.perf_counter() - t0
    if status["state"] != "complete":
        raise RuntimeError(f"job {job_id} ended {status['state']}: {json.dumps(status)[:2000]}")
    record = status["mosaic"]["figures"]
    # POST to the job record's completion time (the mosaic's clock is this machine's).
    seconds = parse_utc(record["completed"]) - posted_at
    return {"job_id": job_id, "posted_at": posted_at, "seconds": seconds, "seconds_seen": seen,
            "seconds_accepted": t_accepted, "polls": polls, "record": record}


def stage_split(cloud, job: dict) -> dict:
    """Where one job's time went: tile timings from the tiles' metadata and median's log, landing times."""
    from localcloud import storage_client

    env = cloud.env()
    client = storage_client(env["STORAGE_EMULATOR_HOST"], cloud.topology.project)
    tiles = [b for b in client.list_blobs("tm-work", prefix=f"jobs/{job['job_id']}/tiles/") if b.name.endswith(".tif")]
    meta = [b.metadata or {} for b in tiles]
    landed = sorted(b.time_created.timestamp() for b in tiles)
    handled = []
    log = cloud.run_dir / "logs" / "function-median.log"
    for line in log.read_text(errors="replace").splitlines():
        if job["job_id"] not in line or not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("job_id") == job["job_id"] and entry.get("message") == "tile written" and "seconds" in entry:
            handled.append(float(entry["seconds"]))
    record = job["record"]
    completed = parse_utc(record["completed"])

    def total(key: str) -> float:
        return sum(float(m.get(key, 0) or 0) for m in meta)

    return {
        "tiles": len(tiles),
        "tile_handle_sum": sum(handled),
        "tile_handle_max": max(handled) if handled else float("nan"),
        "read_wait_sum": total("seconds_read"),
        "median_sum": total("seconds_median"),
        "write_sum": total("seconds_write"),
        "first_tile_after_post": landed[0] - job["posted_at"] if landed else float("nan"),
        "last_tile_after_post": landed[-1] - job["posted_at"] if landed else float("nan"),
        "mosaic_done_after_last_tile": completed - landed[-1] if landed else float("nan"),
        "seconds_mosaic": record.get("seconds_mosaic", float("nan")),
        "mosaic_build": record.get("seconds_mosaic_build", float("nan")),
        "mosaic_upload": record.get("seconds_mosaic_upload", float("nan")),
        "manifest_after_post": parse_utc(record["created"]) - job["posted_at"],
    }


def proc_kib(pid: int, name: str, fields: tuple[str, ...]) -> int:
    """Sum of ``fields`` (kB) in /proc/PID/NAME (status or smaps_rollup); 0 if unreadable.
    VmHWM is a process's peak RSS, VmRSS its current one."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in fields:
                total += int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return total


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cloud_cpu(run_dir: Path) -> dict[str, float]:
    """CPU seconds so far of every live process of the cloud in ``run_dir``, by part (emulators,
    each function's front end and instances: all of them share this machine's cores)."""
    marker = f"LOCALCLOUD_RUN_DIR={run_dir}".encode()
    by_part: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker not in environ:
            continue
        part = next((v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"LOCALCLOUD_PART=")), "other")
        by_part[part] = by_part.get(part, 0.0) + _cpu_of(int(entry.name))
    return by_part


def instance_memory(cloud) -> list[tuple[int, int]]:
    """(worker peak RSS, server RSS) in KiB of each median instance: what its container would hold
    (Cloud Run's memory limit counts every process of the instance, and /tmp, which the tile file
    passes through for a moment)."""
    return [(proc_kib(i["pid"], "status", ("VmHWM",)), proc_kib(i["server_pid"], "status", ("VmRSS",)))
            for i in cloud.instances("median") if i["state"] == "ready"]


# -- main ------------------------------------------------------------------------------------


def fmt_runs(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def bench_cloud(prefix: str, paths: list[str]):
    """A local cloud (not up yet) on free ports in a new run dir: (cloud, run_dir, median's
    function, the reading threads median resolves for ``paths``). bench_periods and bench_sim use it too."""
    from localcloud import LocalCloud
    from temporal_median.base.settings import Settings
    from temporal_median.raster.gdal import read_threads

    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    overrides = {
        "pubsub": {"port": 0},
        "storage": {"port": 0},
        "functions": {name: {"port": 0} for name in ("fanout", "median", "mosaic")},
    }
    cloud = LocalCloud.load(None, run_dir, environ=clean_environ(), overrides=overrides)
    median_fn = cloud.topology.function("median")
    function_env = {**clean_environ(), **cloud.topology.function_env, **median_fn.env}
    # As median resolves it: TM_READ_THREADS, or by default one per core for local files.
    return cloud, run_dir, median_fn, read_threads(paths, Settings.from_env(function_env).read_threads or None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-run-dir", action="store_true", help="keep the cloud's run directory (logs)")
    parser.add_argument("--scenes", type=int, default=PROFILES["demo"]["scenes"], help="default: the demo's")
    parser.add_argument("--width", type=int, default=PROFILES["demo"]["width"])
    parser.add_argument("--height", type=int, default=PROFILES["demo"]["height"])
    args = parser.parse_args(argv)
    geometry = {"scenes": args.scenes, "width": args.width, "height": args.height}


    cores = os.cpu_count() or 1
    print(f"cores {cores}; load average (1, 5, 15 min) before: {loadavg()}")
    paths = ensure_series(geometry)
    inputs_dir = str(series_dir(geometry).resolve())
    warm_page_cache(paths)
    grid = Grid(args.width, args.height, TILE_SIZE)
    windows = [w.as_list() for _, w in grid.windows()]
    input_bytes = sum(os.path.getsize(p) for p in paths)
    pixels_bytes = len(paths) * 3 * args.width * args.height
    print(f"series: {len(paths)} scenes of {args.width} x {args.height} ({input_bytes / 1e6:.0f} MB of COGs, "
          f"{pixels_bytes / 1e6:.0f} MB decoded); job: {len(windows)} windows of {TILE_SIZE}")

    cloud, run_dir, median_fn, threads = bench_cloud("bench_e2e_", paths)
    workers = int(median_fn.workers)
    print(f"median function: {workers} workers x 1 request each, {threads} reading threads "
          f"(read baselines use {workers} processes)")

    # Spawned (not forked) children: no GDAL state inherited from this process.
    pool = multiprocessing.get_context("spawn").Pool(workers)
    stamp = time.strftime("%H%M%S")
    try:
        t0 = time.perf_counter()
        cloud.up()
        print(f"local cloud up in {time.perf_counter() - t0:.1f} s (run dir {run_dir})")
        fanout_url = cloud.function_url("fanout")

        readers = [p.pid for p in multiprocessing.active_children()]

        read_cpu: dict[str, list[float]] = {"whole read": [], "window read": []}

        def timed(name: str, work) -> float:
            t, cpu = time.perf_counter(), sum(_cpu_of(pid) for pid in readers)
            work()
            read_cpu[name].append(sum(_cpu_of(pid) for pid in readers) - cpu)
            return time.perf_counter() - t

        def whole_read() -> float:
            return timed("whole read", lambda: pool.map(_read_scene, paths, chunksize=1))

        def window_read() -> float:
            return timed("window read", lambda: pool.map(_read_job_window, [(paths, w, threads) for w in windows],
                                                         chunksize=1))

        def job(name: str) -> dict:
            before = cloud_cpu(run_dir)
            result = run_job(fanout_url, inputs_dir, name)
            after = cloud_cpu(run_dir)
            result["cpu"] = {part: after[part] - before.get(part, 0.0) for part in after}
            return result


        # Warm-up, not counted.
        whole_read(), window_read()
        warm = job(f"bench-e2e-{stamp}-warmup")
        print(f"warm-up job (not counted): {warm['seconds']:.2f} s")

        wholes, windowed, jobs = [], [], []
        for r in range(args.rounds):
            wholes.append(whole_read())
            windowed.append(window_read())
            jobs.append(job(f"bench-e2e-{stamp}-r{r}"))
            print(f"round {r + 1}: whole read {wholes[-1]:.2f} s, window read {windowed[-1]:.2f} s, "
                  f"pipeline {jobs[-1]['seconds']:.2f} s")

        splits = [stage_split(cloud, job) for job in jobs]
        memory = instance_memory(cloud)
    finally:
        pool.close()
        pool.join()
        stopped = cloud.down()
        if not args.keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"local cloud down ({len(stopped)} parts stopped)")

    whole_s, window_s = statistics.median(wholes), statistics.median(windowed)
    pipeline_s = statistics.median(j["seconds"] for j in jobs)
    f2m_s = statistics.median(j["record"]["seconds_fanout_to_mosaic"] for j in jobs)
    accepted_s = statistics.median(j["seconds_accepted"] for j in jobs)
    pure_s = min(whole_s, window_s)
    pure_name = "whole read" if whole_s <= window_s else "window read"
    ratio = pipeline_s / pure_s
    record = jobs[-1]["record"]

    print()
    print(f"medians over {args.rounds} rounds (runs in brackets):")
    print(f"  whole read   ({workers} processes, 1 thread each)      : {whole_s:6.2f} s  [{fmt_runs(wholes)}]"
          f"  {pixels_bytes / whole_s / 1e6:.0f} MB/s decoded")
    print(f"  window read  ({workers} processes, {threads} threads each)    : {window_s:6.2f} s  [{fmt_runs(windowed)}]")
    print(f"  pipeline     POST -> mosaic record written     : {pipeline_s:6.2f} s  "
          f"[{fmt_runs(j['seconds'] for j in jobs)}]  (the record's own completion time)")
    print(f"    seen by polling every {POLL_SECONDS:.1f} s                : "
          f"{statistics.median(j['seconds_seen'] for j in jobs):6.2f} s  [{fmt_runs(j['seconds_seen'] for j in jobs)}]")
    print(f"    of which   POST -> 202 (list, inspect, publish): {accepted_s:6.2f} s")
    print(f"    job record seconds_fanout_to_mosaic          : {f2m_s:6.2f} s  "
          f"[{fmt_runs(j['record']['seconds_fanout_to_mosaic'] for j in jobs)}]  (manifest written -> record written)")
    print(f"  last job: {record['tiles']} tiles, bytes_read {record['bytes_read'] / 1e6:.0f} MB, "
          f"tiles {record['bytes_tiles'] / 1e6:.1f} MB, mosaic build {record['seconds_mosaic']:.2f} s")
    print()
    print(f"pure read of all inputs = the faster read ({pure_name}), {pure_s:.2f} s: every input pixel decoded once,")
    print(f"  on all {workers} cores, with nothing else (no median, tiles, upload, messages or mosaic).")
    print(f"ratio pipeline / pure read : {ratio:.2f}x   (goal <= {RATIO_GOAL}x: {'met' if ratio <= RATIO_GOAL else 'NOT met'})"
          f"   [vs whole read {pipeline_s / whole_s:.2f}x, vs window read {pipeline_s / window_s:.2f}x]")

    def med(key: str) -> float:
        return statistics.median(s[key] for s in splits)

    print()
    print("per-stage split (medians over the rounds; sums are over tiles, spread over "
          f"{workers} workers):")
    print(f"  POST -> manifest written (list + inspect)        : {med('manifest_after_post'):6.2f} s")
    print(f"  POST -> first tile landed                        : {med('first_tile_after_post'):6.2f} s")
    print(f"  POST -> last tile landed                         : {med('last_tile_after_post'):6.2f} s")
    print(f"  last tile -> mosaic record written               : {med('mosaic_done_after_last_tile'):6.2f} s"
          f"   (mosaic {med('seconds_mosaic'):.2f} s: read tiles + build {med('mosaic_build'):.2f}, "
          f"upload {med('mosaic_upload'):.2f})")
    print(f"  tile handling, sum over {splits[-1]['tiles']} tiles (median log)     : {med('tile_handle_sum'):6.2f} s"
          f"   (longest tile {med('tile_handle_max'):.2f} s)")
    print(f"    waiting for reads {med('read_wait_sum'):.2f} s, median kernel {med('median_sum'):.2f} s, "
          f"tile write {med('write_sum'):.2f} s, rest (checks, upload) "
          f"{med('tile_handle_sum') - med('read_wait_sum') - med('median_sum') - med('write_sum'):.2f} s")
    # The least this job could take here if the tiles' median and write (CPU work on the same
    # cores as the reads) and the mosaic could not overlap with reading: what the ratio is up against.
    floor_s = pure_s + (med("median_sum") + med("write_sum")) / workers + med("seconds_mosaic")
    print(f"floor: pure read + (median + tile write) / {workers} workers + mosaic = {floor_s:.2f} s "
          f"= {floor_s / pure_s:.2f}x the pure read (the pipeline is {pipeline_s / floor_s:.2f}x this floor)")
    # Measured, not estimated: the CPU every process of the cloud used during each job (the
    # median workers' reads, kernels and writes, the mosaic, fanout, both emulators, the front
    # ends). Even with every overlap perfect the job cannot take less than that over the cores.
    pure_cpu = statistics.median(read_cpu[pure_name][1:])  # the first was the warm-up
    parts = sorted({part for j in jobs for part in j["cpu"]})
    job_cpu = {part: statistics.median(j["cpu"].get(part, 0.0) for j in jobs) for part in parts}
    total_cpu = statistics.median(sum(j["cpu"].values()) for j in jobs)
    cpu_bound_s = total_cpu / cores
    print(f"CPU seconds used, all processes (medians): the pure read {pure_cpu:.2f}; the job {total_cpu:.2f} = "
          f"{total_cpu / pure_cpu:.2f}x the read's (" + ", ".join(
              f"{part} {cpu:.2f}" for part, cpu in sorted(job_cpu.items(), key=lambda kv: -kv[1]) if cpu >= 0.01) + ")")
    print(f"CPU bound, measured: the job's CPU seconds / {cores} cores = {cpu_bound_s:.2f} s = "
          f"{cpu_bound_s / pure_s:.2f}x the pure read: no overlap can make the job faster than that here")
    if memory:
        worker_kib, server_kib = max(memory)
        total_mib = (worker_kib + server_kib) / 1024
        print(f"median instance memory over all jobs: worker peak RSS {worker_kib / 1024:.0f} MiB + "
              f"functions-framework server {server_kib / 1024:.0f} MiB = {total_mib:.0f} MiB "
              f"({total_mib / 1024:.2f} of a 1 GiB instance; the largest of {len(memory)} instances)")
    print(f"cores {cores}; load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
