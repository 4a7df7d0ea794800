"""A scene's cloud cover when its metadata has none: an estimate from its smallest overview."""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from temporal_median.base.settings import usable_cores
from temporal_median.raster.gdal import gdal_env, gdal_error, to_gdal_path
from temporal_median.scenes.scene import Scene

#: Longest side, in pixels, read to estimate a scene's cloud cover when it has no overview.
ESTIMATE_MAX_PIXELS = 1024
#: Threads estimating cloud cover of remote scenes at once (latency-bound).
REMOTE_ESTIMATE_THREADS = 16


# --------------------------------------------------------------------------------------------
# Cloud estimate
# --------------------------------------------------------------------------------------------


def cloud_share(data) -> float:
    """The estimated cloud cover of pixels ``data`` (bands, rows, cols), in percent.

    Definition: among the pixels of the valid footprint, i.e. those that are not 0 in all
    bands (0 everywhere is nodata: swath gaps, outside the orbit), the share that has at least
    one band at 255 (saturated: clouds, and also snow or bright roofs). A scene with no valid
    pixel counts as fully covered (100): it brings nothing to a composite.
    """
    import numpy as np

    data = np.asarray(data)
    footprint = data.any(axis=0)
    valid = int(np.count_nonzero(footprint))
    if valid == 0:
        return 100.0
    cloudy = int(np.count_nonzero((data == 255).any(axis=0) & footprint))
    return 100.0 * cloudy / valid


def estimate_cloud_cover(url: str) -> float:
    """Estimate a scene's cloud cover from its smallest overview.

    It is an estimate, not a cloud mask: :func:`cloud_share` of the smallest overview (or,
    without overviews, of a nearest-neighbour decimation to at most ESTIMATE_MAX_PIXELS on
    the long side, which reads the whole image). Overviews averaged from mixed pixels blur
    cloud edges and swath borders, and anything saturated counts as cloud.

    Parameters
    ----------
    url : str
        ``gs://``, ``https://`` or local path of a 3-band uint8 raster.

    Returns
    -------
    float
        Percentage (0-100) of the valid footprint.

    Raises
    ------
    InputUnreadable, StorageUnavailable
        As :func:`temporal_median.raster.gdal.gdal_error` maps reading failures.
    """
    import rasterio
    from rasterio.enums import Resampling

    path = to_gdal_path(url)
    try:
        with gdal_env(), rasterio.open(path) as ds:
            factors = ds.overviews(1)
            factor = max(factors) if factors else max(1, math.ceil(max(ds.width, ds.height) / ESTIMATE_MAX_PIXELS))
            shape = (max(1, math.ceil(ds.height / factor)), max(1, math.ceil(ds.width / factor)))
            bands = list(range(1, min(ds.count, 3) + 1))
            data = ds.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
    except Exception as exc:
        raise gdal_error(exc, url, "read an overview to estimate the cloud cover") from exc
    return cloud_share(data)


def estimate_cloud_covers(scenes: Iterable[Scene], *, max_workers: int | None = None) -> tuple[Scene, ...]:
    """The scenes, in the same order, with an estimated cloud cover where they had none.

    Estimates run concurrently in a thread pool (GDAL releases the GIL while reading).
    """
    scenes = tuple(scenes)
    todo = [i for i, s in enumerate(scenes) if s.cloud_cover is None]
    if not todo:
        return scenes
    if not max_workers or max_workers <= 0:
        remote = any(scenes[i].url.startswith(("gs://", "https://")) for i in todo)
        max_workers = REMOTE_ESTIMATE_THREADS if remote else usable_cores()
    out = list(scenes)
    with ThreadPoolExecutor(max_workers=min(max_workers, len(todo)), thread_name_prefix="cloud-estimate") as pool:
        futures = {i: pool.submit(estimate_cloud_cover, scenes[i].url) for i in todo}
        try:
            for i, future in futures.items():
                out[i] = scenes[i].with_cloud_estimate(future.result())
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
    return tuple(out)
