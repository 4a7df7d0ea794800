"""Scenes on an output grid: the grid an area asks for, outlines in its CRS, window reads (direct or warped)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform, transform_bounds
from rasterio.windows import Window as RioWindow

from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster.direct import GDT_BYTE, GdalCallError, Raster, open_raster
from temporal_median.raster.gdal import gdal_error, to_gdal_path
from temporal_median.raster.read import (
    SceneFacts,
    open_scene,
    raster_block_bytes,
    same_crs,
    scene_facts,
    window_block_bytes,
)

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


def outline_in(bounds: tuple, src_crs, dst_crs) -> list[tuple[float, float]]:
    """A box's outline in another CRS: its edges densified (as :func:`bounds_in`), counter-clockwise."""
    west, south, east, north = bounds
    steps = [i / (_DENSIFY - 1) for i in range(_DENSIFY - 1)]
    xs = [west + (east - west) * t for t in steps] + [east] * len(steps)
    ys = [south] * len(steps) + [south + (north - south) * t for t in steps]
    xs += [east - (east - west) * t for t in steps] + [west] * len(steps)
    ys += [north] * len(steps) + [north - (north - south) * t for t in steps]
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    return list(zip(xs, ys)) if src == dst else list(zip(*transform(src, dst, xs, ys)))


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

    Pixels the scene does not cover, or covers with 0 (nodata), are 0. A scene on the grid's
    own pixel grid (see :func:`aligned_offset`) is read as a plain window by the direct reader,
    any other through the warper's pixel map for its grid (see :func:`read_direct`): the
    warper's very pixels either way. The reads and the warper run without the GIL, so scenes
    warp side by side in threads.

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
    read = read_direct(url, out, grid, window)
    if read is not None:
        return read
    try:
        # A bare Env in the worker thread, as raster.read.probe explains.
        with rasterio.Env(), open_scene(url) as ds:
            facts = scene_facts(ds, None)
            check_scene_type(facts, url)
            # A WarpedVRT read (not rasterio.warp.reproject, which holds the GIL around GDALWarp
            # in rasterio 1.4): RasterIO on the VRT runs the warper with the GIL released.
            with _warped_vrt(ds, grid, window) as vrt:
                vrt.read((1, 2, 3), out=out)
            return _source_bytes(ds, facts, grid, window)
    except (RasterioError, OSError) as exc:
        raise gdal_error(exc, url, "warp raster") from exc


def _warped_vrt(ds, grid: RasterGrid, window: Window) -> WarpedVRT:
    """``ds`` on ``window`` of ``grid``: nearest neighbour, 0 as nodata in and out."""
    return WarpedVRT(
        ds, crs=grid.crs, transform=Affine(*grid.window_transform(window)[:6]), width=window.width,
        height=window.height, resampling=Resampling.nearest, tolerance=WARP_TOLERANCE, src_nodata=0, nodata=0,
        init_dest_nodata=True,
    )


def _source_bytes(ds, facts: SceneFacts, grid: RasterGrid, window: Window) -> int:
    """Compressed bytes of the source blocks under the window's footprint (the reads' size)."""
    part = source_window(grid, window, facts.crs, facts.transform, facts.width, facts.height)
    return window_block_bytes(ds, part) if part is not None else 0


def source_window(grid: RasterGrid, window: Window, crs, transform: Affine, width: int, height: int,
                  margin: int = 0) -> Window | None:
    """The part of a scene (``crs``, ``transform``, size) under ``window``'s footprint, grown by
    ``margin`` pixels and cut to the scene; None when the two do not meet."""
    west, south, east, north = bounds_in(window_bounds(grid, window), grid.crs, crs)
    inverse = ~transform
    cols, rows = zip(*(inverse @ (x, y) for x in (west, east) for y in (south, north)))
    c0, r0 = max(0, math.floor(min(cols)) - margin), max(0, math.floor(min(rows)) - margin)
    c1, r1 = min(width, math.ceil(max(cols)) + margin), min(height, math.ceil(max(rows)) + margin)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


# --------------------------------------------------------------------------------------------
# The direct path: a scene's window read by the direct reader (GDAL's C API, the GIL released),
# placed on the output window as the warper would place it.
# --------------------------------------------------------------------------------------------

#: Offsets and pixel sizes within this share of a pixel count as equal (float noise in transforms).
_ALIGN_TOLERANCE = 1e-6
#: Source pixels read around a window's footprint for a pixel map (the warper's error is far less).
_MAP_MARGIN = 4
#: A pixel map's source part is numbered in the 24 bits of three bytes (1..2**24 - 1).
_MAP_PIXELS = (1 << 24) - 1
#: Pixel maps kept (5 bytes a window pixel): a window's maps serve every date of its tiles.
_MAPS_KEPT, _MAPS_BYTES = 8, 256 << 20
_maps: dict[tuple, "_PixelMap"] = {}
_maps_lock = threading.Lock()


