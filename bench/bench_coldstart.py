"""Cold start of a worker: fresh Python process to first tile written, vs the second tile (warm).

Run: .venv/bin/python bench/bench_coldstart.py [--scenes 216] [--size 1024] [--repeats 2]

Each run is a fresh interpreter that writes two identical tiles of the cached series (the same
one bench_tile.py uses, in bench/data/). "Cold" is measured from just before the process is
spawned to the first tile on disk: interpreter start, imports, numba compilation or cache load,
GDAL set-up and the tile itself. "Warm" is the second tile in the same process. Two cases:
a fresh, empty NUMBA_CACHE_DIR (worst case: the kernels are compiled) and a warm numba cache
(what a deployed function sees when its cache directory was filled at build time).
The page cache is warmed first so that the disk does not favour either case.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tile import ROOT, drop_page_cache_hint, ensure_series  # noqa: E402

from temporal_median.grid import Window  # noqa: E402

GOAL_SECONDS = 3.0

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from temporal_median.grid import Window
from temporal_median.tiles import compute_tile
urls = json.loads(sys.argv[1]); window = Window(*json.loads(sys.argv[2]))
compute_tile(urls, window, sys.argv[3])
first_done = time.time()
t0 = time.perf_counter()
compute_tile(urls, window, sys.argv[3])
print(json.dumps({{"first_done": first_done, "warm": time.perf_counter() - t0}}))
"""


def run_once(urls, window: Window, dest: str, numba_cache: str) -> tuple[float, float]:
    """(cold seconds, warm seconds) of one fresh process."""
    env = dict(os.environ, NUMBA_CACHE_DIR=numba_cache)
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT)), json.dumps(urls), json.dumps(window.as_list()), dest],
        check=True, capture_output=True, text=True, env=env,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["first_done"] - start, result["warm"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=216)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    series = ensure_series(args.scenes, args.size, args.size)
    urls = series.paths
    window = Window(0, 0, min(1024, args.size), min(1024, args.size))
    drop_page_cache_hint(urls)
    print(f"{len(urls)} scenes, window {window.as_list()}, {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="bench_cold_") as tmp:
        dest = os.path.join(tmp, "tile.tif")
        warm_cache = os.path.join(tmp, "numba-warm")
        run_once(urls, window, dest, warm_cache)  # fills the warm cache
        results = {"fresh numba cache": [], "warm numba cache": []}
        for i in range(args.repeats):
            # Alternate the two cases so machine noise hits both alike.
            results["fresh numba cache"].append(run_once(urls, window, dest, os.path.join(tmp, f"numba-fresh-{i}")))
            results["warm numba cache"].append(run_once(urls, window, dest, warm_cache))

    worst = 0.0
    for case, runs in results.items():
        cold = statistics.median(r[0] for r in runs)
        warm = statistics.median(r[1] for r in runs)
        worst = max(worst, cold - warm)
        print(f"{case:18s}: first tile {cold:6.2f} s (process start -> tile written), second tile {warm:5.2f} s, "
              f"cold-start overhead {cold - warm:5.2f} s   runs {', '.join(f'{c:.2f}/{w:.2f}' for c, w in runs)}")
    print(f"worst cold-start overhead: {worst:.2f} s (goal <= {GOAL_SECONDS:.0f} s: "
          f"{'met' if worst <= GOAL_SECONDS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
