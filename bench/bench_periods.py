"""Cost of periods (issue 20): a 12-month job vs the one-period job, same series and grid, side by side.

Run: .venv/bin/python bench/bench_periods.py [--rounds 2] [--keep-run-dir] [--scenes N --width W --height H]
     [--save FILE]  (then --report-from FILE prints the report again without running anything)

On the local cloud (bench_e2e's series, topology and helpers), each round runs, in turn:

* "window read": the job's windows read with ``read_window`` by as many processes as median has
  workers (bench_e2e's pure read of the windows): what both jobs must read, once.
* "composites, in-process": for every window, its stack (read untimed) and then, timed, the
  project's own ``Composites``: the whole range's median and tile write alone, and the whole
  range plus each month's median (a slice of the stack) and tile writes; one thread (the
  kernels with NUMBA_NUM_THREADS=1, the COG writes single-threaded), one window at a time, so
  the seconds are core-seconds of work with nothing else running.
* "one-period job": POST /jobs (fresh job_id) until its collection.json exists (looked up in
  storage every 0.5 s: a status poll would cost fanout a listing per period), then its status,
  its records (the whole range's and each period's job.json) and its tiles' landing times.
* "12-month job": the same with ``"periods": "month"``.

The two jobs alternate which goes first from round to round. An uncounted warm-up of each goes
first. The best (least) of the rounds is kept for every figure (noise on shared cores only
adds time); every run is printed in brackets.

The 12-month job's floor is bench_e2e's, with its extra work: the window read, plus every
window's medians (whole range and the 12 months) and tile writes (13), spread over the median
function's workers (= cores), as bench_e2e spreads its floor's median and write.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_e2e as e2e

from temporal_median.base.grid import Grid, Window
from temporal_median_cli.run import http_json
from temporal_median_cli.sample import PROFILES

TILE_SIZE = e2e.TILE_SIZE
METHOD = "luminance"
PERIODS = "month"
#: The 12-month job's tiles phase (POST -> last tile landed) against its floor.
FLOOR_GOAL = 1.15
JOB_TIMEOUT_SECONDS = e2e.JOB_TIMEOUT_SECONDS
#: How often the wait looks for collection.json and samples the cloud's CPU; how often it asks status.
SAMPLE_SECONDS = 0.5
STATUS_SECONDS = 15.0


def cpu_between(samples: list, start: float, end: float) -> dict[str, float]:
    """CPU seconds by part of the cloud between two times, interpolated between the samples."""

    def at(t: float) -> dict[str, float]:
        for (t0, a), (t1, b) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                return {p: a.get(p, 0.0) + f * (b.get(p, 0.0) - a.get(p, 0.0)) for p in {*a, *b}}
        return samples[0][1] if t < samples[0][0] else samples[-1][1]

    a, b = at(start), at(end)
    return {p: b.get(p, 0.0) - a.get(p, 0.0) for p in {*a, *b}}


# -- in-process composites (module level: spawned pool workers run it) ------------------------


def _window_composites(task: tuple) -> dict:
    """One window's composites timed in this process, one thread: the whole range alone, then
    the whole range and every period (the stack read first, untimed)."""
    os.environ["NUMBA_NUM_THREADS"] = "1"  # median.py reads it at each call: one kernel thread
    from temporal_median.compute.composites import Composites
    from temporal_median.compute.median import prepare
    from temporal_median.compute.tile import read_window
    from temporal_median.raster.read import probe

    urls, window_list, runs, threads = task
    window = Window(*window_list)
    prepare(METHOD)
    stack = e2e._buffer((len(urls), 3, window.height, window.width))
    read_window(urls, window, max_workers=threads, out=stack)
    grid = probe(urls[0], None).grid
    h, w = window.height, window.width
    work = tempfile.mkdtemp(prefix="bench_periods_tile_")
    try:
        figures = {}
        for key, periods in (("one", []), ("months", [(n, a, b, os.path.join(work, f"{n}.tif")) for n, a, b in runs])):
            composites = Composites(window, len(urls), periods)
            cpu = time.process_time()
            composites.add(stack, METHOD, 0, h, 0, w)
            # threads=None: one; no read here (the stack was read untimed above).
            write_s = composites.write(os.path.join(work, f"{key}.tif"), grid, 0, 0.0).seconds_write
            figures[key] = {"median": composites.seconds_median, "write": write_s,
                            "cpu": time.process_time() - cpu, "tiles": 1 + len(periods)}
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- the jobs --------------------------------------------------------------------------------


def run_job(cloud, fanout_url: str, inputs_dir: str, job_id: str, periods: str | None) -> dict:
    """POST one job (``periods`` or none), wait until it is complete, then gather its records and tiles.

    The wait looks for collection.json (written last) in storage every SAMPLE_SECONDS: one
    object lookup, where a status poll costs fanout a listing of every composite's tiles (13
    listings for 12 months). Status is asked every STATUS_SECONDS only to notice a failure.
    The cloud's CPU by part is sampled at each look, so the tiles phase's CPU can be told apart.
    """
    from localcloud import storage_client

    client = storage_client(cloud.env()["STORAGE_EMULATOR_HOST"], cloud.topology.project)

    def blob(url: str):
        bucket, _, key = url.removeprefix("gs://").partition("/")
        return client.bucket(bucket).get_blob(key)

    results_url = cloud.topology.function_env["TM_RESULTS_URL"].rstrip("/")
    collection_url = f"{results_url}/{job_id}/collection.json"
    body = {"inputs": inputs_dir, "tile_size": TILE_SIZE, "method": METHOD, "job_id": job_id}
    if periods:
        body["periods"] = periods
    samples = [(time.time(), e2e.cloud_cpu(cloud.run_dir))]
    posted_at = time.time()
    t0 = time.perf_counter()
    code, answer = http_json("POST", fanout_url + "jobs", body)
    if code != 202:
        raise RuntimeError(f"POST /jobs answered {code}: {answer}")
    asked = t0
    while blob(collection_url) is None:
        samples.append((time.time(), e2e.cloud_cpu(cloud.run_dir)))
        now = time.perf_counter()
        if now - asked >= STATUS_SECONDS:
            asked = now
            code, status = http_json("GET", f"{fanout_url}jobs/{job_id}")
            if code == 200 and status["state"] in e2e.END_STATES - {"complete"}:
                raise RuntimeError(f"job {job_id} ended {status['state']}: {json.dumps(status)[:2000]}")
        if now - t0 > JOB_TIMEOUT_SECONDS:
            raise RuntimeError(f"job {job_id} not complete after {JOB_TIMEOUT_SECONDS} s")
        time.sleep(SAMPLE_SECONDS)
    samples.append((time.time(), e2e.cloud_cpu(cloud.run_dir)))
    code, status = http_json("GET", f"{fanout_url}jobs/{job_id}")
    if code != 200 or status["state"] != "complete":
        raise RuntimeError(f"job {job_id}: collection.json written but status {code}: {json.dumps(status)[:2000]}")

    record = status["mosaic"]["figures"]
    period_records = {name: json.loads(blob(p["record"]).download_as_bytes()) for name, p in status["periods"].items()}
    collection = blob(status["mosaic"]["record"].rsplit("/", 1)[0] + "/collection.json")
    tiles = [b for b in client.list_blobs("tm-work", prefix=f"jobs/{job_id}/") if b.name.endswith(".tif")
             and "/tiles/" in b.name]
    landed = max(b.time_created.timestamp() for b in tiles)
    # Every result object's landing time (after POST), e.g. the timelapse just before collection.json.
    results_bucket, _, results_key = status["mosaic"]["record"].removeprefix("gs://").partition("/")
    results = {b.name[len(results_key.rsplit("/", 1)[0]) + 1:]: b.time_created.timestamp() - posted_at
               for b in client.list_blobs(results_bucket, prefix=results_key.rsplit("/", 1)[0] + "/")}
    ends = [e2e.parse_utc(a["ended"]) for a in record.get("attempts") or [] if a.get("ended")]
    job = {"job_id": job_id, "posted_at": posted_at, "record": record, "periods": period_records,
           "status": status, "tile_objects": len(tiles), "results": results,
           "last_tile": landed - posted_at,
           "last_attempt_end": (max(ends) - posted_at) if ends else float("nan"),
           "whole_done": e2e.parse_utc(record["completed"]) - posted_at,
           "complete": collection.time_created.timestamp() - posted_at,
           "cpu": cpu_between(samples, samples[0][0], samples[-1][0]),
           "cpu_tiles": cpu_between(samples, posted_at, landed)}
    if period_records:
        job["periods_done"] = max(e2e.parse_utc(r["completed"]) for r in period_records.values()) - posted_at
    job["split"] = e2e.stage_split(cloud, job)
    return job


# -- main ------------------------------------------------------------------------------------


def month_runs(geometry: dict) -> list[tuple[str, int, int]]:
    """The series' months with scenes, as fanout cuts them: (name, first, stop) over the scenes."""
    from temporal_median.job.periods import period_runs, periods_between
    from temporal_median_cli.sample.series import SeriesInfo

    info = SeriesInfo.load(str(e2e.series_dir(geometry)))
    scenes = sorted(info.scenes, key=lambda s: s.name)  # the names are the acquisition times
    days = [date.fromisoformat(s.acquired[:10]) for s in scenes]
    every = periods_between(PERIODS, min(days), max(days))
    runs = period_runs(every, days)
    return [(name, a, b) for name, a, b in runs if b > a]


