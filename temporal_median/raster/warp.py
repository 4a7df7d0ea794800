"""Scenes on an output grid: the grid an area asks for, footprints in its CRS, warped window reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster.gdal import gdal_error
from temporal_median.raster.read import SceneFacts, open_scene, scene_facts, window_block_bytes

#: The output grid's internal block: the tiles' and the mosaic's (raster/profiles.py).
OUTPUT_BLOCK = (512, 512)
#: Points per edge when a box is reprojected: a UTM box's edges are curves in degrees and in
#: the neighbouring zone, and its corners alone would miss the bulge.
_DENSIFY = 21
#: The GDAL warper's approximation error, in input pixels. GDAL's default (0.125) interpolates
#: each output row between a few exact points, so a pixel centre within 1/8 pixel of a source
#: pixel's edge can take its neighbour, and which one depends on where the row starts: a window
#: warped alone then differs from a whole-grid warp on 0.4% of pixels across UTM zones. At 0.01
#: both are within 0.01 pixel of the exact transform (0.03%, measured by tests/test_area.py's
#: exact oracle) for a few more PROJ calls per row. rasterio's WarpedVRT cannot take 0.
WARP_TOLERANCE = 0.01


def parse_crs(text: str, field: str = "crs") -> CRS:
    """The CRS ``text`` names (``EPSG:32631``, WKT, PROJ), else InvalidRequest naming ``field``."""
    try:
        crs = CRS.from_user_input(text)
    except (CRSError, ValueError, TypeError) as exc:
        raise InvalidRequest(f"'{field}': unknown CRS {text!r} ({exc})") from None
    if not crs.is_projected and not crs.is_geographic:
        raise InvalidRequest(f"'{field}': {text!r} is neither a projected nor a geographic CRS")
    return crs


def crs_text(crs: CRS) -> str:
    """``EPSG:xxxx`` when the CRS has a code, else its WKT (as RasterGrid writes CRSs)."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone of a point (EPSG:326zz north, 327zz south)."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def bounds_in(bounds: tuple, src_crs, dst_crs) -> tuple[float, float, float, float]:
    """A box's bounds in another CRS: the box of its densified edges (rasterio's transform_bounds)."""
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return tuple(float(v) for v in bounds)
    return tuple(float(v) for v in transform_bounds(src, dst, *bounds, densify_pts=_DENSIFY))


