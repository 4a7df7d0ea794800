"""The plan's simulator against what runs: bench_e2e's jobs on the local cloud, predicted and measured, then a granule.

Run: .venv/bin/python bench/bench_sim.py [--jobs demo,larger] [--rounds 1] [--keep-run-dir]

Jobs (bench_e2e's, their series generated once into bench/.data and reused): ``demo`` = 108 x 2600 x
2200 (9 windows of 1024, ``bench_e2e.py --rounds 1``); ``larger`` = 216 x 4096 x 4096 (16
windows, ``bench_e2e.py --scenes 216 --width 4096 --height 4096``).

1. The local cloud's parameters, measured here, outside the jobs being predicted:
   * per window, in as many spawned processes as median has instances (= cores), with median's
     reading threads: a pure read of the window (bench_e2e's ``_read_job_window``) and
     ``compute_tile`` of it into a local file, CPU seconds of every thread. The simulator's CPU
     figures are fitted to them (least squares over every window of the jobs): decode per pixel
     of a scene and per scene (the read), kernel per pixel of a scene and write per pixel (the
     rest of compute_tile); the tiles' bytes per pixel;
   * the mosaic built from those local tiles (``build_mosaic``): CPU fixed + per pixel, threads
     used, COG bytes over tile bytes;
   * on the running cloud: a storage request's latency; the storage emulator's CPU (and this
     client's) per byte moved; the idle cloud's CPU with a status poll a second (bench_e2e's
     poll); fanout's inspect per scene; and on each job's warm-up run (not the run predicted):
     tile landed -> mosaic started (the finalize event) and the cloud's CPU per window besides
     median and the mosaic's build (emulators, front ends, the mosaic's tile events).
2. Each job simulated on the local cloud's deployment (its instances, cores, reading threads,
   push concurrency, backoff) with those parameters, and run (bench_e2e.run_job: POST to the job
   record's completion). Predicted beside measured: wall, and cost (the record's cost_estimate).
3. The full granule (216 x 10980 x 10980, 121 windows) on Terraform's defaults and on the
   settings the simulator recommends, with the CPU figures measured in 1 and the parameter
   table's cloud figures (the assumed ones named), and how the answer moves with them.

Timelines (measured and simulated) are drawn into bench/results/.
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
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_e2e  # noqa: E402
from localcloud import clean_environ  # noqa: E402
from temporal_median.base.grid import Grid, Window  # noqa: E402
from temporal_median_cli.run import http_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"
JOBS = {"demo": {"scenes": 108, "width": 2600, "height": 2200},
        "larger": {"scenes": 216, "width": 4096, "height": 4096}}
WALL_GOAL, COST_GOAL = 0.15, 0.10
GRANULE = (216, 10980, 10980)
GRANULE_GOALS = (60.0, 0.10)
#: A new project's Cloud Run quota (20 vCPU per region) less fanout (2 x 1) and mosaic (3 x 2), as
#: terraform/variables.tf sizes the defaults: what median may use.
QUOTA_MEDIAN_VCPUS = 12
SOURCE = "measured: bench/bench_sim.py on this machine"


# -- per-window costs (spawned processes: module-level functions) ------------------------------


def _measure_window(task: tuple) -> dict:
    from temporal_median.compute.tile import compute_tile

    urls, window_list, threads, tile_path = task
    c0, t0 = time.process_time(), time.perf_counter()
    bench_e2e._read_job_window((urls, window_list, threads))
    c1, t1 = time.process_time(), time.perf_counter()
    stats = compute_tile(urls, Window(*window_list), tile_path, max_workers=threads)
    c2, t2 = time.process_time(), time.perf_counter()
    return {"read_cpu": c1 - c0, "read_wall": t1 - t0, "tile_cpu": c2 - c1, "tile_wall": t2 - t1,
            "bytes_read": stats.bytes_read, "tile_bytes": os.path.getsize(tile_path)}


def _spin(seconds: float) -> float:
    end, started = time.perf_counter() + seconds, time.process_time()
    while time.perf_counter() < end:
        pass
    return time.process_time() - started


def effective_cores(tasks: int, seconds: float = 1.0) -> float:
    """Cores ``tasks`` busy threads get now: this machine is shared, and what others run takes
    its share (the scheduler shares the cores per runnable thread)."""
    with multiprocessing.get_context("fork").Pool(tasks) as pool:
        return sum(pool.map(_spin, [seconds] * tasks)) / seconds


def measure_windows(pool, paths, geometry, threads, tiles_dir: Path) -> list[dict]:
    """Each window's read and compute_tile CPU, the windows shared out over the pool as median's instances."""
    grid = Grid(geometry["width"], geometry["height"], bench_e2e.TILE_SIZE)
    tasks = [(paths, w.as_list(), threads, str(tiles_dir / f"{t}.tif")) for t, w in grid.windows()]
    pool.map(_measure_window, tasks[: len(multiprocessing.active_children())], chunksize=1)  # warm-up
    results = pool.map(_measure_window, tasks, chunksize=1)
    for (tile, window), result in zip(grid.windows(), results):
        result.update(pixels=window.width * window.height, scenes=len(paths), tile=str(tile))
    return results


def fit(rows: list[dict], target, columns: tuple[str, ...]) -> list[float]:
    """Non-negative least squares, the simple way: fit, drop a negative coefficient, fit again."""
    active = list(range(len(columns)))
    while True:
        a = np.array([[row[columns[i]] for i in active] for row in rows], float)
        y = np.array([target(row) for row in rows], float)
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        if (coef >= 0).all() or len(active) == 1:
            out = [0.0] * len(columns)
            for i, c in zip(active, coef):
                out[i] = max(0.0, float(c))
            return out
        active.pop(int(np.argmin(coef)))


def measure_mosaic(paths, tiles_dir: Path, geometry) -> dict:
    from temporal_median.assembly.cog import build_mosaic
    from temporal_median.raster.read import inspect_inputs

    raster = inspect_inputs(paths)
    tiles = sorted(str(p) for p in tiles_dir.glob("r*_c*.tif"))
    out = Path(tempfile.mkdtemp(prefix="bench_sim_mosaic_"))
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        result = build_mosaic(tiles, str(out), width=raster.width, height=raster.height, transform=raster.transform,
                              crs=raster.crs, name="median", tile_size=bench_e2e.TILE_SIZE)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        cog = os.path.getsize(result.cog_path)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    tile_bytes = sum(os.path.getsize(p) for p in tiles)
    return {"cpu": cpu, "wall": wall, "pixels": raster.width * raster.height, "cog_bytes": cog,
            "tile_bytes": tile_bytes, "threads": cpu / wall if wall else 1.0}


# -- the running cloud ---------------------------------------------------------------------


def measure_storage(cloud, run_dir: Path, rounds: int = 30) -> dict:
    """One small request's latency, and CPU per byte moved (emulator + client), on the emulator."""
    from temporal_median.base import storage
    from temporal_median.base.storage import GsUrl

    url = GsUrl("tm-work", "bench-sim/probe.json")
    storage.put_json(url, {"probe": True})
    t0 = time.perf_counter()
    for _ in range(rounds):
        storage.exists(url)
    latency = (time.perf_counter() - t0) / rounds
    blob = Path(tempfile.mkdtemp(prefix="bench_sim_blob_")) / "blob.bin"
    blob.write_bytes(os.urandom(32 << 20))
    before, c0 = bench_e2e.cloud_cpu(run_dir), time.process_time()
    moved = 0
    for i in range(3):
        target = GsUrl("tm-work", f"bench-sim/blob-{i}.bin")
        storage.put_file(target, str(blob), "application/octet-stream")
        storage.download_file(target, str(blob) + ".back")
        moved += 2 * blob.stat().st_size
    after, client = bench_e2e.cloud_cpu(run_dir), time.process_time() - c0
    emulator = after.get("storage", 0.0) - before.get("storage", 0.0)
    shutil.rmtree(blob.parent, ignore_errors=True)
    return {"latency": latency, "cpu_per_byte": (emulator + client) / moved, "emulator_cpu": emulator,
            "client_cpu": client, "moved": moved}