def best(values) -> float:
    return min(values)


def runs_text(values, fmt: str = "{:.2f}") -> str:
    return "[" + ", ".join(fmt.format(v) for v in values) + "]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep-run-dir", action="store_true", help="keep the cloud's run directory (logs)")
    parser.add_argument("--scenes", type=int, default=PROFILES["demo"]["scenes"], help="default: the demo's")
    parser.add_argument("--width", type=int, default=PROFILES["demo"]["width"])
    parser.add_argument("--height", type=int, default=PROFILES["demo"]["height"])
    parser.add_argument("--save", metavar="FILE", help="also write the measurements as JSON to FILE")
    parser.add_argument("--report-from", metavar="FILE", help="print the report of a --save file; run nothing")
    args = parser.parse_args(argv)
    if args.report_from:
        report(**json.loads(Path(args.report_from).read_text()))
        return 0
    geometry = {"scenes": args.scenes, "width": args.width, "height": args.height}


    cores = os.cpu_count() or 1
    print(f"cores {cores}; load average (1, 5, 15 min) before: {e2e.loadavg()}")
    paths = e2e.ensure_series(geometry)
    inputs_dir = str(e2e.series_dir(geometry).resolve())
    e2e.warm_page_cache(paths)
    grid = Grid(args.width, args.height, TILE_SIZE)
    windows = [w.as_list() for _, w in grid.windows()]
    runs = month_runs(geometry)
    print(f"series: {len(paths)} scenes of {args.width} x {args.height}; {len(windows)} windows of {TILE_SIZE}")
    print(f"periods={PERIODS}: {len(runs)} periods with scenes "
          f"({', '.join(f'{n} {b - a}' for n, a, b in runs)} scenes)"
          + ("" if len(runs) == 12 else f"  -- NOT 12: the series spans {len(runs)} months"))

    cloud, run_dir, median_fn, threads = e2e.bench_cloud("bench_periods_", paths)
    workers = int(median_fn.workers)
    print(f"median function: {workers} workers x 1 request each, {threads} reading threads; "
          f"mosaic: {cloud.topology.function('mosaic').workers} instance(s)")

    pool = multiprocessing.get_context("spawn").Pool(workers)
    stamp = time.strftime("%H%M%S")
    try:
        t0 = time.perf_counter()
        cloud.up()
        print(f"local cloud up in {time.perf_counter() - t0:.1f} s (run dir {run_dir})")
        fanout_url = cloud.function_url("fanout")

        def window_read() -> float:
            t = time.perf_counter()
            pool.map(e2e._read_job_window, [(paths, w, threads) for w in windows], chunksize=1)
            return time.perf_counter() - t

        def composites() -> list[dict]:
            # One window at a time: each measured with the machine otherwise idle.
            return [pool.apply(_window_composites, ((paths, w, runs, threads),)) for w in windows]

        def job(kind: str, name: str) -> dict:
            return run_job(cloud, fanout_url, inputs_dir, name, PERIODS if kind == "months" else None)

        # Warm-up, not counted: reads, kernels in every process, both kinds of job.
        window_read()
        composites()
        warm = {kind: job(kind, f"bench-periods-{stamp}-warmup-{kind}") for kind in ("one", "months")}
        print(f"warm-up (not counted): one-period job {warm['one']['complete']:.2f} s, "
              f"12-month job {warm['months']['complete']:.2f} s")
        names = sorted(warm["months"]["status"]["periods"])
        if names != [n for n, _, _ in runs]:
            raise RuntimeError(f"the job's periods {names} are not the series' months {[n for n, _, _ in runs]}")

        reads, costs, jobs = [], [], {"one": [], "months": []}
        for r in range(args.rounds):
            reads.append(window_read())
            costs.append(composites())
            order = ("one", "months") if r % 2 == 0 else ("months", "one")
            for kind in order:
                jobs[kind].append(job(kind, f"bench-periods-{stamp}-r{r}-{kind}"))
            print(f"round {r + 1}: window read {reads[-1]:.2f} s; tiles phase (POST -> last tile) "
                  f"one-period {jobs['one'][-1]['last_tile']:.2f} s, 12-month {jobs['months'][-1]['last_tile']:.2f} s "
                  f"(order: {' then '.join(order)})")
    finally:
        pool.close()
        pool.join()
        stopped = cloud.down()
        if not args.keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"local cloud down ({len(stopped)} parts stopped)")
    measured = {"rounds": args.rounds, "workers": workers, "cores": cores, "n_windows": len(windows), "runs": runs,
                "reads": reads, "costs": costs, "jobs": jobs}
    if args.save:
        Path(args.save).write_text(json.dumps(measured, default=str))
    report(**measured)
    print(f"cores {cores}; load average after: {e2e.loadavg()}")
    return 0