def aligned_steps(gdal_transform: tuple, grid: RasterGrid) -> tuple[int, int, int] | None:
    """(k, columns, rows) when a raster's pixels are k x k of ``grid``'s, on its pixel grid; else None.

    ``gdal_transform`` is the raster's GDAL geotransform (c, a, b, f, d, e). Aligned means
    north-up, a pixel a whole number k >= 1 of ``grid``'s pixels wide and high, and ``grid``'s
    origin a whole number of ``grid`` pixels (columns, rows) from the raster's. Then grid pixel
    (row, col) has its centre in raster pixel ((rows + row) // k, (columns + col) // k), at least
    half a grid pixel from that pixel's edges: what nearest neighbour (the warper) takes, as
    WARP_TOLERANCE is far from half a pixel.
    """
    c, a, b, f, d, e = (float(v) for v in gdal_transform)
    ga, gb, gc, gd, ge, gf = (float(v) for v in grid.transform[:6])
    if b or d or gb or gd or not ga or not ge:
        return None
    k = round(a / ga)
    if k < 1 or abs(a - k * ga) > _ALIGN_TOLERANCE * abs(ga) or abs(e - k * ge) > _ALIGN_TOLERANCE * abs(ge):
        return None
    cols, rows = (gc - c) / ga, (gf - f) / ge
    if abs(cols - round(cols)) > _ALIGN_TOLERANCE or abs(rows - round(rows)) > _ALIGN_TOLERANCE:
        return None
    return k, round(cols), round(rows)


def aligned_offset(gdal_transform: tuple, grid: RasterGrid) -> tuple[int, int] | None:
    """(columns, rows) from ``grid``'s origin to a scene's, when the scene is on ``grid``'s own
    pixel grid (:func:`aligned_steps` with k = 1: each output pixel is a source pixel); else None."""
    steps = aligned_steps(gdal_transform, grid)
    return (-steps[1], -steps[2]) if steps is not None and steps[0] == 1 else None


def aligned_part(offset: tuple[int, int], width: int, height: int, window: Window) -> Window | None:
    """The part of a ``width`` x ``height`` scene at ``offset`` (:func:`aligned_offset`) that
    ``window`` covers; None when they do not meet."""
    col0, row0 = window.col_off - offset[0], window.row_off - offset[1]
    c0, r0 = max(0, col0), max(0, row0)
    c1, r1 = min(width, col0 + window.width), min(height, row0 + window.height)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


@dataclass
class _PixelMap:
    """Where the warper takes a window's pixels from, for every scene of one grid: ``index`` (h, w)
    into ``region`` (row-major); ``keep`` 255 where the scene reaches, 0 where not (None: all);
    ``source``, the part under the window (its blocks are the bytes read). None: nothing covered."""

    lock: threading.Lock
    region: Window | None = None
    source: Window | None = None
    index: np.ndarray | None = None
    keep: np.ndarray | None = None
    built: bool = False


def read_direct(url: str, out: np.ndarray, grid: RasterGrid, window: Window) -> int | None:
    """:func:`warp_scene` through the direct reader; None where it does not apply (the caller warps).

    A scene on the grid's pixel grid (:func:`aligned_offset`) is read as a plain window, any other
    through the warper's pixel map of its grid on the window (:func:`_build_map`, shared by that
    grid's scenes): each output pixel is the source pixel the warper takes, 0 where none. None
    when the direct reader is unavailable, the scene is not 3-band uint8 with a CRS (the warper
    path names what is wrong), or there is no pixel map (too large, or unlike the warper)."""
    path = to_gdal_path(url)
    try:
        raster = open_raster(path)
    except GdalCallError as exc:
        raise gdal_error(exc, url, "open raster") from exc
    if raster is None:
        return None
    with raster:
        if raster.count != 3 or any(raster.data_type(band) != GDT_BYTE for band in (1, 2, 3)):
            return None
        gdal_transform = raster.gdal_transform()
        offset = aligned_offset(gdal_transform, grid) if same_crs(raster, path, grid.crs) else None
        if offset is not None:
            part = aligned_part(offset, raster.width, raster.height, window)
            if part is None:
                out[...] = 0
                return 0
            if (part.width, part.height) == (window.width, window.height) and out.flags.c_contiguous:
                _read(raster, url, part, out)
            else:
                out[...] = 0
                rows, cols = part.row_off + offset[1] - window.row_off, part.col_off + offset[0] - window.col_off
                _read(raster, url, part, out[:, rows:rows + part.height, cols:cols + part.width])
            return raster_block_bytes(raster, part)
        wkt = raster.projection()
        if not wkt:
            return None
        pixel_map = _pixel_map((wkt, gdal_transform, raster.width, raster.height, grid, window), wkt, url)
        if pixel_map is None:
            return None
        if pixel_map.region is None:
            out[...] = 0
            return 0
        region = pixel_map.region
        pixels = np.empty((3, region.height, region.width), np.uint8)
        _read(raster, url, region, pixels)
        _mapped(pixels, pixel_map, out)
        return raster_block_bytes(raster, pixel_map.source) if pixel_map.source is not None else 0