def measure_background(run_dir: Path, fanout_url: str, job_id: str, seconds: int = 4) -> float:
    """Cores the idle cloud uses, polled once a second as bench_e2e polls a job."""
    before = sum(bench_e2e.cloud_cpu(run_dir).values())
    t0 = time.perf_counter()
    for _ in range(seconds):
        http_json("GET", f"{fanout_url}jobs/{job_id}")
        time.sleep(1.0)
    return (sum(bench_e2e.cloud_cpu(run_dir).values()) - before) / (time.perf_counter() - t0)


def instance_cpu(cloud) -> float:
    return sum(bench_e2e._cpu_of(i["pid"]) + bench_e2e._cpu_of(i["server_pid"]) for i in cloud.instances("median"))


def warmup_job(cloud, run_dir: Path, fanout_url: str, inputs_dir: str, job_id: str, background: float,
               storage_cpu_per_byte: float, cog_ratio: float) -> dict:
    """A job not predicted: the finalize event's latency and the cloud's CPU per window besides
    median's instances, the mosaic's build, the background and the bytes storage moved."""
    from temporal_median.base import storage
    from temporal_median.base.clock import parse_time
    from temporal_median.base.storage import GsUrl

    cpu0, inst0 = sum(bench_e2e.cloud_cpu(run_dir).values()), instance_cpu(cloud)
    job = bench_e2e.run_job(fanout_url, inputs_dir, job_id)
    time.sleep(1.5)  # the mosaic's timeline, drawn after the record, is part of the job's CPU
    cpu, inst = sum(bench_e2e.cloud_cpu(run_dir).values()) - cpu0, instance_cpu(cloud) - inst0
    record = job["record"]
    tiles = list(storage.list_objects(GsUrl("tm-work", f"jobs/{job_id}/tiles/")))
    landed = max(parse_time(a["ended"]) for a in record["attempts"])
    gap = (parse_time(record["mosaic_started"]) - landed).total_seconds()
    moved = record["bytes_tiles"] * (2 + cog_ratio)  # tiles up, tiles down (mosaic), the COG up
    other = cpu - inst - record["cpu_seconds_mosaic"] - background * (job["seconds"] + 1.5) - storage_cpu_per_byte * moved
    return {"seconds": job["seconds"], "event_gap": gap, "per_window": max(0.0, other) / len(tiles),
            "cpu": cpu, "instances_cpu": inst}