def report(rounds, workers, cores, n_windows, runs, reads, costs, jobs) -> None:
    one, months = jobs["one"], jobs["months"]
    n_periods = len(runs)

    def total(round_costs, key, field):
        return sum(c[key][field] for c in round_costs)

    # In-process core-seconds per round (sums over the windows), best round kept per figure.
    one_median = [total(c, "one", "median") for c in costs]
    one_write = [total(c, "one", "write") for c in costs]
    all_median = [total(c, "months", "median") for c in costs]
    all_write = [total(c, "months", "write") for c in costs]
    extra_median = [a - b for a, b in zip(all_median, one_median)]
    extra_write = [a - b for a, b in zip(all_write, one_write)]
    read_s = best(reads)
    floor_one = read_s + (best(one_median) + best(one_write)) / workers
    floor_months = read_s + (best(all_median) + best(all_write)) / workers

    tiles_one = best(j["last_tile"] for j in one)
    tiles_months = best(j["last_tile"] for j in months)
    ratio_floor = tiles_months / floor_months
    ratio_one = tiles_months / tiles_one

    print()
    print(f"best of {rounds} rounds (runs in brackets); in-process seconds are one thread's, summed over "
          f"{n_windows} windows:")
    row = "  {:<58s}: {:>7.2f} s  {}"
    print(row.format(f"window read ({workers} processes)", read_s, runs_text(reads)))
    print(row.format("whole-range median, in-process", best(one_median), runs_text(one_median)))
    print(row.format(f"+ {n_periods} months' medians (extra), in-process", best(extra_median), runs_text(extra_median)))
    print(row.format("whole-range tile write, in-process", best(one_write), runs_text(one_write)))
    print(row.format(f"+ {n_periods} months' tile writes (extra), in-process", best(extra_write), runs_text(extra_write)))
    tile_w = best(extra_write) / (n_periods * n_windows)
    print(f"    = {best(extra_write) / n_windows:.3f} s of tile writes per window x {n_windows} windows "
          f"({tile_w * 1000:.0f} ms a month's tile); a month's median {best(extra_median) / (n_periods * n_windows) * 1000:.0f} ms "
          f"a window, the whole range's {best(one_median) / n_windows * 1000:.0f} ms")
    print()

    header = f"  {'':<44s} {'one-period':>12s} {'12-month':>12s} {'ratio':>7s}"
    print(header)

    def line(label, a, b, fmt="{:12.2f}", unit=" s"):
        ra = fmt.format(a) if a is not None else " " * 12
        rb = fmt.format(b)
        ratio = f"{b / a:6.2f}x" if a else ""
        print(f"  {label:<44s} {ra}{unit} {rb}{unit} {ratio}")

    def bj(jlist, key):
        return best(j[key] for j in jlist)

    bytes_one = [int(j["record"]["bytes_read"]) for j in one]
    bytes_months = [int(j["record"]["bytes_read"]) for j in months]
    equal = len(set(bytes_one + bytes_months)) == 1
    print(f"  {'bytes_read (whole-range record)':<44s} {bytes_one[-1]:>12,d}   {bytes_months[-1]:>12,d}   "
          f"{'equal' if equal else 'DIFFERENT'} in every run")
    print(f"  {'tile objects written':<44s} {one[-1]['tile_objects']:>12d}   {months[-1]['tile_objects']:>12d}")
    line("floor: read + (medians + writes) / workers", floor_one, floor_months)
    line("tiles phase: POST -> last tile landed", tiles_one, tiles_months)
    line("  POST -> last attempt ended (record)", bj(one, "last_attempt_end"), bj(months, "last_attempt_end"))
    line("  tiles phase / its floor", tiles_one / floor_one, ratio_floor, "{:12.2f}", "x")
    line("POST -> whole-range record", bj(one, "whole_done"), bj(months, "whole_done"))
    line("POST -> job complete (collection.json)", bj(one, "complete"), bj(months, "complete"))

    def split(jlist, key):
        return best(j["split"][key] for j in jlist)

    line("pipeline tiles: median kernel, sum", split(one, "median_sum"), split(months, "median_sum"))
    line("pipeline tiles: tile write, sum", split(one, "write_sum"), split(months, "write_sum"))
    line("pipeline tiles: handling, sum (median log)", split(one, "tile_handle_sum"), split(months, "tile_handle_sum"))
    line("whole-range mosaic (its record)", split(one, "seconds_mosaic"), split(months, "seconds_mosaic"))
    for label, key in (("CPU seconds, every process of the cloud", "cpu"),
                       ("CPU seconds of the tiles phase (POST -> last tile)", "cpu_tiles")):
        line(label, best(sum(j[key].values()) for j in one), best(sum(j[key].values()) for j in months))
        parts = sorted({p for j in one + months for p in j[key]}, key=lambda p: -best(j[key].get(p, 0.0) for j in months))
        for part in parts:
            a = [j[key].get(part, 0.0) for j in one]
            b = [j[key].get(part, 0.0) for j in months]
            if max(a + b) >= 0.05:
                line(f"  of which {part}", best(a), best(b))
    tiles_cpu_bound = [sum(j["cpu_tiles"].values()) / cores for j in months]
    print(f"  {'12-month tiles phase, its CPU / ' + str(cores) + ' cores':<44s} {'':12s}   {best(tiles_cpu_bound):12.2f} s "
          f"(no schedule can beat that here)")

    def usd(j):
        return j["record"]["cost_estimate"]["usd_total"] + sum(r["cost_estimate"]["usd_total"] for r in j["periods"].values())

    line("cost estimate, USD (records, all composites)", best(usd(j) for j in one), best(usd(j) for j in months),
         "{:12.6f}", "  ")

    # The periods' mosaics: separate invocations (one instance here, side by side in the cloud).
    period_cpu = [sum(r["cpu_seconds_mosaic"] for r in j["periods"].values()) for j in months]
    period_wall_here = [j["periods_done"] - j["last_tile"] for j in months]
    longest = [max(r["seconds_mosaic"] for r in j["periods"].values()) for j in months]
    whole_mosaic = [j["record"]["seconds_mosaic"] for j in months]
    mosaic_cpu_extra = [b - a for a, b in zip((j["cpu"].get("function:mosaic", 0.0) for j in one),
                                              (j["cpu"].get("function:mosaic", 0.0) for j in months))]
    print()
    print(f"the {n_periods} periods' mosaics (separate invocations of mosaic; here {len(months[-1]['periods'])} of them "
          f"share one instance):")
    print(row.format("CPU seconds, sum of the periods' cpu_seconds_mosaic", best(period_cpu), runs_text(period_cpu)))
    print(row.format("  mosaic processes' CPU, 12-month minus one-period job", best(mosaic_cpu_extra),
                     runs_text(mosaic_cpu_extra)))
    print(row.format("wall here: last tile -> last period record", best(period_wall_here), runs_text(period_wall_here)))
    print(row.format("wall in the cloud: the longest single mosaic", best(longest), runs_text(longest)))
    print(row.format("  (the whole range's mosaic, its own instance)", best(whole_mosaic), runs_text(whole_mosaic)))
    print("  what lands after the last tile, 12-month job (seconds after it; runs in brackets):")
    marks = [("the first period's record", lambda j: min(e2e.parse_utc(r["completed"]) for r in j["periods"].values())
              - j["posted_at"]),
             ("the whole range's record (job.json)", lambda j: j["whole_done"]),
             ("the last period's record", lambda j: j["periods_done"]),
             ("timeline.png (drawn after the whole range's record)", lambda j: j["results"].get("timeline.png", float("nan"))),
             ("timelapse.gif (after every record)", lambda j: j["results"].get("timelapse.gif", float("nan"))),
             ("collection.json: the job is complete", lambda j: j["complete"])]
    for label, when in marks:
        values = [when(j) - j["last_tile"] for j in months]
        print(row.format("    " + label, best(values), runs_text(values)))
    print()
    print(f"bytes: the 12-month job's bytes_read {bytes_months[-1]:,d} vs the one-period job's {bytes_one[-1]:,d}: "
          f"{'equal' if equal else 'NOT equal'}   (goal: equal, one read per scene and window: "
          f"{'met' if equal else 'NOT met'})")
    print(f"tiles phase: 12-month job {tiles_months:.2f} s vs its floor {floor_months:.2f} s = read {read_s:.2f} + "
          f"({best(all_median):.2f} medians + {best(all_write):.2f} writes) / {workers} workers: "
          f"{ratio_floor:.2f}x   (goal <= {FLOOR_GOAL}x: {'met' if ratio_floor <= FLOOR_GOAL else 'NOT met'})")
    print(f"  vs the one-period job's {tiles_one:.2f} s: {ratio_one:.2f}x (+{tiles_months - tiles_one:.2f} s); "
          f"the floor's extra: {floor_months - floor_one:.2f} s (medians {best(extra_median) / workers:.2f}, "
          f"writes {best(extra_write) / workers:.2f} on {workers} cores)")
    print(f"  the {n_periods} extra tile writes: {best(extra_write) / n_windows:.3f} s per window x {n_windows} windows "
          f"= {best(extra_write):.2f} core-seconds ({best(extra_write) / workers:.2f} s on {workers} cores)")


if __name__ == "__main__":
    sys.exit(main())
