"""One tile of 216 scenes: pure windowed read vs compute_tile (read + median + write), and its peak RSS.

Run: .venv/bin/python bench/bench_tile.py [--scenes 216] [--size 1024|2048] [--repeats 3]
     .venv/bin/python bench/bench_tile.py --encodings deflate512,deflate1024,jpeg1024

Default: the sample series of --size (216 x 1024 x 1024, 512-px DEFLATE blocks), window = the
whole scene (1024) or an interior window (2048). With --encodings: one 216 x 2048 x 2048 series
written three ways (the steward's issue-13 set: DEFLATE with 512- and 1024-px blocks, JPEG q75
with 1024-px blocks, the same pixels), window (1024, 1024, 1024, 1024) = one window of the 1024
grid, as a median worker reads it. Series are generated once into bench/.data/ and reused.

Side by side in one run, interleaved per round (machine noise hits all alike), medians printed:

* "pure read": every scene's window read with plain rasterio (``rasterio.open`` +
  ``ds.read(out=...)`` per scene, the reading threads compute_tile uses) into one preallocated,
  already-touched (T, 3, h, w) array: decoding alone, no page faults: the baseline of the goal;
* "read_window": the core's own reader (same memory);
* "compute_tile": read + median + tile write, as a warm worker runs it.

Peak RSS (VmHWM) of compute_tile is measured in a fresh process per series.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporal_median.base.grid import Window  # noqa: E402
from temporal_median.compute.tile import compute_tile, read_window  # noqa: E402
from temporal_median.raster.gdal import gdal_env, read_threads  # noqa: E402
from temporal_median_cli.sample import generate_series  # noqa: E402

DATA = ROOT / "bench" / ".data"
#: Goals (issue 13): compute_tile at most 1.15x the pure read of the same window (pre-touched
#: memory), and a fresh tile process at most 0.75 GiB peak RSS whatever the inputs' block size.
RATIO_GOAL = 1.15
RSS_GOAL = 768 << 20
#: The steward's encodings: COG creation options applied to the generated 512-px DEFLATE series.
ENCODINGS = {
    "deflate512": None,  # as generated
    "deflate1024": {"compress": "DEFLATE", "predictor": 2, "level": 1, "blocksize": 1024},
    "jpeg1024": {"compress": "JPEG", "quality": 75, "blocksize": 1024},
}

_RSS_CODE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from temporal_median.base.grid import Window
from temporal_median.compute.tile import compute_tile
urls = json.loads(sys.argv[1]); window = Window(*json.loads(sys.argv[2]))
def hwm():
    # VmHWM: peak RSS of this program image. ru_maxrss can carry the parent's size over fork+exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
base = hwm()
t0 = time.perf_counter()
stats = compute_tile(urls, window, sys.argv[3])
seconds = time.perf_counter() - t0
print(json.dumps({{"baseline": base, "peak": hwm(), "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "seconds": seconds, "stats": stats.to_dict()}}))
"""


def ensure_series(scenes: int, width: int, height: int, seed: int = 1, data: Path = DATA):
    """The cached series of these dimensions (generated on first use)."""
    out = Path(data) / f"series_{scenes}x{width}x{height}_s{seed}"
    t0 = time.perf_counter()
    series = generate_series(str(out), scenes=scenes, width=width, height=height, seed=seed, ground_truth=False)
    took = time.perf_counter() - t0
    if took > 1:
        print(f"generated {scenes} scenes of {width} x {height} into {out} in {took:.1f} s")
    return series


def ensure_encoding(paths: list[str], encoding: str) -> list[str]:
    """``paths`` rewritten as COGs with ``ENCODINGS[encoding]`` beside their directory (once)."""
    import rasterio.shutil

    options = ENCODINGS[encoding]
    if options is None:
        return list(paths)
    source = Path(paths[0]).parent
    out = source.with_name(f"{source.name}_{encoding}")
    out.mkdir(exist_ok=True)
    targets = [str(out / Path(p).name) for p in paths]
    todo = [(p, t) for p, t in zip(paths, targets) if not os.path.exists(t)]

    def one(pair):
        src, dst = pair
        rasterio.shutil.copy(src, dst + ".tmp", driver="COG", overviews="NONE", **options)
        os.replace(dst + ".tmp", dst)

    if todo:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(one, todo))
        print(f"wrote {len(todo)} scenes as {encoding} into {out} in {time.perf_counter() - t0:.1f} s")
    return targets


