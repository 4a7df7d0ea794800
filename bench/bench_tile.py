"""One tile of 216 scenes: pure windowed read vs compute_tile (read + median + write), and its peak RSS.

Run: .venv/bin/python bench/bench_tile.py [--scenes 216] [--size 1024|2048] [--repeats 3]

The series is generated once into bench/data/ (ignored by git) and reused. With --size 2048 the
window is an interior one, (512, 512, 1024, 1024); with 1024 it is the whole scene. Both runs are
interleaved (read, tile, read, tile...) so that machine noise hits both alike; medians printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporal_median.grid import Window  # noqa: E402
from temporal_median.gdal import read_threads  # noqa: E402
from temporal_median.tiles import compute_tile, read_window  # noqa: E402
from temporal_median_cli.sample import generate_series  # noqa: E402

DATA = ROOT / "bench" / "data"
RATIO_GOAL = 1.25
RSS_GOAL = 1 << 30

_RSS_CODE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from temporal_median.grid import Window
from temporal_median.tiles import compute_tile
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


def ensure_series(scenes: int, width: int, height: int, seed: int = 1):
    """The cached series of these dimensions (generated on first use)."""
    out = DATA / f"series_{scenes}x{width}x{height}_s{seed}"
    t0 = time.perf_counter()
    series = generate_series(str(out), scenes=scenes, width=width, height=height, seed=seed, ground_truth=False)
    took = time.perf_counter() - t0
    if took > 1:
        print(f"generated {scenes} scenes of {width} x {height} into {out} in {took:.1f} s")
    return series


def drop_page_cache_hint(paths):
    """Read every file once so both contenders start from a warm page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def peak_rss(urls, window: Window, dest: str) -> dict:
    """compute_tile once in a fresh interpreter; its ru_maxrss (whole process, imports included)."""
    code = _RSS_CODE.format(root=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(urls), json.dumps(window.as_list()), dest],
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=216)
    parser.add_argument("--size", type=int, default=1024, choices=(1024, 2048))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="reading threads (TM_READ_THREADS; default: one per core for local files)")
    args = parser.parse_args(argv)

    series = ensure_series(args.scenes, args.size, args.size)
    urls = series.paths
    window = Window(0, 0, 1024, 1024) if args.size == 1024 else Window(512, 512, 1024, 1024)
    drop_page_cache_hint(urls)
    print(f"{len(urls)} scenes, window {window.as_list()}, {read_threads(urls, args.workers)} reading threads, {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="bench_tile_") as tmp:
        dest = os.path.join(tmp, "tile.tif")
        # First, while this process is still small: a child's ru_maxrss starts from its parent's.
        rss = peak_rss(urls, window, dest)
        # Warm-up: numba kernels loaded/compiled, GDAL drivers registered.
        compute_tile(urls, Window(0, 0, 64, 64), dest, max_workers=args.workers)

        # Two pure reads: into fresh memory, as any reader of a new window pays it (compute_tile
        # too allocates its buffers per call), and into one preallocated, already-touched stack,
        # which pays no page faults for 680 MB: the cost of decoding alone, the strictest baseline.
        stack = np.ones((len(urls), 3, window.height, window.width), np.uint8)
        reads, fresh_reads, tiles, parts = [], [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            read_window(urls, window, max_workers=args.workers)
            fresh_reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            read_window(urls, window, max_workers=args.workers, out=stack)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stats = compute_tile(urls, window, dest, max_workers=args.workers)
            tiles.append(time.perf_counter() - t0)
            parts.append(stats)

        read_s, tile_s = statistics.median(reads), statistics.median(tiles)
        fresh_s = statistics.median(fresh_reads)
        ratio = tile_s / fresh_s
        print(f"read_window, fresh memory           : median {fresh_s:6.2f} s   runs {', '.join(f'{t:.2f}' for t in fresh_reads)}")
        print(f"read_window, pre-touched memory     : median {read_s:6.2f} s   runs {', '.join(f'{t:.2f}' for t in reads)}")
        print(f"compute_tile (read + median + write) : median {tile_s:6.2f} s   runs {', '.join(f'{t:.2f}' for t in tiles)}")
        last = parts[-1]
        print(f"  last tile: waiting for reads {last.seconds_read:.2f} s, median {last.seconds_median:.2f} s, "
              f"write {last.seconds_write:.2f} s, {last.bytes_read / 1e6:.0f} MB of blocks, "
              f"valid {last.valid_fraction:.1%}")
        print(f"ratio compute_tile / read_window    : {ratio:.2f}x   (goal <= {RATIO_GOAL}x: "
              f"{'met' if ratio <= RATIO_GOAL else 'NOT met'}); against the pre-touched read: {tile_s / read_s:.2f}x")

        del stack
        print(f"compute_tile peak RSS, fresh process : {rss['peak'] / 2**20:6.0f} MiB VmHWM, ru_maxrss "
              f"{rss['maxrss'] / 2**20:.0f} MiB   (after importing the tile module {rss['baseline'] / 2**20:.0f} MiB; "
              f"goal <= {RSS_GOAL / 2**20:.0f} MiB: {'met' if max(rss['peak'], rss['maxrss']) <= RSS_GOAL else 'NOT met'}; "
              f"that cold tile took {rss['seconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