def _read(raster: Raster, url: str, part: Window, out: np.ndarray) -> None:
    """Bands 1-3 of ``part`` into ``out`` (3, h, w), through a buffer unless C-contiguous."""
    target = out if out.flags.c_contiguous else np.empty((3, part.height, part.width), np.uint8)
    try:
        raster.read(part.col_off, part.row_off, part.width, part.height, target)
    except GdalCallError as exc:
        raise gdal_error(exc, url, f"read window {part.as_list()}") from exc
    if target is not out:
        out[...] = target


def _mapped(pixels: np.ndarray, pixel_map: _PixelMap, out: np.ndarray) -> np.ndarray:
    """``pixels`` of the map's region (3, rows, columns) placed on the window, into ``out``."""
    np.take(pixels.reshape(3, -1), pixel_map.index, axis=1, out=out, mode="clip")
    return out if pixel_map.keep is None else np.bitwise_and(out, pixel_map.keep, out=out)


def _pixel_map(key: tuple, wkt: str, url: str) -> _PixelMap | None:
    """The pixel map of ``key`` (WKT, geotransform, size, grid, window): built once, kept."""
    with _maps_lock:
        pixel_map = _maps.get(key)
        if pixel_map is None:
            while _maps and (len(_maps) >= _MAPS_KEPT or _MAPS_BYTES < sum(
                    5 * k[-1].width * k[-1].height for k in (*_maps, key))):
                _maps.pop(next(iter(_maps)))
            pixel_map = _maps[key] = _PixelMap(threading.Lock())
    with pixel_map.lock:
        if not pixel_map.built:
            pixel_map.built = True
            try:
                _build_map(pixel_map, wkt, *key[1:], url)
            except (RasterioError, OSError):  # not the scene's fault: it is warped
                pixel_map.index = None
    return pixel_map if pixel_map.index is not None or pixel_map.region is None else None


def _build_map(pixel_map: _PixelMap, wkt: str, gdal_transform: tuple, width: int, height: int,
               grid: RasterGrid, window: Window, url: str) -> None:
    """Warp the numbers of the source pixels under the window, exactly as a scene is warped.

    The numbers (1-based, 0 for none) are the bytes of a sparse 3-band uint8 GeoTIFF of the
    scene's size, CRS and transform: the warper takes the same source pixel for each output
    pixel as from the scene (its nodata, 0 in a byte, leaves the 0 that nodata would write).
    Insurance: the map is dropped (the scenes warped) unless it gives ``url`` as the warper does."""
    crs, transform = CRS.from_wkt(wkt), Affine.from_gdal(*gdal_transform)
    pixel_map.source = source_window(grid, window, crs, transform, width, height)
    region = source_window(grid, window, crs, transform, width, height, _MAP_MARGIN)
    if region is None:
        return
    pixels = region.width * region.height
    if pixels > _MAP_PIXELS:
        pixel_map.region = region  # too large to number: the scenes are warped
        return
    numbers = np.arange(1, pixels + 1, dtype=np.uint32).reshape(region.height, region.width)
    warped = np.empty((3, window.height, window.width), np.uint8)
    profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=crs, transform=transform,
                   tiled=True, blockxsize=512, blockysize=512, sparse_ok=True)
    pixel_map.region = region  # without an index until it is built: the scenes are warped
    with rasterio.Env(), MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(np.stack([(numbers >> shift).astype(np.uint8) for shift in (0, 8, 16)]),
                      window=RioWindow(region.col_off, region.row_off, region.width, region.height))
        with memory.open() as ds, _warped_vrt(ds, grid, window) as vrt:
            vrt.read((1, 2, 3), out=warped)
    number = warped[0].astype(np.int32) | warped[1].astype(np.int32) << 8 | warped[2].astype(np.int32) << 16
    pixel_map.index = np.maximum(number - 1, 0)
    pixel_map.keep = np.where(number > 0, np.uint8(255), np.uint8(0)) if not number.all() else None
    with rasterio.Env(), open_scene(url) as ds, _warped_vrt(ds, grid, window) as vrt:
        vrt.read((1, 2, 3), out=warped)
        pixels = ds.read((1, 2, 3), window=RioWindow(region.col_off, region.row_off, region.width, region.height))
    if not np.array_equal(_mapped(pixels, pixel_map, np.empty_like(warped)), warped):
        pixel_map.index = None
