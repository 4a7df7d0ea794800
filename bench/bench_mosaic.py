"""Benchmark: time and peak memory to assemble a granule's COG from its tiles, streamed vs in memory.

Writes synthetic 4-band tiles (smooth pattern, a nodata corner; the "tile" profile, as median
writes them) for a ``--size`` raster on the 1024 grid (10980 x 10980 = 121 tiles by default),
then, each in its own fresh subprocess:

- ``streamed``: ``temporal_median.assembly.cog.build_mosaic`` (VRT + COG + quicklook), the way the
  mosaic function runs;
- ``recompressed``: the same, but with every block compressed again by GDAL (the way before the
  tiles' blocks were copied);
- ``in-memory``: the naive way, every tile read into one 4 x H x W array, written to a GTiff and
  copied to a COG with the same options (what streaming saves);
- ``baseline``: the interpreter with rasterio and the core imported, doing nothing.

Peak memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of each subprocess. Linux carries a
parent's peak RSS into a child's ``ru_maxrss`` across fork + exec, so this parent stays lean (no
numpy, no rasterio) and writes the tiles in a subprocess too.

Usage: ``.venv/bin/python bench/bench_mosaic.py [--size 10980] [--tile 1024] [--keep DIR]``
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

ORIGIN_X, ORIGIN_Y, PIXEL = 300000.0, 4900020.0, 10.0


def _grid_args(size: int):
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    return Affine(PIXEL, 0.0, ORIGIN_X, 0.0, -PIXEL, ORIGIN_Y), CRS.from_epsg(32631)


def _tile_data(size: int, window):
    """A smooth RGB + count pattern with an outside-swath corner of nodata (all bands 0)."""
    import numpy as np

    y, x = np.mgrid[
        window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width
    ].astype(np.float32)
    u, v = x / size, y / size
    data = np.empty((4, window.height, window.width), dtype=np.uint8)
    data[0] = 1 + 200 * u + 40 * np.sin(12 * v)
    data[1] = 1 + 200 * v + 40 * np.cos(9 * u)
    data[2] = 128 + 100 * np.sin(7 * (u + v))
    data[3] = 1 + (np.hypot(u - 0.5, v - 0.5) * 300).clip(0, 254)
    # Sensor-like noise, so DEFLATE works about as hard as on real imagery, not on flat ramps.
    data[:3] |= np.random.default_rng(window.col_off + 7 * window.row_off).integers(
        0, 8, size=(3, window.height, window.width), dtype=np.uint8
    )
    data[:, (u + v) < 0.3] = 0
    return data


def write_tiles(directory: str, size: int, tile: int) -> list[str]:
    """The tiles as the median function writes them (the "tile" profile)."""
    from rasterio.transform import Affine

    from temporal_median.base.grid import Grid
    from temporal_median.raster.write import write_bands

    transform, crs = _grid_args(size)
    paths = []
    for tile_id, w in Grid(size, size, tile).windows():
        path = os.path.join(directory, f"{tile_id}.tif")
        write_bands(path, _tile_data(size, w), transform @ Affine.translation(w.col_off, w.row_off), crs)
        paths.append(path)
    return paths


class _DiskPeak:
    """Samples the bytes of files under a directory: on Cloud Functions /tmp is RAM, so this counts."""

    def __init__(self, directory: str, period: float = 0.05):
        import threading

        self.directory, self.period, self.peak = directory, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _size(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.directory):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass  # removed between listing and stat
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            self._stop.wait(self.period)

    def __enter__(self) -> "_DiskPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _child_streamed(tiles_dir: str, out_dir: str, size: int, tile: int, *, copy_blocks: bool = True) -> dict:
    from temporal_median.assembly import cog as assemble

    if not copy_blocks:  # the way before tile blocks were copied: GDAL compresses everything
        assemble.copy_obstacle = lambda *args, **kwargs: "benchmark: compress everything"
    transform, crs = _grid_args(size)
    paths = sorted(os.path.join(tiles_dir, n) for n in os.listdir(tiles_dir))
    started = time.perf_counter()
    cpu = time.process_time()
    with _DiskPeak(out_dir) as disk:
        result = assemble.build_mosaic(paths, out_dir, width=size, height=size, transform=transform, crs=crs, tile_size=tile)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "disk_peak": disk.peak,
        "cog_bytes": os.path.getsize(result.cog_path),
        "bytes_written": result.bytes_written,
        "full_resolution": result.recompressed or "tile blocks copied",
    }


def _child_recompressed(tiles_dir: str, out_dir: str, size: int, tile: int) -> dict:
    return _child_streamed(tiles_dir, out_dir, size, tile, copy_blocks=False)


def _child_tiles(tiles_dir: str, _out_dir: str, size: int, tile: int) -> dict:
    started = time.perf_counter()
    paths = write_tiles(tiles_dir, size, tile)
    return {
        "seconds": time.perf_counter() - started,
        "tiles": len(paths),
        "tiles_bytes": sum(os.path.getsize(p) for p in paths),
    }


def _child_in_memory(tiles_dir: str, out_dir: str, size: int, tile: int) -> dict:
    import rasterio

    transform, crs = _grid_args(size)
    started = time.perf_counter()
    # Same GDAL block cache cap as build_mosaic (gdal_env's), so the difference is the array.
    with rasterio.Env(GDAL_CACHEMAX=64), _DiskPeak(out_dir) as disk:
        figures = _in_memory(tiles_dir, out_dir, size, tile, transform, crs, started)
    return {**figures, "disk_peak": disk.peak}


def _in_memory(tiles_dir, out_dir, size, tile, transform, crs, started) -> dict:
    import numpy as np
    import rasterio
    import rasterio.shutil

    from temporal_median.assembly.cog import OVERVIEW_RESAMPLING
    from temporal_median.base.grid import Grid
    from temporal_median.raster.profiles import profile

    mosaic = np.zeros((4, size, size), dtype=np.uint8)
    for tile_id, w in Grid(size, size, tile).windows():
        with rasterio.open(os.path.join(tiles_dir, f"{tile_id}.tif")) as src:
            mosaic[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = src.read()
    scratch = os.path.join(out_dir, "scratch.tif")
    with rasterio.open(
        scratch, "w", driver="GTiff", width=size, height=size, count=4, dtype="uint8",
        crs=crs, transform=transform, nodata=0, tiled=True, blockxsize=512, blockysize=512,
    ) as dst:
        dst.write(mosaic)
    options = {k: v for k, v in profile("mosaic").items() if k.lower() != "driver"}
    options.setdefault("overview_resampling", OVERVIEW_RESAMPLING)
    cog = os.path.join(out_dir, "naive.tif")
    rasterio.shutil.copy(scratch, cog, driver="COG", **options)
    return {"seconds": time.perf_counter() - started, "cog_bytes": os.path.getsize(cog)}


def _child_baseline(*_args) -> dict:
    import rasterio  # noqa: F401

    import temporal_median.assembly.cog  # noqa: F401

    return {"seconds": 0.0}


_CHILDREN = {"tiles": _child_tiles, "streamed": _child_streamed, "recompressed": _child_recompressed,
             "in-memory": _child_in_memory, "baseline": _child_baseline}


def _run_child(kind: str, tiles_dir: str, work: str, size: int, tile: int, out_dir: str | None = None) -> dict:
    keep = out_dir is not None
    out_dir = out_dir or tempfile.mkdtemp(prefix=f"{kind}-", dir=work)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", kind, tiles_dir, out_dir, str(size), str(tile)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if not keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, tiles_dir, out_dir, size, tile = sys.argv[2:7]
        figures = _CHILDREN[kind](tiles_dir, out_dir, int(size), int(tile))
        figures["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="raster width and height (default 10980)")
    parser.add_argument("--tile", type=int, default=1024, help="grid tile size (default 1024)")
    parser.add_argument("--skip-in-memory", action="store_true", help="only the streamed build")
    args = parser.parse_args(argv)

    raw_mb = 4 * args.size * args.size / 1e6
    # The COG copy and the overviews run on every core: seconds depend on how many there are.
    print(f"cores {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}")
    work = tempfile.mkdtemp(prefix="bench-mosaic-")
    try:
        tiles_dir = os.path.join(work, "tiles")
        os.makedirs(tiles_dir)
        made = _run_child("tiles", tiles_dir, work, args.size, args.tile, out_dir=tiles_dir)
        print(
            f"raster {args.size} x {args.size} x 4 uint8 = {raw_mb:.0f} MB raw; {made['tiles']} tiles of "
            f"{args.tile} ({made['tiles_bytes'] / 1e6:.0f} MB DEFLATE) written in {made['seconds']:.1f} s"
        )
        kinds = ["baseline", "streamed", "recompressed"] + ([] if args.skip_in_memory else ["in-memory"])
        results = {kind: _run_child(kind, tiles_dir, work, args.size, args.tile) for kind in kinds}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results["baseline"]["maxrss_mb"]
    print(f"{'build':<11} {'seconds':>8} {'peak RSS MB':>12} {'above baseline':>15} {'peak files MB':>14} {'COG MB':>8}")
    for kind, fig in results.items():
        cog = f"{fig['cog_bytes'] / 1e6:8.1f}" if "cog_bytes" in fig else f"{'-':>8}"
        disk = f"{fig['disk_peak'] / 1e6:14.0f}" if "disk_peak" in fig else f"{'-':>14}"
        print(f"{kind:<11} {fig['seconds']:8.1f} {fig['maxrss_mb']:12.0f} {fig['maxrss_mb'] - base:15.0f} {disk} {cog}")
    print("(peak files: bytes on disk in the output dir during the build; on Cloud Functions /tmp is RAM)")
    streamed, again = results["streamed"], results["recompressed"]
    print(f"streamed: full resolution {streamed['full_resolution']}; {streamed['cpu_seconds']:.1f} CPU s")
    print(f"streamed / recompressed (every block compressed again, the way before): time "
          f"x{streamed['seconds'] / again['seconds']:.2f}, CPU x{streamed['cpu_seconds'] / again['cpu_seconds']:.2f}, "
          f"COG size x{streamed['cog_bytes'] / again['cog_bytes']:.3f}")
    if "in-memory" in results:
        streamed, naive = results["streamed"], results["in-memory"]
        print(
            f"streamed / in-memory: time x{streamed['seconds'] / naive['seconds']:.2f}, "
            f"memory above baseline x{(streamed['maxrss_mb'] - base) / max(naive['maxrss_mb'] - base, 1):.2f}"
        )


if __name__ == "__main__":
    main()
