"""Benchmark: our core vs xarray/rioxarray + dask (what a user would pick on one machine), same series.

On one local synthetic series (``temporal_median_cli.sample.generate_series``), per image size:

- ``xarray per-band``: every scene opened lazily with ``rioxarray.open_rasterio(chunks=...)``,
  concatenated over time, samples with any band 0 or 255 masked to NaN, median over time per band
  (NaN-skipping), floored, NaN -> 0, written with ``.rio.to_raster`` (dask threaded scheduler,
  all cores);
- ``ours per-band`` and ``ours luminance``: ``temporal_median.compute.tile.compute_tile`` for each
  window of the 1024 grid, one window after the other, each writing its tile COG.

Each runs in its own fresh subprocess, ``--repeat`` times interleaved (best time kept); peak memory is its ``resource.getrusage`` ``ru_maxrss``,
and "after imports" is the same figure taken before any work (interpreter + libraries). Linux
carries a parent's peak RSS into a child's ``ru_maxrss`` across fork + exec, so this parent stays
lean: generating the series and comparing results run in subprocesses too.
The per-band outputs of both are compared pixel for pixel (same definition, so they must agree).
Two image sizes show whether memory grows with the image (both made of full 1024 windows, so
the comparison is not skewed by smaller edge windows).

Usage: ``.venv/bin/python bench/bench_xarray.py [--sizes 2048,3072] [--scenes 32] [--data DIR]``
(``--data`` keeps and reuses the generated series; default: a temp dir removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

# This tree's core (children too: they run this file), not whichever one is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: Goal (issue 13): our per-band composite at least 10x faster than xarray + dask, at every size.
SPEEDUP_GOAL = 10.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_series(data_dir: str, size: int, scenes: int) -> dict:
    from temporal_median_cli.sample import generate_series

    started = time.perf_counter()
    series = generate_series(
        os.path.join(data_dir, f"series-{size}-{scenes}"), scenes=scenes, width=size, height=size, ground_truth=False
    )
    return {"paths": series.paths, "seconds": time.perf_counter() - started}


def _child_xarray(paths: list[str], out_dir: str, size: int, tile: int) -> dict:
    import threading

    import numpy as np
    import rioxarray
    import xarray as xr

    imported = _rss_mb()
    started = time.perf_counter()
    scenes = [rioxarray.open_rasterio(p, chunks={"band": -1, "y": tile, "x": tile}) for p in paths]
    stack = xr.concat(scenes, dim="time").chunk({"time": -1})
    invalid = ((stack == 0) | (stack == 255)).any("band")
    median = stack.where(~invalid).median("time", skipna=True)
    result = np.floor(median).fillna(0).astype("uint8").rio.write_nodata(0)
    result.rio.to_raster(
        os.path.join(out_dir, "median.tif"), tiled=True, compress="DEFLATE", lock=threading.Lock()
    )
    return {"seconds": time.perf_counter() - started, "rss_imports_mb": imported}


def _child_ours(method: str):
    def run(paths: list[str], out_dir: str, size: int, tile: int) -> dict:
        from temporal_median.base.grid import Grid
        from temporal_median.compute.tile import compute_tile

        imported = _rss_mb()
        started = time.perf_counter()
        first = None
        parts = {"read": 0.0, "median": 0.0, "write": 0.0}
        for tile_id, window in Grid(size, size, tile).windows():
            stats = compute_tile(paths, window, os.path.join(out_dir, f"{tile_id}.tif"), method=method)
            first = first or time.perf_counter() - started
            parts["read"] += stats.seconds_read
            parts["median"] += stats.seconds_median
            parts["write"] += stats.seconds_write
        return {
            "seconds": time.perf_counter() - started,
            "first_window_s": first,
            "rss_imports_mb": imported,
            "parts": parts,
        }

    return run


_CHILDREN = {
    "xarray per-band": _child_xarray,
    "ours per-band": _child_ours("per-band"),
    "ours luminance": _child_ours("luminance"),
}


def _run_child(kind: str, *args) -> dict:
    spec = json.dumps({"kind": kind, "args": args})
    proc = subprocess.run(
        [sys.executable, __file__, "--child"], input=spec, check=True, capture_output=True, text=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child_compare(xarray_dir: str, ours_dir: str, size: int, tile: int) -> dict:
    """Fraction of RGB values where the two per-band results differ (0.0 means identical)."""
    import numpy as np
    import rasterio

    from temporal_median.base.grid import Grid

    differing = total = 0
    with rasterio.open(os.path.join(xarray_dir, "median.tif")) as theirs:
        for tile_id, window in Grid(size, size, tile).windows():
            with rasterio.open(os.path.join(ours_dir, f"{tile_id}.tif")) as ours:
                mine = ours.read([1, 2, 3])
            other = theirs.read([1, 2, 3], window=window.to_rasterio())
            differing += int(np.count_nonzero(mine != other))
            total += mine.size
    return {"differ": differing / total}


def main(argv=None) -> None:
    if argv is None and sys.argv[1:] == ["--child"]:
        spec = json.loads(sys.stdin.read())
        helpers = {"series": _child_series, "compare": _child_compare}
        figures = {**_CHILDREN, **helpers}[spec["kind"]](*spec["args"])
        figures["rss_peak_mb"] = _rss_mb()
        print(json.dumps(figures))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,3072", help="image sizes (square), comma-separated")
    parser.add_argument("--scenes", type=int, default=32, help="dates in the series (default 32)")
    parser.add_argument("--tile", type=int, default=1024, help="grid window and dask chunk size")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each method, best time kept (default 2)")
    parser.add_argument("--data", help="keep the generated series here and reuse them")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    data_dir = args.data or tempfile.mkdtemp(prefix="bench-xarray-data-")
    work = tempfile.mkdtemp(prefix="bench-xarray-")
    rows = []
    try:
        for size in sizes:
            series = _run_child("series", data_dir, size, args.scenes)
            print(f"series {size} x {size}, {args.scenes} scenes ready in {series['seconds']:.1f} s", flush=True)
            outs = {kind: tempfile.mkdtemp(prefix=kind.replace(" ", "-") + "-", dir=work) for kind in _CHILDREN}
            best: dict[str, dict] = {}
            # Interleaved repeats, best time kept: the machine is shared, so one slow run says little.
            for _ in range(args.repeat):
                for kind in _CHILDREN:
                    fig = _run_child(kind, series["paths"], outs[kind], size, args.tile)
                    print(f"  {kind}: {fig['seconds']:.1f} s, {fig['rss_peak_mb']:.0f} MB", flush=True)
                    kept = best.setdefault(kind, fig)
                    if fig["seconds"] < kept["seconds"]:
                        best[kind] = {**fig, "rss_peak_mb": max(fig["rss_peak_mb"], kept["rss_peak_mb"])}
                    else:
                        kept["rss_peak_mb"] = max(fig["rss_peak_mb"], kept["rss_peak_mb"])
            rows.extend((size, kind, fig) for kind, fig in best.items())
            compared = _run_child("compare", outs["xarray per-band"], outs["ours per-band"], size, args.tile)
            rows.append((size, "differ", compared["differ"]))
            for out in outs.values():
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.data:
            shutil.rmtree(data_dir, ignore_errors=True)

    print(
        f"\n{args.scenes} scenes, windows/chunks of {args.tile}, {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.2f}); "
        f"best of {args.repeat} runs, highest peak memory"
    )
    print(
        f"{'size':>6} {'method':<17} {'seconds':>8} {'1st window s':>13} {'peak RSS MB':>12} {'after imports MB':>17}  seconds in (ours)"
    )
    by_size: dict[int, dict] = {}
    for size, kind, fig in rows:
        if kind == "differ":
            by_size.setdefault(size, {})["differ"] = fig
            continue
        by_size.setdefault(size, {})[kind] = fig
        first = f"{fig['first_window_s']:13.1f}" if "first_window_s" in fig else f"{'-':>13}"
        parts = ", ".join(f"{k} {v:.1f}" for k, v in fig["parts"].items()) if "parts" in fig else ""
        print(
            f"{size:>6} {kind:<17} {fig['seconds']:8.1f} {first} {fig['rss_peak_mb']:12.0f} "
            f"{fig['rss_imports_mb']:17.0f}  {parts}"
        )
    print()
    for size, figs in by_size.items():
        xr_s = figs["xarray per-band"]["seconds"]
        speedup = xr_s / figs["ours per-band"]["seconds"]
        print(
            f"{size:>6}: speed-up per-band x{speedup:.1f} (goal >= {SPEEDUP_GOAL:.0f}x: "
            f"{'met' if speedup >= SPEEDUP_GOAL else 'NOT met'}), "
            f"luminance x{xr_s / figs['ours luminance']['seconds']:.1f} (vs xarray per-band); "
            f"peak memory xarray {figs['xarray per-band']['rss_peak_mb']:.0f} MB, "
            f"ours {figs['ours per-band']['rss_peak_mb']:.0f} MB; "
            f"per-band results differ on {figs['differ']:.4%} of values"
        )
    if len(by_size) > 1:
        small, large = min(by_size), max(by_size)
        for kind in ("xarray per-band", "ours per-band"):
            a, b = by_size[small][kind]["rss_peak_mb"], by_size[large][kind]["rss_peak_mb"]
            print(
                f"memory growth {kind}: {a:.0f} MB at {small}^2 -> {b:.0f} MB at {large}^2 "
                f"(image x{(large / small) ** 2:.1f}, memory x{b / a:.2f})"
            )


if __name__ == "__main__":
    main()
