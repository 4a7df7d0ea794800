"""Median kernels vs the course's naive numba median and a numpy.ma median, side by side in one run."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import config as numba_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
# This tree's core, not whichever one the environment has installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_baseline import course_median  # noqa: E402

from temporal_median.compute.median import luminance_median, per_band_median  # noqa: E402

#: Goals, as ratios measured in this run.
LUMINANCE_GOAL = 30.0  # course baseline / luminance
PER_BAND_GOAL = 100.0  # numpy.ma / per-band
#: numpy.ma needs about this many bytes per stack byte (measured: ~9.5 GB for a 680 MB stack).
MA_BYTES_PER_SAMPLE = 15

_COLD_CODE = """
import sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import numpy as np
from temporal_median.compute import median
median.use_kernels({backend!r})
t1 = time.perf_counter()
median.{func}(np.ones((2, 3, 4, 4), np.uint8))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def synthetic_stack(n_samples: int, size: int, seed: int = 0) -> np.ndarray:
    """A year-like stack: smooth ground with seasonal drift and noise, cloud blobs (255), swath edges (0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size, 1)
    ground = (
        90
        + 35 * np.sin(yy * 17 + 1.3 * np.cos(xx * 5))
        + 25 * np.cos(xx * 23 + yy * 3)
        + 15 * np.sin((xx + yy) * 61)
    )
    band_offset = np.array([0, 8, -6], np.float32)[:, None, None]
    stack = np.empty((n_samples, 3, size, size), np.uint8)
    coarse = max(2, size // 128)
    for t in range(n_samples):
        season = 20 * np.sin(2 * np.pi * t / max(n_samples, 1))
        noise = rng.normal(0, 6, size=(3, size, size)).astype(np.float32)
        scene = np.clip(ground[None] + band_offset + season + noise, 1, 254)
        stack[t] = scene.astype(np.uint8)
        # Clouds: a smooth random field thresholded so about 30% of the pixels of a scene are cloudy on average.
        field = rng.random((coarse, coarse), dtype=np.float32)
        field = np.kron(field, np.ones((-(-size // coarse),) * 2, np.float32))[:size, :size]
        cover = rng.beta(0.6, 1.2)
        stack[t][:, field < cover * 0.9] = 255
        # Swath edge: a quarter of the scenes miss a diagonal slice of the window.
        if rng.random() < 0.25:
            cut = rng.uniform(0.2, 1.6) * size
            stack[t][:, (yy + xx) * size < cut] = 0
    return stack


def timed(func, repeat: int) -> tuple[float, float, object]:
    """(min, median) wall seconds over ``repeat`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times)), result


def cold_compile(func: str, backend: str = "jit") -> tuple[float, float, float]:
    """(import, first call, first call of the next process) seconds of ``func`` in fresh processes
    sharing a new, empty numba cache, with ``backend`` kernels ("jit": numba compiles, then loads
    from its cache; "aot": the ahead-of-time library, nothing to compile)."""
    root = str(Path(__file__).resolve().parent.parent)
    code = _COLD_CODE.format(func=func, root=root, backend=backend)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.split()
        compiled = float(out[1])
        # Same process start again: the cache is now filled, as on a warm container image.
        out2 = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), compiled, float(out2[1])


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def ma_per_band(stack: np.ndarray) -> np.ndarray:
    """Per-band median with numpy.ma over axis 0, nodata 0, as a straightforward numpy user would."""
    invalid = ((stack == 0) | (stack == 255)).any(axis=1, keepdims=True)
    masked = np.ma.masked_array(stack, mask=np.broadcast_to(invalid, stack.shape))
    med = np.ma.median(masked, axis=0)
    return np.floor(med.filled(0)).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--t", type=int, default=216, help="samples per pixel (scenes)")
    parser.add_argument("--size", type=int, default=1024, help="window side in pixels")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per kernel (min and median shown)")
    parser.add_argument("--skip-ma", action="store_true", help="skip the (slow, ~10 GB) numpy.ma median")
    parser.add_argument("--ma-rows", type=int, default=0, help="rows for numpy.ma (0: all if memory allows)")
    parser.add_argument("--skip-cold", action="store_true", help="skip the fresh-process compile timings")
    args = parser.parse_args(argv)

    pixels = args.size * args.size
    print(f"cores: {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), numba threads: {numba_config.NUMBA_NUM_THREADS}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine is shared; compare ratios, not seconds)")
    t0 = time.perf_counter()
    stack = synthetic_stack(args.t, args.size)
    # Scene by scene: a whole-stack boolean temporary would dwarf the kernels in the peak RSS below.
    invalid = np.mean([((scene == 0) | (scene == 255)).any(axis=0).mean() for scene in stack])
    print(
        f"stack: ({args.t}, 3, {args.size}, {args.size}) uint8, {stack.nbytes / 1e6:.0f} MB, "
        f"{invalid:.0%} invalid samples, built in {time.perf_counter() - t0:.1f} s"
    )

    # Warm-up: compile (or load from the cache) outside the timings.
    warm = {}
    for name, func in (("luminance", luminance_median), ("per-band", per_band_median)):
        t0 = time.perf_counter()
        func(stack[:, :, :1, :8].copy())
        warm[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    course_median(stack[:, :, :1, :8].copy())
    warm["course"] = time.perf_counter() - t0

    lum_min, lum_med, lum = timed(lambda: luminance_median(stack), args.repeat)
    pb_min, pb_med, pb = timed(lambda: per_band_median(stack), args.repeat)
    from temporal_median.compute import median as median_module

    jit_rows = []
    if median_module.kernel_backend() == "aot":
        # The same kernels compiled by numba for this very CPU, side by side.
        median_module.use_kernels("jit")
        luminance_median(stack[:, :, :1, :8].copy()), per_band_median(stack[:, :, :1, :8].copy())
        jit_rows = [("luminance (numba JIT, this CPU)", *timed(lambda: luminance_median(stack), args.repeat)[:2]),
                    ("per-band (numba JIT, this CPU)", *timed(lambda: per_band_median(stack), args.repeat)[:2])]
        median_module.use_kernels("auto")
    base_min, _, base = timed(lambda: course_median(stack), 1)
    rss_before_ma = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    same = np.array_equal(base[0], lum.rgb) and np.array_equal(base[1], lum.count)

    print()
    print(f"{'per window of ' + str(args.size) + ' x ' + str(args.size):32s} {'min s':>8s} {'median s':>9s}")
    print(f"{'luminance (this kernel)':32s} {lum_min:8.3f} {lum_med:9.3f}")
    print(f"{'per-band (this kernel)':32s} {pb_min:8.3f} {pb_med:9.3f}")
    for label, best, med in jit_rows:
        print(f"{label:32s} {best:8.3f} {med:9.3f}")
    print(f"{'course naive numba (1 run)':32s} {base_min:8.3f}")
    print(f"luminance agrees with the course median: {'yes' if same else 'NO'}")
    print(f"peak RSS so far (stack + outputs + baseline): {rss_before_ma / 2**20:.0f} MiB")

    ratio_lum = base_min / lum_min
    print()
    print(
        f"baseline / luminance: {ratio_lum:.1f}x (goal >= {LUMINANCE_GOAL:.0f}x: {'yes' if ratio_lum >= LUMINANCE_GOAL else 'no'})"
    )

    if not args.skip_ma:
        rows = args.ma_rows or args.size
        need = MA_BYTES_PER_SAMPLE * args.t * 3 * rows * args.size
        if not args.ma_rows and need > 0.8 * mem_available():
            rows = max(1, int(args.size * 0.8 * mem_available() / need))
        sub = stack[:, :, :rows]
        t0 = time.perf_counter()
        ma = ma_per_band(sub)
        ma_s = (time.perf_counter() - t0) * args.size / rows
        ma_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        scaled = f" (ran on {rows} of {args.size} rows, scaled per pixel)" if rows < args.size else ""
        print(f"numpy.ma per-band: {ma_s:.1f} s per window{scaled}; peak RSS {ma_rss / 2**30:.1f} GiB")
        print(f"per-band agrees with numpy.ma: {'yes' if np.array_equal(ma, pb.rgb[:, :rows]) else 'NO'}")
        ratio_pb = ma_s / pb_min
        print(
            f"numpy.ma / per-band: {ratio_pb:.0f}x (goal >= {PER_BAND_GOAL:.0f}x: {'yes' if ratio_pb >= PER_BAND_GOAL else 'no'})"
        )
    print(f"per pixel: luminance {lum_min / pixels * 1e9:.0f} ns, per-band {pb_min / pixels * 1e9:.0f} ns")

    print()
    print("compile (first call in this process; cache may be warm): " + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items()))
    from temporal_median.compute import median as median_module

    print(f"kernels timed above: {median_module.kernel_backend()} (aot: the ahead-of-time library; jit: numba)")
    if not args.skip_cold:
        for func in ("luminance_median", "per_band_median"):
            imp, compiled, cached = cold_compile(func, "jit")
            print(
                f"fresh process, JIT, empty numba cache: {func}: import {imp:.2f} s, compile {compiled:.2f} s; "
                f"next process (cache filled): {cached:.2f} s"
            )
            if median_module.kernel_backend() == "aot":
                imp, first, _ = cold_compile(func, "aot")
                print(f"fresh process, ahead-of-time library: {func}: import {imp:.2f} s, first call {first:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