def grid_bounds(grid: RasterGrid) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a north-up grid, in its CRS."""
    a, _, c, _, e, f = grid.transform
    xs = (c, c + a * grid.width)
    ys = (f, f + e * grid.height)
    return min(xs), min(ys), max(xs), max(ys)


def area_grid(bounds: tuple, crs: CRS, resolution: float) -> RasterGrid:
    """The output grid over ``bounds`` (in ``crs``) with square pixels of ``resolution``.

    Pixel edges fall on integer multiples of the resolution (odc-geo's GeoBox with its default
    anchor): the box grows outwards to the nearest multiples, so two areas of one CRS and
    resolution always share their pixel grid, and a grid of the inputs' own CRS and resolution
    lines up with theirs when their origins are multiples (Sentinel-2's are, of 10 and 20 m).

    Raises
    ------
    InvalidRequest
        When ``resolution`` is not positive, or coarser than the area (less than one pixel).
    """
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        raise InvalidRequest(f"'resolution' must be a positive number of the CRS's units, got {resolution!r}")
    west, south, east, north = bounds
    # A hair of tolerance: an edge at 300000.0000001 is 300000 read back from a float transform.
    x0 = math.floor(west / resolution + 1e-9) * resolution
    x1 = math.ceil(east / resolution - 1e-9) * resolution
    y0 = math.floor(south / resolution + 1e-9) * resolution
    y1 = math.ceil(north / resolution - 1e-9) * resolution
    width, height = round((x1 - x0) / resolution), round((y1 - y0) / resolution)
    if min(east - west, north - south) < resolution:
        raise InvalidRequest(
            f"'resolution' {resolution} is coarser than the area ({east - west:.1f} x {north - south:.1f} "
            "in the CRS's units): less than one pixel"
        )
    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y1)
    return RasterGrid(width, height, crs_text(crs), tuple(transform)[:6], OUTPUT_BLOCK)


@dataclass(frozen=True)
class Footprint:
    """Where a scene lies, in the output grid's CRS: its box, from its file's grid."""

    url: str
    bounds: tuple

    def touches(self, bounds: tuple) -> bool:
        """True if the two boxes overlap by more than an edge."""
        w, s, e, n = self.bounds
        return w < bounds[2] and bounds[0] < e and s < bounds[3] and bounds[1] < n


def check_scene_type(facts: SceneFacts, url: str) -> None:
    """InputMismatch naming ``url`` unless the scene is 3-band uint8 (any grid)."""
    if facts.count != 3:
        raise InputMismatch(f"{url}: has {facts.count} band(s), expected 3 (R, G, B)")
    if any(dtype != "uint8" for dtype in facts.dtypes):
        raise InputMismatch(f"{url}: has data type {', '.join(facts.dtypes)}, expected uint8")
    if not facts.crs:
        raise InputMismatch(f"{url}: has no CRS, so it cannot be placed on the output grid")


def window_bounds(grid: RasterGrid, window: Window) -> tuple[float, float, float, float]:
    """(west, south, east, north) of one window of a north-up grid."""
    return grid_bounds(
        RasterGrid(window.width, window.height, grid.crs, grid.window_transform(window)[:6], grid.block)
    )


def warp_scene(url: str, out: np.ndarray, grid: RasterGrid, window: Window) -> int:
    """Warp ``url`` onto ``window`` of ``grid`` into ``out`` (3, h, w) uint8, nearest neighbour.

    Pixels the scene does not cover, or covers with 0 (nodata), are 0. The GDAL warper runs
    without the GIL, so scenes warp side by side in threads.

    Returns
    -------
    int
        Compressed bytes of the scene's blocks that intersect the window's footprint (0 when
        the format does not tell), as the direct reader counts them.

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable
        A scene that is not 3-band uint8, or cannot be read (permanent), or storage failed.
    """
    transform = Affine(*grid.window_transform(window)[:6])
    try:
        # A bare Env in the worker thread, as raster.read.probe explains.
        with rasterio.Env(), open_scene(url) as ds:
            facts = scene_facts(ds, None)
            check_scene_type(facts, url)
            # A WarpedVRT read (not rasterio.warp.reproject, which holds the GIL around GDALWarp
            # in rasterio 1.4): RasterIO on the VRT runs the warper with the GIL released.
            with WarpedVRT(
                ds,
                crs=grid.crs,
                transform=transform,
                width=window.width,
                height=window.height,
                resampling=Resampling.nearest,
                tolerance=WARP_TOLERANCE,
                src_nodata=0,
                nodata=0,
                init_dest_nodata=True,
            ) as vrt:
                vrt.read((1, 2, 3), out=out)
            return _source_bytes(ds, facts, grid, window)
    except (RasterioError, OSError) as exc:
        raise gdal_error(exc, url, "warp raster") from exc


def _source_bytes(ds, facts: SceneFacts, grid: RasterGrid, window: Window) -> int:
    """Compressed bytes of the source blocks under the window's footprint (the reads' size)."""
    west, south, east, north = bounds_in(window_bounds(grid, window), grid.crs, facts.crs)
    inverse = ~facts.transform
    cols, rows = zip(*(inverse @ (x, y) for x in (west, east) for y in (south, north)))
    c0, r0 = max(0, math.floor(min(cols))), max(0, math.floor(min(rows)))
    c1, r1 = min(facts.width, math.ceil(max(cols))), min(facts.height, math.ceil(max(rows)))
    if c1 <= c0 or r1 <= r0:
        return 0
    return window_block_bytes(ds, Window(c0, r0, c1 - c0, r1 - r0))

