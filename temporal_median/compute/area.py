"""A tile of an area on its own output grid: scenes warped onto the window, fused per acquisition, the median."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Sequence

import numpy as np

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.base.methods import DEFAULT_METHOD, check_method
from temporal_median.compute.composites import Composites, TileStats
from temporal_median.compute.tile import read_env
from temporal_median.raster.gdal import forget_remote_files_on_transient, read_threads
from temporal_median.raster.mask import check_masks, warp_masked
from temporal_median.raster.read import check_window_type, shutdown, wait_all
from temporal_median.raster.warp import warp_scene
from temporal_median.raster.write import check_dest


def check_observations(observations, n_scenes: int) -> tuple[tuple[int, ...], ...]:
    """``observations`` if it groups scene indices 0..n-1 in consecutive runs, in order.

    Each observation is one acquisition (a solar day and platform): the scenes of one pass
    over neighbouring tiles. Consecutive runs let :func:`fuse_observations` work in place.

    Raises
    ------
    InvalidRequest
        On anything else (a gap, a repeat, an index out of range, an empty group).
    """
    flat = [i for group in observations for i in group]
    if flat != list(range(n_scenes)) or any(not group for group in observations):
        raise InvalidRequest(
            f"observations must group the {n_scenes} scenes' indices in consecutive runs, got {observations!r}"
        )
    return tuple(tuple(int(i) for i in group) for group in observations)


def valid_samples(scene: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels whose bands are all neither 0 (nodata) nor 255 (saturated)."""
    # x - 1 wraps 0 to 255, so one comparison rejects both 0 and 255.
    return ((scene - np.uint8(1)) < 254).all(axis=0)


def fuse_observations(stack: np.ndarray, observations: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Fuse each observation's scenes into one sample per pixel, in place; returns ``stack[:G]``.

    Per pixel, an observation takes the first valid sample of its scenes in their order (the
    message's order: acquisition time, then URL), as odc-stac's ``groupby="solar_day"`` fuser
    takes the first non-nodata one; with no valid sample it keeps its first scene's (invalid)
    sample, so the median skips it and the count band counts observations, not scenes.
    Observation ``g`` is written to ``stack[g]``: each run starts at or after ``g``, and the
    slots it overwrites belong to runs already fused.
    """
    for g, members in enumerate(observations):
        fused = stack[g]
        if members[0] != g:
            fused[...] = stack[members[0]]
        if len(members) == 1:
            continue
        missing = ~valid_samples(fused)
        for member in members[1:]:
            if not missing.any():
                break
            take = missing & valid_samples(stack[member])
            np.copyto(fused, stack[member], where=take[np.newaxis])
            missing &= ~take
    return stack[: len(observations)]


@forget_remote_files_on_transient
def compute_area_tile(
    urls: Sequence[str],
    observations,
    grid: RasterGrid,
    window: Window,
    dest_path: str,
    *,
    method: str = DEFAULT_METHOD,
    max_workers: int | None = None,
    periods: Sequence = (),
    masks: Sequence[str] | None = None,
    exclude: Sequence[int] = (),
) -> TileStats:
    """One tile of an area: every scene warped onto ``window`` of ``grid``, fused, the median.

    Parameters
    ----------
    urls : sequence of str
        The scenes whose footprint touches the window, grouped by observation (see
        :func:`check_observations`), observations in acquisition order. May be empty: the
        tile is then all nodata.
    observations : sequence of sequence of int
        Indices into ``urls``, one group per acquisition.
    grid : RasterGrid
        The output grid (any CRS); ``window`` is one of its windows.
    window : Window
    dest_path : str
        Local path of the tile COG (written atomically).
    method : str
        ``"luminance"`` or ``"per-band"``.
    max_workers : int, optional
        Warping threads; default :func:`read_threads`.
    periods : sequence of (name, first, stop, path), optional
        Periods' composites: runs of ``observations``, from the same reads.
    masks, exclude : optional
        One classification raster per scene, and the classes whose samples are dropped.

    Returns
    -------
    TileStats
        ``bytes_read`` counts the compressed source blocks under each scene's part of the window.

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable, InvalidRequest
        A scene that is not 3-band uint8 or has no CRS, one that cannot be read, storage
        failures (transient), bad observations or window.
    """
    check_method(method)
    check_window_type(window)
    check_dest(dest_path)
    urls = list(urls)
    observations = check_observations(observations, len(urls))
    if not grid.contains(window):
        raise InvalidRequest(f"window {window.as_list()} is outside the {grid.width} x {grid.height} output grid")
    from temporal_median.compute.median import prepare  # the kernels: imported only by the function that needs them

    prepare(method)
    masks = check_masks(masks, urls)
    composites = Composites(window, len(observations), periods)
    bytes_read, seconds_read = 0, 0.0
    if urls:
        t0 = time.perf_counter()
        stack = np.empty((len(urls), 3, window.height, window.width), np.uint8)
        with read_env(), ExitStack() as stack_ctx:
            pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-warp")
            stack_ctx.callback(shutdown, pool)
            if masks is None:
                futures = [pool.submit(warp_scene, url, stack[t], grid, window) for t, url in enumerate(urls)]
            else:
                futures = [pool.submit(warp_masked, url, masks[t], exclude, stack[t], grid, window)
                           for t, url in enumerate(urls)]
            wait_all(futures)
            bytes_read = sum(future.result() for future in futures)
        fused = fuse_observations(stack, observations)
        seconds_read = time.perf_counter() - t0
        composites.add(fused, method, 0, window.height, 0, window.width)
    return composites.write(dest_path, grid, bytes_read, seconds_read)