def drop_page_cache_hint(paths):
    """Read every file once so both contenders start from a warm page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def plain_read(urls, window: Window, out: np.ndarray, threads: int) -> None:
    """The pure read: plain rasterio, one open + read per scene, ``threads`` at a time, into ``out``."""
    import rasterio

    rio_window = window.to_rasterio()

    def one(t: int) -> None:
        with rasterio.Env(), rasterio.open(urls[t]) as ds:
            ds.read(indexes=[1, 2, 3], window=rio_window, out=out[t])

    with gdal_env(), ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(urls))))


def peak_rss(urls, window: Window, dest: str) -> dict:
    """compute_tile once in a fresh interpreter: its VmHWM (whole process, imports included)."""
    code = _RSS_CODE.format(root=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(urls), json.dumps(window.as_list()), dest],
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=216)
    parser.add_argument("--size", type=int, default=1024, choices=(1024, 2048))
    parser.add_argument("--encodings", default="",
                        help=f"comma-separated, of {', '.join(ENCODINGS)}: the 2048 x 2048 series in these encodings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="reading threads (TM_READ_THREADS; default: one per core for local files)")
    parser.add_argument("--data", default=str(DATA), help="where series are generated and kept")
    args = parser.parse_args(argv)

    if args.encodings:
        encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
        unknown = set(encodings) - set(ENCODINGS)
        if unknown:
            parser.error(f"unknown encodings {sorted(unknown)}; known: {', '.join(ENCODINGS)}")
        base = ensure_series(args.scenes, 2048, 2048, data=Path(args.data)).paths
        series = {e: ensure_encoding(base, e) for e in encodings}
        window = Window(1024, 1024, 1024, 1024)
    else:
        paths = ensure_series(args.scenes, args.size, args.size, data=Path(args.data)).paths
        series = {"deflate512": paths}
        window = Window(0, 0, 1024, 1024) if args.size == 1024 else Window(512, 512, 1024, 1024)
    for urls in series.values():
        drop_page_cache_hint(urls)
    any_urls = next(iter(series.values()))
    threads = read_threads(any_urls, args.workers)
    print(f"{len(any_urls)} scenes, window {window.as_list()}, {threads} reading threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="bench_tile_") as tmp:
        dest = os.path.join(tmp, "tile.tif")
        # First, while this process is still small.
        rss = {name: peak_rss(urls, window, dest) for name, urls in series.items()}
        # Warm-up: numba kernels loaded/compiled, GDAL drivers registered, buffers touched.
        stack = np.ones((len(any_urls), 3, window.height, window.width), np.uint8)
        for urls in series.values():
            compute_tile(urls, window, dest, max_workers=args.workers)
            plain_read(urls, window, stack, threads)

        times: dict[tuple, list] = {}
        cpu: dict[tuple, list] = {}
        last = {}

        def timed(key, func):
            c0, t0 = cpu_seconds(), time.perf_counter()
            result = func()
            times.setdefault(key, []).append(time.perf_counter() - t0)
            cpu.setdefault(key, []).append(cpu_seconds() - c0)
            return result

        for _ in range(args.repeats):
            for name, urls in series.items():
                timed((name, "pure"), functools.partial(plain_read, urls, window, stack, threads))
                timed((name, "read_window"), functools.partial(read_window, urls, window, max_workers=args.workers, out=stack))
                last[name] = timed((name, "tile"), functools.partial(compute_tile, urls, window, dest, max_workers=args.workers))
        stack = None

    print(f"medians of {args.repeats} rounds (runs in brackets); load average after {os.getloadavg()[0]:.2f}. "
          "The ratio is the median of the rounds' own ratios (a round's runs are seconds apart, so they share the "
          "machine's load); CPU seconds (user + system, all threads) are less sensitive to other work on the machine")
    all_met = True
    for name in series:
        pure, ours, tile = (statistics.median(times[(name, k)]) for k in ("pure", "read_window", "tile"))
        ratio = statistics.median(t / p for t, p in zip(times[(name, "tile")], times[(name, "pure")]))
        cpu_pure, cpu_tile = (statistics.median(cpu[(name, k)]) for k in ("pure", "tile"))
        peak = rss[name]["peak"]
        all_met &= ratio <= RATIO_GOAL and peak <= RSS_GOAL
        runs = {k: ", ".join(f"{t:.2f}" for t in times[(name, k)]) for k in ("pure", "read_window", "tile")}
        stats = last[name]
        print(f"{name}:")
        print(f"  pure read (rasterio, {threads} threads, touched memory) : {pure:5.2f} s  [{runs['pure']}]")
        print(f"  read_window (the core's reader, same memory)      : {ours:5.2f} s  [{runs['read_window']}]")
        print(f"  compute_tile (read + median + write)              : {tile:5.2f} s  [{runs['tile']}]"
              f"  (last: waiting for reads {stats.seconds_read:.2f} s, median {stats.seconds_median:.2f} s, "
              f"write {stats.seconds_write:.2f} s, {stats.bytes_read / 1e6:.0f} MB of blocks)")
        print(f"  ratio compute_tile / pure read : {ratio:.2f}x  (goal <= {RATIO_GOAL}x: {met(ratio <= RATIO_GOAL)}); "
              f"/ read_window {tile / ours:.2f}x; CPU seconds {cpu_tile:.2f} / {cpu_pure:.2f} = {cpu_tile / cpu_pure:.2f}x")
        print(f"  peak RSS, fresh process        : {peak / 2**20:.0f} MiB VmHWM (after imports "
              f"{rss[name]['baseline'] / 2**20:.0f} MiB; goal <= {RSS_GOAL / 2**20:.0f} MiB: {met(peak <= RSS_GOAL)}); "
              f"that cold tile took {rss[name]['seconds']:.2f} s")
    print(f"all goals: {met(all_met)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
