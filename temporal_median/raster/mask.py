"""Scene classification masks (Sentinel-2's SCL): read onto a window's grid, their excluded classes dropped."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RioWindow

from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster.direct import GDT_BYTE, GdalCallError, open_raster
from temporal_median.raster.gdal import gdal_error, to_gdal_path
from temporal_median.raster.read import ReadCheck, open_scene, read_scene, same_crs
from temporal_median.raster.warp import WARP_TOLERANCE, aligned_steps, warp_scene


def check_masks(masks, urls: Sequence[str]) -> list[str] | None:
    """``masks`` as a list, one per scene, or None; InvalidRequest otherwise."""
    if masks is None:
        return None
    masks = list(masks)
    if len(masks) != len(urls) or not all(isinstance(m, str) and m for m in masks):
        raise InvalidRequest(f"masks must be one URL per scene ({len(urls)}), got {len(masks)}")
    return masks


def read_aligned(read: Callable[[int, int, int, int], np.ndarray], width: int, height: int,
                 steps: tuple[int, int, int], window: Window, out: np.ndarray, table: np.ndarray | None = None) -> None:
    """Classes of an aligned mask (:func:`aligned_steps`) on ``window`` into ``out`` (h, w), 0 beyond the mask.

    ``read(col_off, row_off, cols, rows)`` returns that window of the mask's first band, (rows, cols);
    ``width`` and ``height`` are the mask's size. With ``table`` (256 values), ``table[class]``
    instead of each class, looked up on the mask's pixels before they are repeated onto the window's.
    """
    k, cols, rows = steps
    src_rows = (rows + np.arange(window.row_off, window.row_off + window.height)) // k
    src_cols = (cols + np.arange(window.col_off, window.col_off + window.width)) // k
    # The window's rows (columns) the mask reaches: a run, src_rows (src_cols) growing.
    y0, y1 = (int(v) for v in np.searchsorted(src_rows, (0, height)))
    x0, x1 = (int(v) for v in np.searchsorted(src_cols, (0, width)))
    if (y0, y1, x0, x1) != (0, window.height, 0, window.width):
        out[...] = 0 if table is None else table[0]
    if y1 <= y0 or x1 <= x0:
        return
    r0, c0 = int(src_rows[y0]), int(src_cols[x0])
    block = read(c0, r0, int(src_cols[x1 - 1]) + 1 - c0, int(src_rows[y1 - 1]) + 1 - r0)
    if table is not None:
        block = np.take(table, block)
    # Two one-axis gathers: several times faster than one 2-D fancy index.
    np.take(np.take(block, src_rows[y0:y1] - r0, axis=0), src_cols[x0:x1] - c0, axis=1, out=out[y0:y1, x0:x1],
            mode="clip")


def _read_direct(url: str, grid: RasterGrid, window: Window, out: np.ndarray, table: np.ndarray | None) -> bool:
    """:func:`read_aligned` through the direct reader; False where it does not apply (the caller reads with rasterio)."""
    path = to_gdal_path(url)
    try:
        raster = open_raster(path)
    except GdalCallError:  # e.g. no driver registered yet, outside any rasterio.Env: rasterio opens it, or says why not
        return False
    if raster is None:
        return False
    with raster:
        if raster.count < 1 or raster.data_type(1) != GDT_BYTE or not same_crs(raster, path, grid.crs):
            return False
        steps = aligned_steps(raster.gdal_transform(), grid)
        if steps is None:
            return False

        def read(col_off: int, row_off: int, cols: int, rows: int) -> np.ndarray:
            block = np.empty((1, rows, cols), np.uint8)
            try:
                raster.read(col_off, row_off, cols, rows, block, bands=(1,))
            except GdalCallError as exc:
                raise gdal_error(exc, url, f"read mask window {[col_off, row_off, cols, rows]}") from exc
            return block[0]

        read_aligned(read, raster.width, raster.height, steps, window, out, table)
        return True


def read_mask(url: str, grid: RasterGrid, window: Window, *, warp: bool = False) -> np.ndarray:
    """The classes of ``url`` (one band) on ``window`` of ``grid``, (h, w) uint8.

    Nearest neighbour: each output pixel takes the class of the mask pixel holding its centre
    (a 20 m SCL pixel for each of its four 10 m pixels), whatever the mask's CRS or resolution.
    Where the mask does not reach, the class is 0 (no data). A mask in ``grid``'s CRS on its
    pixel grid at a whole multiple of its pixel size (:func:`aligned_steps`, the SCL of a 10 m
    scene) is read as a plain window and indexed; any other goes through GDAL's warper (always,
    with ``warp``). Both give the same classes.

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable
        A mask that is not one band of uint8 classes or has no CRS; one that cannot be read.
    """
    return _read_mapped(url, grid, window, None, warp)


def _read_mapped(url: str, grid: RasterGrid, window: Window, table: np.ndarray | None, warp: bool = False) -> np.ndarray:
    """:func:`read_mask`, each class ``c`` replaced by ``table[c]`` when ``table`` is given."""
    out = np.empty((window.height, window.width), np.uint8)
    if not warp and _read_direct(url, grid, window, out, table):
        return out
    try:
        with rasterio.Env(), open_scene(url) as ds:
            if ds.count < 1 or ds.dtypes[0] != "uint8" or not ds.crs:
                raise InputMismatch(f"{url}: a mask must be a georeferenced uint8 class raster, got "
                                    f"{ds.count} band(s) of {ds.dtypes[0] if ds.count else 'nothing'}")
            steps = (None if warp or ds.crs != CRS.from_user_input(grid.crs)
                     else aligned_steps(ds.transform.to_gdal(), grid))
            if steps is not None:
                read = lambda col, row, cols, rows: ds.read(1, window=RioWindow(col, row, cols, rows))  # noqa: E731
                read_aligned(read, ds.width, ds.height, steps, window, out, table)
                return out
            out[...] = 0
            with WarpedVRT(
                ds, crs=grid.crs, transform=Affine(*grid.window_transform(window)[:6]), width=window.width,
                height=window.height, resampling=Resampling.nearest, tolerance=WARP_TOLERANCE,
                src_nodata=None, nodata=0, init_dest_nodata=True,
            ) as vrt:
                vrt.read(1, out=out)
    except (RasterioError, OSError) as exc:
        raise gdal_error(exc, url, "read mask") from exc
    return out if table is None else np.take(table, out)


def keep_table(exclude: Sequence[int]) -> np.ndarray:
    """(256,) uint8: 0 for the classes in ``exclude``, 1 for every other."""
    table = np.ones(256, np.uint8)
    table[np.asarray(list(exclude), np.intp)] = 0
    return table


def drop_excluded(samples: np.ndarray, classes: np.ndarray, exclude: Sequence[int]) -> None:
    """Set ``samples`` (3, h, w) to 0, nodata, wherever ``classes`` is one of ``exclude``."""
    if len(exclude):
        np.multiply(samples, np.take(keep_table(exclude), classes)[None], out=samples)


def read_masked(
    url: str, mask: str, exclude: Sequence[int], grid: RasterGrid, window: tuple, out: np.ndarray,
    check: ReadCheck | None = None,
) -> int:
    """:func:`~temporal_median.raster.read.read_scene`, then the samples whose class is excluded dropped."""
    read = read_scene(url, window, out, check)
    np.multiply(out, _read_mapped(mask, grid, Window(*window), keep_table(exclude))[None], out=out)
    return read


def warp_masked(url: str, mask: str, exclude: Sequence[int], out: np.ndarray, grid: RasterGrid, window: Window) -> int:
    """:func:`~temporal_median.raster.warp.warp_scene`, then the samples whose class is excluded dropped."""
    read = warp_scene(url, out, grid, window)
    np.multiply(out, _read_mapped(mask, grid, window, keep_table(exclude))[None], out=out)
    return read
