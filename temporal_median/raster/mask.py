"""Scene classification masks (Sentinel-2's SCL): read onto a window's grid, their excluded classes dropped."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT

from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster.gdal import gdal_error
from temporal_median.raster.read import ReadCheck, open_scene, read_scene
from temporal_median.raster.warp import WARP_TOLERANCE, warp_scene


def check_masks(masks, urls: Sequence[str]) -> list[str] | None:
    """``masks`` as a list, one per scene, or None; InvalidRequest otherwise."""
    if masks is None:
        return None
    masks = list(masks)
    if len(masks) != len(urls) or not all(isinstance(m, str) and m for m in masks):
        raise InvalidRequest(f"masks must be one URL per scene ({len(urls)}), got {len(masks)}")
    return masks


def read_mask(url: str, grid: RasterGrid, window: Window) -> np.ndarray:
    """The classes of ``url`` (one band) on ``window`` of ``grid``, (h, w) uint8.

    Nearest neighbour: each output pixel takes the class of the mask pixel holding its centre
    (a 20 m SCL pixel for each of its four 10 m pixels), whatever the mask's CRS or resolution.
    Where the mask does not reach, the class is 0 (no data).

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable
        A mask that is not one band of uint8 classes or has no CRS; one that cannot be read.
    """
    out = np.zeros((window.height, window.width), np.uint8)
    try:
        with rasterio.Env(), open_scene(url) as ds:
            if ds.count < 1 or ds.dtypes[0] != "uint8" or not ds.crs:
                raise InputMismatch(f"{url}: a mask must be a georeferenced uint8 class raster, got "
                                    f"{ds.count} band(s) of {ds.dtypes[0] if ds.count else 'nothing'}")
            with WarpedVRT(
                ds, crs=grid.crs, transform=Affine(*grid.window_transform(window)[:6]), width=window.width,
                height=window.height, resampling=Resampling.nearest, tolerance=WARP_TOLERANCE,
                src_nodata=None, nodata=0, init_dest_nodata=True,
            ) as vrt:
                vrt.read(1, out=out)
    except (RasterioError, OSError) as exc:
        raise gdal_error(exc, url, "read mask") from exc
    return out


def drop_excluded(samples: np.ndarray, classes: np.ndarray, exclude: Sequence[int]) -> None:
    """Set ``samples`` (3, h, w) to 0, nodata, wherever ``classes`` is one of ``exclude``."""
    if len(exclude):
        samples[:, np.isin(classes, np.asarray(exclude, np.uint8))] = 0


def read_masked(
    url: str, mask: str, exclude: Sequence[int], grid: RasterGrid, window: tuple, out: np.ndarray,
    check: ReadCheck | None = None,
) -> int:
    """:func:`~temporal_median.raster.read.read_scene`, then the samples whose class is excluded dropped."""
    read = read_scene(url, window, out, check)
    drop_excluded(out, read_mask(mask, grid, Window(*window)), exclude)
    return read


def warp_masked(url: str, mask: str, exclude: Sequence[int], out: np.ndarray, grid: RasterGrid, window: Window) -> int:
    """:func:`~temporal_median.raster.warp.warp_scene`, then the samples whose class is excluded dropped."""
    read = warp_scene(url, out, grid, window)
    drop_excluded(out, read_mask(mask, grid, window), exclude)
    return read
