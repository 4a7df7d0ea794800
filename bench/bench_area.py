"""Benchmark: an area of several tiles and UTM zones, ours vs odc-stac + dask (the peer a user would pick).

On one local multi-tile sample (``temporal_median_cli.sample.generate_area``: 3 tiles of
1000 x 1000 px at 10 m, 24 dates, UTM zones 30 and 31; ``OUT/items.json`` holds every item),
composited onto one output grid, the same grid for all:

- ``ours per-band``: the items read (``StacInput``), ``plan_layout`` (no area by default: the
  union of the scenes' footprints on the UTM zone of its centre; ``--bbox`` gives one), then
  ``compute_area_tile`` for every window of ``--tile-size``, one after the other (threads:
  the core's default), each writing its tile COG (RGB + count). Scenes on the output grid's
  pixel grid are plain windowed reads, the others go through the warper's pixel map of their
  tile (``raster/warp.py``); the layout line counts each kind.
- ``odc-stac``: ``odc.stac.load`` of the ``visual`` asset's three bands (``visual.1..3``) on a
  GeoBox built from our grid's affine, shape and CRS, ``groupby="solar_day"`` (its default fuser:
  per band, the first sample that is not nodata 0), ``chunks`` of ``--chunk``,
  ``resampling="nearest"``; then samples with any band 0 or 255 masked to NaN, median over time
  per band (NaN-skipping), floored, NaN -> 0, plus the count of valid samples, written as one
  GeoTIFF with rioxarray (dask threaded scheduler, all cores).
- ``odc-stac fuse 0/255``: the same with ``fuse_func`` set to a fuser that also replaces 255,
  as close as odc-stac gets to our fusion (ours takes, per pixel, the first sample of an
  acquisition whose three bands are all neither 0 nor 255; odc-stac fuses each band on its
  own, so it cannot test the other bands).

The sample's ``visual`` items carry no ``raster:bands``; odc-stac then sees one band, so the
odc children add three ``{"data_type": "uint8", "nodata": 0}`` entries to the in-memory items
before loading (printed), and ask for ``visual.1..3`` by name (``bands=["visual"]`` loads the
first band only). Both sides are timed from reading items.json to every output written.

Each contender runs in its own fresh subprocess, ``--repeat`` times interleaved (best time
kept, highest peak memory kept); peak memory is its ``resource.getrusage`` ``ru_maxrss`` and
"after imports" the same figure before any work; "CPU s" is the best run's process's user +
system time, imports included (less sensitive than seconds to other work on the machine). As
in ``bench_xarray.py``, the parent stays lean (Linux carries a parent's peak RSS into a child's
``ru_maxrss``): generating the area, planning the grid and comparing the results run in
subprocesses too.

Agreement: per pixel, whether our RGB equals odc's (all three bands) and whether the counts
are equal, over the whole grid, where both have at least one valid sample, and split by how
many tiles cover the pixel (fusion only matters where tiles overlap).

Usage: ``.venv/bin/python bench/bench_area.py [--data DIR] [--repeat 2] [--tiles 3]
[--tile-size 1024] [--chunk 1024] [--bbox W,S,E,N]`` (``--data`` keeps and reuses the
generated area, or takes any area ``temporal-median sample DIR --tiles N`` wrote; default: a
temp dir removed at the end).
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

# This tree's core (children too: they run this file), not whichever one is installed; and
# bench/ itself, for bench_xarray's helpers whichever way this file is run.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

from bench_xarray import _rss_mb  # the same peak-RSS figure as the xarray benchmark

#: Goal: ours at least this many times faster than odc-stac + dask ...
SPEEDUP_GOAL = 5.0
#: ... at no more than this share of its peak memory.
MEMORY_GOAL = 1 / 5
#: The default odc-stac configuration, the one the goal is measured against.
ODC = "odc-stac"
BANDS = ["visual.1", "visual.2", "visual.3"]


def _odc_fuse_valid(dst, src) -> None:
    """odc-stac fuser: fill where the band so far is 0 (nodata) or 255 (saturated), as our fusion does per sample."""
    import numpy as np

    # x - 1 wraps 0 to 255: one comparison finds both 0 and 255.
    np.copyto(dst, src, where=(dst - np.uint8(1)) >= 254)


def _grid_area(bbox):
    from temporal_median.job.area import Area

    return Area(bbox=tuple(bbox)) if bbox else None


# Children: each returns a JSON-able dict; the dispatcher adds rss_peak_mb.


def _child_area(data_dir: str, tiles: int) -> dict:
    from temporal_median_cli.sample import AreaInfo, generate_area

    started = time.perf_counter()
    area = AreaInfo.load(data_dir)
    reused = area is not None
    if area is None:
        area = generate_area(data_dir, tiles=tiles, ground_truth=False)
    return {
        "items": area.items_path,
        "reused": reused,
        "parameters": area.parameters,
        "granules": [t.granule for t in area.tiles],
        "seconds": time.perf_counter() - started,
    }


def _child_layout(items: str, tile_size: int, bbox) -> dict:
    """The output grid and windows plan_layout gives (what odc-stac is asked to load onto), and how
    many window-scene reads are plain windowed reads (scenes on the output grid's pixel grid)."""
    import rasterio
    from rasterio.crs import CRS

    from temporal_median.job.layout import plan_layout
    from temporal_median.raster.warp import aligned_offset
    from temporal_median.scenes.stac import StacInput

    scenes = StacInput.from_request({"inputs": items}, allow_local=True).scenes()
    layout = plan_layout(scenes, _grid_area(bbox), tile_size, max_windows=10_000)
    r = layout.raster
    aligned = []
    for scene in layout.scenes:
        with rasterio.open(scene.url) as ds:
            aligned.append(ds.crs == CRS.from_user_input(r.crs) and aligned_offset(ds.transform.to_gdal(), r) is not None)
    return {
        "crs": r.crs,
        "transform": list(r.transform),
        "width": r.width,
        "height": r.height,
        "windows": len(layout.grid),
        "scenes": len(layout.scenes),
        "observations": len(layout.observations),
        "pairs": sum(len(v) for v in layout.windows.values()),
        "aligned_pairs": sum(aligned[i] for v in layout.windows.values() for i in v),
    }


def _child_ours(items: str, out_dir: str, tile_size: int, bbox, grid: dict) -> dict:
    from temporal_median.compute.area import compute_area_tile
    from temporal_median.job.layout import plan_layout
    from temporal_median.scenes.stac import StacInput

    imported = _rss_mb()
    started = time.perf_counter()
    scenes = StacInput.from_request({"inputs": items}, allow_local=True).scenes()
    layout = plan_layout(scenes, _grid_area(bbox), tile_size, max_windows=10_000)
    parts = {"plan": time.perf_counter() - started, "read+warp+fuse": 0.0, "median": 0.0, "write": 0.0}
    raster = layout.raster
    if (raster.crs, list(raster.transform), raster.width, raster.height) != (
        grid["crs"], grid["transform"], grid["width"], grid["height"]
    ):
        raise AssertionError(f"plan_layout gave another grid than the layout child: {raster}")
    first = None
    for tile, window in layout.grid.windows():
        # As tests/test_area.py's compose(): the window's scenes, observations re-indexed to them.
        chosen = layout.windows[tile]
        position = {index: i for i, index in enumerate(chosen)}
        groups = [tuple(position[i] for i in g if i in position) for g in layout.observations]
        stats = compute_area_tile(
            [layout.scenes[i].url for i in chosen],
            [g for g in groups if g],
            raster,
            window,
            os.path.join(out_dir, f"{tile}.tif"),
            method="per-band",
        )
        first = first or time.perf_counter() - started
        parts["read+warp+fuse"] += stats.seconds_read
        parts["median"] += stats.seconds_median
        parts["write"] += stats.seconds_write
    return {
        "seconds": time.perf_counter() - started,
        "first_window_s": first,
        "rss_imports_mb": imported,
        "parts": parts,
    }


def _child_odc(fuse: bool):
    def run(items: str, out_dir: str, tile_size: int, bbox, grid: dict, chunk: int) -> dict:
        import threading

        import dask
        import numpy as np
        import odc.stac
        import pystac
        import rioxarray  # noqa: F401  (the .rio accessor)
        import xarray as xr
        from affine import Affine
        from odc.geo.geobox import GeoBox

        imported = _rss_mb()
        started = time.perf_counter()
        with open(items, encoding="utf-8") as f:
            features = json.load(f)["features"]
        patched = 0
        for feature in features:
            visual = feature["assets"]["visual"]
            if len(visual.get("raster:bands", ())) != 3:
                visual["raster:bands"] = [{"data_type": "uint8", "nodata": 0} for _ in range(3)]
                patched += 1
        stac_items = [pystac.Item.from_dict(feature) for feature in features]
        geobox = GeoBox((grid["height"], grid["width"]), Affine(*grid["transform"][:6]), grid["crs"])
        ds = odc.stac.load(
            stac_items,
            bands=BANDS,
            geobox=geobox,
            groupby="solar_day",
            chunks={"x": chunk, "y": chunk},
            resampling="nearest",
            # resolve_fuser imports the module by name: this file runs as __main__ in the child.
            fuse_func=f"{__name__}.{_odc_fuse_valid.__name__}" if fuse else None,
        )
        loaded = time.perf_counter() - started
        stack = ds[BANDS].to_dataarray("band")
        invalid = ((stack == 0) | (stack == 255)).any("band")
        median = stack.where(~invalid).median("time", skipna=True)
        rgb = np.floor(median).fillna(0).astype("uint8")
        count = (~invalid).sum("time").clip(max=255).astype("uint8").expand_dims(band=["count"])
        result = xr.concat([rgb, count], dim="band").transpose("band", "y", "x").rio.write_nodata(0)
        with dask.config.set(scheduler="threads", num_workers=os.cpu_count()):
            result.rio.to_raster(
                os.path.join(out_dir, "median.tif"), tiled=True, compress="DEFLATE", lock=threading.Lock()
            )
        return {
            "seconds": time.perf_counter() - started,
            "rss_imports_mb": imported,
            "parts": {"load (graph)": loaded, "compute+write": time.perf_counter() - started - loaded},
            "patched": patched,
            "times": int(ds.sizes["time"]),
        }

    return run


_CHILDREN = {
    "ours per-band": _child_ours,
    ODC: _child_odc(False),
    "odc-stac fuse 0/255": _child_odc(True),
}


def _child_compare(items: str, ours_dir: str, odc_paths: dict, grid: dict, tile_size: int) -> dict:
    """Pixel-for-pixel agreement of our tiles with each odc-stac GeoTIFF, overall and by tile coverage."""
    import numpy as np
    import rasterio
    from pyproj import Transformer

    from temporal_median.base.grid import Grid

    width, height = grid["width"], grid["height"]
    ours = np.zeros((4, height, width), np.uint8)
    layout_grid = Grid(width, height, tile_size)
    for tile, window in layout_grid.windows():
        with rasterio.open(os.path.join(ours_dir, f"{tile}.tif")) as ds:
            ours[:, window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width] = ds.read()

    # How many tiles cover each output pixel's centre (from the items' grids: one per tile).
    with open(items, encoding="utf-8") as f:
        features = json.load(f)["features"]
    tiles = {}
    for feature in features:
        visual = feature["assets"]["visual"]
        code = feature["properties"].get("proj:code") or f"EPSG:{feature['properties']['proj:epsg']}"
        tiles.setdefault(feature["properties"]["grid:code"], (code, visual["proj:transform"], visual["proj:shape"]))
    a, _, c, _, e, f0 = grid["transform"][:6]
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    xs, ys = (c + (cols + 0.5) * a).ravel(), (f0 + (rows + 0.5) * e).ravel()
    covers = []
    for crs, (ta, _, tc, _, te, tf), (th, tw) in tiles.values():
        tx, ty = (xs, ys) if crs == grid["crs"] else Transformer.from_crs(grid["crs"], crs, always_xy=True).transform(xs, ys)
        col, row = (tx - tc) / ta, (ty - tf) / te
        covers.append(((col >= 0) & (col < tw) & (row >= 0) & (row < th)).reshape(height, width))
    coverage = np.sum(covers, axis=0)
    # Window-scene pairs whose scene has pixels in the window (plan_layout decides on footprint boxes).
    dates = len(features) // len(tiles)
    useful = sum(
        dates * sum(bool(cov[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width].any()) for cov in covers)
        for _, w in layout_grid.windows()
    )

    figures = {
        "pixels": width * height,
        "tiles": len(tiles),
        "single": int(np.count_nonzero(coverage == 1)),
        "overlap": int(np.count_nonzero(coverage >= 2)),
        "uncovered": int(np.count_nonzero(coverage == 0)),
        "useful_pairs": useful,
        "ours_valid": int(np.count_nonzero(ours[3])),
        "vs": {},
    }
    for name, path in odc_paths.items():
        with rasterio.open(path) as ds:
            theirs = ds.read()
        rgb_same = np.all(ours[:3] == theirs[:3], axis=0)
        count_same = ours[3] == theirs[3]
        both = (ours[3] > 0) & (theirs[3] > 0)
        diff = ours[3].astype(np.int16) - theirs[3].astype(np.int16)

        def share(mask, where=None):
            where = np.ones_like(mask) if where is None else where
            n = int(np.count_nonzero(where))
            return float(np.count_nonzero(mask & where)) / n if n else float("nan")

        figures["vs"][name] = {
            "rgb": share(rgb_same),
            "count": share(count_same),
            "rgb_and_count": share(rgb_same & count_same),
            "both_valid": int(np.count_nonzero(both)),
            "rgb_both_valid": share(rgb_same, both),
            "rgb_same_count": share(rgb_same, both & count_same),
            "rgb_single": share(rgb_same, coverage == 1),
            "rgb_overlap": share(rgb_same, coverage >= 2),
            "count_single": share(count_same, coverage == 1),
            "count_overlap": share(count_same, coverage >= 2),
            # Under one tile fusion plays no part: what differs there is nearest-neighbour resampling.
            "rgb_by_tile": {
                name: [share(rgb_same, cov & (coverage == 1)), crs == grid["crs"]]
                for (name, (crs, _, _)), cov in zip(tiles.items(), covers)
            },
            "only_ours_valid": int(np.count_nonzero((ours[3] > 0) & (theirs[3] == 0))),
            "only_theirs_valid": int(np.count_nonzero((ours[3] == 0) & (theirs[3] > 0))),
            "count_more_ours": int(np.count_nonzero(diff > 0)),
            "count_more_theirs": int(np.count_nonzero(diff < 0)),
            "max_rgb_diff": int(np.abs(ours[:3].astype(np.int16) - theirs[:3]).max()),
        }
    return figures


def _run_child(kind: str, *args) -> dict:
    spec = json.dumps({"kind": kind, "args": args})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], check=False, input=spec,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind!r} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _keep_best(best: dict, kind: str, fig: dict) -> None:
    """Best time kept, with the highest peak memory of all runs and every run's time."""
    kept = best.get(kind)
    if kept is None:
        best[kind] = {**fig, "runs": [fig["seconds"]]}
        return
    runs, peak = kept["runs"] + [fig["seconds"]], max(fig["rss_peak_mb"], kept["rss_peak_mb"])
    best[kind] = {**(fig if fig["seconds"] < kept["seconds"] else kept), "rss_peak_mb": peak, "runs": runs}