# -- the simulation ------------------------------------------------------------------------


def local_shape(windows: list[dict]):
    from temporal_median.plan.model import JobShape, WindowShape

    message = 500 + 120 * windows[0]["scenes"]  # local paths in the messages
    return JobShape(tuple(WindowShape(w["tile"], w["pixels"], w["scenes"], w["bytes_read"]) for w in windows),
                    "luminance", message * len(windows))


def pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="demo,larger")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep-run-dir", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.jobs.split(",") if n]

    from temporal_median.base.settings import Settings, usable_cores
    from temporal_median.plan.deployment import Deployment
    from temporal_median.plan.parameters import Parameters
    from temporal_median.plan.plan import plan_geometry
    from temporal_median.plan.recommend import recommend
    from temporal_median.plan.simulate import simulate
    from temporal_median.plan.timeline import draw_timeline
    from temporal_median.raster.read import inspect_inputs

    RESULTS.mkdir(parents=True, exist_ok=True)
    cores = usable_cores()
    print(f"cores {cores}; load average before: {bench_e2e.loadavg()}")
    series = {}
    for name in names:
        paths = bench_e2e.ensure_series(JOBS[name])
        bench_e2e.warm_page_cache(paths)
        series[name] = paths

    cloud, run_dir, median_fn, threads = bench_e2e.bench_cloud("bench_sim_", series[names[0]])
    workers = int(median_fn.workers)
    push = next(s for s in cloud.topology.subscriptions if s.name == "windows-median")
    settings = Settings.from_env({**clean_environ(), **cloud.topology.function_env, **median_fn.env})
    print(f"local cloud: median {workers} instances x concurrency {median_fn.concurrency}, {threads} reading threads, "
          f"push concurrency {push.max_concurrency}, backoff {push.min_backoff_seconds:g}-{push.max_backoff_seconds:g} s")

    # 1. Per-window costs and the mosaic, outside the cloud.
    windows, mosaics = {}, {}
    tiles_root = Path(tempfile.mkdtemp(prefix="bench_sim_tiles_"))
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        for name in names:
            tiles_dir = tiles_root / name
            tiles_dir.mkdir()
            windows[name] = measure_windows(pool, series[name], JOBS[name], threads, tiles_dir)
            available = effective_cores(workers * threads)
            mosaics[name] = measure_mosaic(series[name], tiles_dir, JOBS[name])
            # The build's cores on a machine of its own: what it got, over what was free.
            mosaics[name]["threads"] = min(cores, mosaics[name]["threads"] * cores / min(cores, available))
    finally:
        pool.close()
        pool.join()
    rows = [w for name in names for w in windows[name]]
    for row in rows:
        row["samples"] = row["pixels"] * row["scenes"]
    decode, scene = fit(rows, lambda r: r["read_cpu"], ("samples", "scenes"))
    kernel, write = fit(rows, lambda r: r["tile_cpu"] - r["read_cpu"], ("samples", "pixels"))
    tile_bpp = sum(r["tile_bytes"] for r in rows) / sum(r["pixels"] for r in rows)
    ms = [mosaics[n] for n in names]
    if len(ms) > 1:
        mosaic_fixed, mosaic_px = fit([{"one": 1, **m} for m in ms], lambda m: m["cpu"], ("one", "pixels"))
    else:
        mosaic_fixed, mosaic_px = 0.0, ms[0]["cpu"] / ms[0]["pixels"]
    cog_ratio = sum(m["cog_bytes"] for m in ms) / sum(m["tile_bytes"] for m in ms)
    mosaic_threads = statistics.median(m["threads"] for m in ms)
    print("\nper-window costs measured (CPU seconds, all threads; medians over windows):")
    for name in names:
        w = windows[name]
        print(f"  {name:7s} {len(w):3d} windows: read {statistics.median(r['read_cpu'] for r in w):.2f} CPU-s "
              f"({statistics.median(r['read_wall'] for r in w):.2f} s), compute_tile "
              f"{statistics.median(r['tile_cpu'] for r in w):.2f} CPU-s ({statistics.median(r['tile_wall'] for r in w):.2f} s); "
              f"mosaic from its tiles {mosaics[name]['cpu']:.2f} CPU-s in {mosaics[name]['wall']:.2f} s")
    fitted = {"decode_s_per_sample": decode, "scene_s": scene, "kernel_s_per_sample_luminance": kernel,
              "write_s_per_pixel": write, "tile_bytes_per_pixel": tile_bpp, "mosaic_fixed_s": mosaic_fixed,
              "mosaic_cpu_s_per_pixel": mosaic_px, "cog_bytes_per_tile_byte": cog_ratio,
              "mosaic_threads": mosaic_threads}
    print("fitted: " + ", ".join(f"{k} {v:.3g}" for k, v in fitted.items()))
    residual = [r["tile_cpu"] - (r["samples"] * (decode + kernel) + r["scenes"] * scene + r["pixels"] * write)
                for r in rows]
    print(f"  compute_tile CPU, fitted vs measured: residuals {min(residual):+.3f} .. {max(residual):+.3f} CPU-s")

    # 2. The cloud: its own figures, then each job predicted and run.
    results = {}
    try:
        t0 = time.perf_counter()
        cloud.up()
        print(f"\nlocal cloud up in {time.perf_counter() - t0:.1f} s (run dir {run_dir})")
        os.environ.update(cloud.env())
        fanout_url = cloud.function_url("fanout")
        stamp = time.strftime("%H%M%S")
        store = measure_storage(cloud, run_dir)
        first = series[names[0]]
        t0 = time.perf_counter()
        inspect_inputs(first)
        t0 = time.perf_counter()
        inspect_inputs(first)
        scene_s = (time.perf_counter() - t0) / len(first)
        warm = {}
        background = 0.0
        for name in names:
            inputs_dir = str(bench_e2e.series_dir(JOBS[name]).resolve())
            job_id = f"bench-sim-{stamp}-{name}-warmup"
            if not warm:  # the first warm-up also loads every instance's kernels; not counted
                bench_e2e.run_job(fanout_url, inputs_dir, job_id + "0")
                background = measure_background(run_dir, fanout_url, job_id + "0")
            warm[name] = warmup_job(cloud, run_dir, fanout_url, inputs_dir, job_id, background, store["cpu_per_byte"],
                                    cog_ratio)
        event = statistics.mean(w["event_gap"] for w in warm.values())
        per_window = statistics.mean(w["per_window"] for w in warm.values())
        print(f"measured on the cloud: storage request {store['latency'] * 1000:.1f} ms, storage CPU "
              f"{store['cpu_per_byte'] * 1e9:.2f} ns/byte; idle cloud + 1 Hz polls {background:.3f} cores; "
              f"fanout inspect {scene_s * 1000:.2f} ms/scene; tile landed -> mosaic started {event:.2f} s; "
              f"platform CPU per window {per_window:.3f} CPU-s (warm-up jobs: "
              + ", ".join(f"{n} {w['seconds']:.2f} s" for n, w in warm.items()) + ")")
        local = Parameters().replace(SOURCE, **{k: v for k, v in fitted.items()}).replace(
            SOURCE + " (the local cloud)", cold_start_s=0.0, first_request_extra_s=0.0, storage_latency_s=store["latency"],
            storage_cpu_s_per_byte=store["cpu_per_byte"], host_background_cores=background, fanout_scene_s=scene_s,
            event_latency_s=event, mosaic_event_s=per_window, push_latency_s=0.004)
        deployment = Deployment(
            median_max_instances=workers, median_min_instances=workers, median_concurrency=median_fn.concurrency,
            median_cpu=float(settings.median_cpu), median_memory_gib=settings.median_memory_gib,
            mosaic_cpu=float(settings.mosaic_cpu), mosaic_memory_gib=settings.mosaic_memory_gib, read_threads=threads,
            push_min_backoff_s=push.min_backoff_seconds, push_max_backoff_s=push.max_backoff_seconds,
            push_max_window=push.max_concurrency, host_cores=float(cores), inputs_remote=False)
        for name in names:
            inputs_dir = str(bench_e2e.series_dir(JOBS[name]).resolve())
            before = effective_cores(workers * threads)
            runs = [bench_e2e.run_job(fanout_url, inputs_dir, f"bench-sim-{stamp}-{name}-r{r}") for r in range(args.rounds)]
            available = min(float(cores), (before + effective_cores(workers * threads)) / 2)
            # Simulated on the cores the job had: this machine's, less what other work took meanwhile.
            sim = simulate(local_shape(windows[name]), replace(deployment, host_cores=available), local)
            wall = statistics.median(r["seconds"] for r in runs)
            usd = statistics.median(r["record"]["cost_estimate"]["usd_total"] for r in runs)
            record = {**runs[-1]["record"], "posted": bench_e2e.datetime.fromtimestamp(
                runs[-1]["posted_at"], bench_e2e.timezone.utc).isoformat().replace("+00:00", "Z")}
            draw_timeline(record, str(RESULTS / f"timeline-{name}-measured.png"))
            draw_timeline(sim.to_record(), str(RESULTS / f"timeline-{name}-simulated.png"))
            (RESULTS / f"job-{name}.json").write_text(json.dumps(runs[-1]["record"], indent=1))
            results[name] = {"sim": sim, "wall": wall, "usd": usd, "runs": runs, "record": runs[-1]["record"],
                             "cores": available}
    finally:
        stopped = cloud.down()
        if not args.keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(tiles_root, ignore_errors=True)
    print(f"local cloud down ({len(stopped)} parts stopped); load average after: {bench_e2e.loadavg()}")

    print("\npredicted (simulated) beside measured, local cloud:")
    print(f"  {'job':7s} {'windows':>7s} {'wall predicted':>15s} {'measured':>9s} {'error':>7s}   "
          f"{'cost predicted':>15s} {'measured':>10s} {'error':>7s}   bound (predicted)")
    met = True
    for name, r in results.items():
        sim = r["sim"]
        we, ce = pct(sim.wall_s, r["wall"]), pct(sim.usd, r["usd"])
        met &= abs(we) <= 100 * WALL_GOAL and abs(ce) <= 100 * COST_GOAL
        print(f"  {name:7s} {len(windows[name]):7d} {sim.wall_s:13.2f} s {r['wall']:7.2f} s {we:+6.1f}%   "
              f"${sim.usd:.6f} ${r['usd']:.6f} {ce:+6.1f}%   {sim.bound} (on {r['cores']:.2f} cores free)")
        usage, rec = sim.cost["usage"], r["record"]["cost_estimate"]["usage"]
        print(f"          usage predicted / recorded: median {usage['median_seconds']:.2f} / {rec['median_seconds']:.2f} s, "
              f"mosaic {usage['mosaic_seconds']:.2f} / {rec['mosaic_seconds']:.2f} s, class B "
              f"{usage['class_b_operations']} / {rec['class_b_operations']}; runs {bench_e2e.fmt_runs(x['seconds'] for x in r['runs'])} s")
    print(f"goal: wall within {100 * WALL_GOAL:.0f}% and cost within {100 * COST_GOAL:.0f}% on every job: "
          f"{'met' if met else 'NOT met'}")

    # 3. The full granule, as deployed, with this machine's CPU figures.
    cloud_params = Parameters().replace(SOURCE + " (CPU figures, this run)", **fitted)
    scenes, width, height = GRANULE
    plan = plan_geometry(scenes, width, height, parameters=cloud_params, deployment=Deployment.terraform())
    print(f"\nfull granule {scenes} x {width} x {height}, {len(plan.shape.windows)} windows, "
          f"{plan.shape.bytes / 1e9:.1f} GB to read ({plan.bytes_source}):")
    goals = f"goal <= {GRANULE_GOALS[0]:.0f} s and <= ${GRANULE_GOALS[1]:.2f}"

    def line(label: str, sim) -> str:
        ok = sim.wall_s <= GRANULE_GOALS[0] and sim.usd <= GRANULE_GOALS[1]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(sim.breakdown.items(), key=lambda kv: -kv[1]) if v > 0.05)
        return (f"  {label}: {sim.wall_s:.1f} s, ${sim.usd:.4f} ({goals}: {'met' if ok else 'NOT met'}); bound by "
                f"{sim.bound} [{parts}]; {sim.figures['refused_429']} refused (429), {sim.figures['cold_starts']} cold starts")

    d = plan.deployment
    print(line(f"Terraform's defaults (median {d.median_max_instances} x {d.median_concurrency}, {d.median_cpu:g} vCPU "
               f"/ {d.median_memory_gib:g} GiB; mosaic {d.mosaic_cpu:g} vCPU)", plan.simulation))
    draw_timeline(plan.simulation.to_record(), str(RESULTS / "timeline-granule-defaults-simulated.png"))
    for label, quota in (("recommended", None), (f"recommended within {QUOTA_MEDIAN_VCPUS} median vCPUs", QUOTA_MEDIAN_VCPUS)):
        best, tried = recommend(plan.shape, plan.deployment, cloud_params, usd_goal=GRANULE_GOALS[1],
                                max_median_vcpus=quota)
        b = best.deployment
        print(line(f"{label} ({len(tried)} settings tried): median {b.median_max_instances} x {b.median_concurrency}, "
                   f"{b.median_cpu:g} vCPU / {b.median_memory_gib:g} GiB; mosaic {b.mosaic_cpu:g} vCPU", best.simulation))
        if quota is None:
            draw_timeline(best.simulation.to_record(), str(RESULTS / "timeline-granule-recommended-simulated.png"))
            recommended = b
    print("  how the recommended answer moves with the assumed figures (one at a time):")
    for name, factor in (("cold_start_s", 0.5), ("cold_start_s", 2.0), ("storage_instance_Bps", 0.5),
                         ("storage_latency_s", 2.0), ("push_initial_window", 0.5), ("push_initial_window", 4.0),
                         ("event_latency_s", 3.0)):
        varied = cloud_params.replace("sensitivity", **{name: getattr(cloud_params, name) * factor})
        sim = simulate(plan.shape, recommended, varied)
        print(f"    {name} x{factor:g} ({getattr(varied, name):g}): {sim.wall_s:.1f} s, ${sim.usd:.4f}, bound by {sim.bound}")
    print(f"timelines: {RESULTS}/timeline-*.png")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
