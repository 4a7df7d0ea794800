"""Cold start of a worker: fresh Python process to first tile written, vs the second tile (warm).

Run: .venv/bin/python bench/bench_coldstart.py [--scenes 216] [--size 1024] [--repeats 3]

Each run is a fresh interpreter that writes two identical tiles of the cached series (the same
one bench_tile.py uses, in bench/.data/). "Cold" is measured from just before the process is
spawned to the first tile on disk: interpreter start, imports, kernel loading (or numba
compilation), GDAL set-up, fresh read buffers and the tile itself. "Warm" is the second tile in
the same process. Cases, interleaved round by round:

* "ahead-of-time kernels": the kernels library shipped beside kernels.py
  (``make kernels``), with an empty NUMBA_CACHE_DIR: what a fresh
  instance has when the library is deployed with the code (its /tmp, where NUMBA_CACHE_DIR
  points, is empty; the source directory may be read-only);
* "JIT, empty numba cache": numba compiles the kernels (a fresh instance without the library);
* "JIT, numba cache filled": numba loads them from its cache (an instance's second process).

The page cache is warmed first so that the disk does not favour any case.
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

from temporal_median.base.grid import Window  # noqa: E402

#: Goal (issue 13): a fresh instance's first tile at most 1 s slower than a warm one.
GOAL_SECONDS = 1.0

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from temporal_median.base.grid import Window
from temporal_median.compute.tile import compute_tile
from temporal_median.compute import median
backend = median.use_kernels(sys.argv[4])
urls = json.loads(sys.argv[1]); window = Window(*json.loads(sys.argv[2]))
compute_tile(urls, window, sys.argv[3])
first_done = time.time()
t0 = time.perf_counter()
compute_tile(urls, window, sys.argv[3])
print(json.dumps({{"first_done": first_done, "warm": time.perf_counter() - t0, "backend": backend}}))
"""


def run_once(urls, window: Window, dest: str, numba_cache: str, backend: str) -> tuple[float, float]:
    """(cold seconds, warm seconds) of one fresh process."""
    env = dict(os.environ, NUMBA_CACHE_DIR=numba_cache)
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT)), json.dumps(urls), json.dumps(window.as_list()), dest,
         backend],
        check=True, capture_output=True, text=True, env=env,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["backend"] != backend:
        raise RuntimeError(f"asked for {backend} kernels, the child used {result['backend']}")
    return result["first_done"] - start, result["warm"]


def library_available() -> bool:
    """Whether the ahead-of-time kernels load here (built, current, this CPU)."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from temporal_median import median; print(median.kernel_backend())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() == "aot"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=216)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    series = ensure_series(args.scenes, args.size, args.size)
    urls = series.paths
    window = Window(0, 0, min(1024, args.size), min(1024, args.size))
    drop_page_cache_hint(urls)
    print(f"{len(urls)} scenes, window {window.as_list()}, {os.cpu_count()} CPUs")

    aot = library_available()
    if not aot:
        print("the ahead-of-time kernels library is missing, stale or unsupported here: "
              "make kernels (its case is skipped)")
    with tempfile.TemporaryDirectory(prefix="bench_cold_") as tmp:
        dest = os.path.join(tmp, "tile.tif")
        warm_cache = os.path.join(tmp, "numba-warm")
        run_once(urls, window, dest, warm_cache, "jit")  # fills the warm cache
        cases = {"ahead-of-time kernels": "aot"} if aot else {}
        cases.update({"JIT, empty numba cache": "jit", "JIT, numba cache filled": "jit"})
        results = {case: [] for case in cases}
        for i in range(args.repeats):
            # Interleave the cases so machine noise hits them alike.
            for case, backend in cases.items():
                cache = warm_cache if "filled" in case else os.path.join(tmp, f"numba-empty-{case[:3]}-{i}")
                results[case].append(run_once(urls, window, dest, cache, backend))

    print(f"medians of {args.repeats} runs per case (cold/warm runs in brackets); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    for case, runs in results.items():
        cold = statistics.median(r[0] for r in runs)
        warm = statistics.median(r[1] for r in runs)
        overhead = statistics.median(r[0] - r[1] for r in runs)
        print(f"{case:24s}: first tile {cold:6.2f} s (process start -> tile written), second tile {warm:5.2f} s, "
              f"cold-start overhead {overhead:5.2f} s   [{', '.join(f'{c:.2f}/{w:.2f}' for c, w in runs)}]")
    headline = "ahead-of-time kernels" if aot else "JIT, empty numba cache"
    overhead = statistics.median(r[0] - r[1] for r in results[headline])
    print(f"cold-start overhead of a fresh instance ({headline}): {overhead:.2f} s (goal <= {GOAL_SECONDS:.0f} s: "
          f"{'met' if overhead <= GOAL_SECONDS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