def main(argv=None) -> None:
    if argv is None and sys.argv[1:] == ["--child"]:
        spec = json.loads(sys.stdin.read())
        helpers = {"area": _child_area, "layout": _child_layout, "compare": _child_compare}
        figures = {**_CHILDREN, **helpers}[spec["kind"]](*spec["args"])
        figures["rss_peak_mb"] = _rss_mb()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        figures["cpu_s"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(figures))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="keep the generated area here and reuse it (or any area already there)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each contender, best time kept (default 2)")
    parser.add_argument("--tiles", type=int, default=3, choices=(2, 3), help="tiles of a generated area (default 3)")
    parser.add_argument("--tile-size", type=int, default=1024, help="our window size (default 1024)")
    parser.add_argument("--chunk", type=int, default=1024, help="odc-stac's x/y dask chunk size (default 1024)")
    parser.add_argument("--bbox", help="W,S,E,N in degrees: the area (default none: the union of the footprints)")
    args = parser.parse_args(argv)
    bbox = [float(v) for v in args.bbox.split(",")] if args.bbox else None

    data_dir = args.data or tempfile.mkdtemp(prefix="bench-area-data-")
    work = tempfile.mkdtemp(prefix="bench-area-")
    try:
        area = _run_child("area", data_dir, args.tiles)
        p = area["parameters"]
        print(
            f"area {'reused' if area['reused'] else 'generated'} in {area['seconds']:.1f} s: {p['tiles']} tiles "
            f"({', '.join(area['granules'])}) of {p['scenes']} dates of {p['width']} x {p['height']} px",
            flush=True,
        )
        grid = _run_child("layout", area["items"], args.tile_size, bbox)
        print(
            f"output grid {grid['crs']}, {grid['transform'][0]:g} m, {grid['width']} x {grid['height']} px "
            f"({'bbox ' + args.bbox if bbox else 'no area: the union of the scenes footprints'}); "
            f"{grid['windows']} windows of {args.tile_size}; {grid['scenes']} scenes in "
            f"{grid['observations']} observations; {grid['pairs']} window-scene reads, {grid['aligned_pairs']} of them "
            "on the output's pixel grid (plain windowed reads), the others through the warper's pixel maps",
            flush=True,
        )
        outs = {kind: tempfile.mkdtemp(prefix=kind.replace(" ", "-").replace("/", "") + "-", dir=work)
                for kind in _CHILDREN}
        best: dict[str, dict] = {}
        # Interleaved repeats, best time kept: the machine is shared, so one slow run says little.
        for _ in range(args.repeat):
            for kind in _CHILDREN:
                extra = () if kind.startswith("ours") else (args.chunk,)
                fig = _run_child(kind, area["items"], outs[kind], args.tile_size, bbox, grid, *extra)
                print(f"  {kind}: {fig['seconds']:.1f} s, {fig['rss_peak_mb']:.0f} MB", flush=True)
                _keep_best(best, kind, fig)
        odc_paths = {kind: os.path.join(out, "median.tif") for kind, out in outs.items() if not kind.startswith("ours")}
        agree = _run_child("compare", area["items"], outs["ours per-band"], odc_paths, grid, args.tile_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.data:
            shutil.rmtree(data_dir, ignore_errors=True)

    patched = best[ODC]["patched"]
    print(
        f"\n{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f}); best of {args.repeat} runs, "
        f"highest peak memory; odc-stac: {best[ODC]['times']} solar days, chunks of {args.chunk}"
        + (f"; raster:bands (3 x uint8, nodata 0) added in memory to {patched} items' visual asset" if patched else "")
    )
    print(f"{'contender':<20} {'seconds':>8} {'runs':>13} {'CPU s':>7} {'peak RSS MB':>12} {'after imports MB':>17}  seconds in")
    for kind, fig in best.items():
        runs = "/".join(f"{s:.1f}" for s in fig["runs"])
        parts = ", ".join(f"{k} {v:.1f}" for k, v in fig["parts"].items())
        print(
            f"{kind:<20} {fig['seconds']:8.1f} {runs:>13} {fig['cpu_s']:7.1f} {fig['rss_peak_mb']:12.0f} "
            f"{fig['rss_imports_mb']:17.0f}  {parts}"
        )
    ours, odc = best["ours per-band"], best[ODC]
    time_ratio = ours["seconds"] / odc["seconds"]
    rss_ratio = ours["rss_peak_mb"] / odc["rss_peak_mb"]
    fast, lean = 1 / time_ratio >= SPEEDUP_GOAL, rss_ratio <= MEMORY_GOAL
    print(
        f"\nours / {ODC}: time {time_ratio:.3f} (x{1 / time_ratio:.1f} faster), peak RSS {rss_ratio:.3f} "
        f"(x{1 / rss_ratio:.1f} less), CPU seconds {ours['cpu_s'] / odc['cpu_s']:.3f}; "
        f"after imports {ours['rss_imports_mb']:.0f} vs {odc['rss_imports_mb']:.0f} MB"
    )
    print(
        f"goal: at least {SPEEDUP_GOAL:.0f}x faster at a fifth of the memory: "
        f"{'met' if fast and lean else 'NOT met'} (speed {'met' if fast else 'not met'}, "
        f"memory {'met' if lean else 'not met'})"
    )
    n = agree["pixels"]
    print(
        f"\nagreement with ours, {n:,} pixels ({agree['single']:,} under one tile, {agree['overlap']:,} under "
        f"2+ tiles, {agree['uncovered']:,} under none); ours valid (count > 0) on {agree['ours_valid']:,}; "
        f"window-scene reads with pixels in the window: {agree['useful_pairs']} of {grid['pairs']}"
    )
    for name, v in agree["vs"].items():
        print(
            f"  {name}: RGB equal {v['rgb']:.4%} (one tile {v['rgb_single']:.4%}, overlaps {v['rgb_overlap']:.4%}); "
            f"count equal {v['count']:.4%} (one tile {v['count_single']:.4%}, overlaps {v['count_overlap']:.4%}); "
            f"RGB and count {v['rgb_and_count']:.4%}"
        )
        print("    RGB equal under one tile only: " + ", ".join(
            f"{name} {rgb:.4%} ({'same CRS' if same else 'reprojected'})" for name, (rgb, same) in v["rgb_by_tile"].items()
        ))
        print(
            f"    where both have a valid sample ({v['both_valid']:,} px): RGB equal {v['rgb_both_valid']:.4%}; "
            f"there with equal counts {v['rgb_same_count']:.4%}; valid only in ours {v['only_ours_valid']:,}, only "
            f"in odc {v['only_theirs_valid']:,}; count higher in ours {v['count_more_ours']:,} px, in odc "
            f"{v['count_more_theirs']:,} px; largest RGB difference {v['max_rgb_diff']}"
        )


if __name__ == "__main__":
    main()
