"""A job's plan before it runs: its windows, scenes and bytes to read, and its simulated wall time and cost."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from temporal_median.base.grid import Grid, RasterGrid, Window
from temporal_median.base.methods import DEFAULT_METHOD
from temporal_median.base.settings import Settings
from temporal_median.job.messages import WindowMessage
from temporal_median.job.paths import JobPaths
from temporal_median.plan.deployment import Deployment
from temporal_median.plan.model import JobShape, Simulation, WindowShape
from temporal_median.plan.parameters import Parameters
from temporal_median.plan.simulate import simulate

if TYPE_CHECKING:  # job/layout.py loads rasterio: fanout's cold start must not
    from temporal_median.job.layout import Layout

#: Bytes per scene of a window message (JSON list of URLs), for jobs planned without their inputs:
#: bench/bench_fanout.py publishes 121 messages of 13.1 kB for 216 inputs (docs/benchmarks.md).
MESSAGE_BYTES_PER_SCENE = 61
BLOCK_COUNTS = "the inputs' block byte counts (TIFF tags, one open per scene)"


@dataclass(frozen=True)
class Plan:
    """A job as it would run: what it reads, and its simulated run on a deployment.

    Attributes
    ----------
    grid : Grid
        The windows.
    shape : JobShape
        Per window: pixels, scenes and compressed bytes to read.
    bytes_source : str
        Where the bytes come from: the inputs' block byte counts, or a measured ratio.
    deployment : Deployment
    parameters : Parameters
    simulation : Simulation
    """

    grid: Grid
    shape: JobShape
    bytes_source: str
    deployment: Deployment
    parameters: Parameters
    simulation: Simulation

    def to_dict(self) -> dict:
        """The plan as JSON: windows, scenes, bytes, the deployment and the prediction."""
        sizes = [w.bytes for w in self.shape.windows]
        scenes = [w.scenes for w in self.shape.windows]
        return {
            "windows": len(self.shape.windows),
            "tile_size": self.grid.tile_size,
            "width": self.grid.width,
            "height": self.grid.height,
            "method": self.shape.method,
            "scenes_per_window": {"min": min(scenes), "max": max(scenes)},
            "bytes_to_read": self.shape.bytes,
            "bytes_per_window": {"min": min(sizes), "median": int(statistics.median(sizes)), "max": max(sizes)},
            "bytes_source": self.bytes_source,
            "message_bytes": self.shape.message_bytes,
            "deployment": self.deployment.to_dict(),
            "prediction": self.simulation.to_dict(),
        }


def plan_job(datasets: Sequence[str], raster: RasterGrid, grid: Grid, settings: Settings, *,
             method: str = DEFAULT_METHOD, deployment: Deployment | None = None,
             parameters: Parameters | None = None, max_workers: int | None = None,
             layout: Layout | None = None) -> Plan:
    """Plan a job of ``datasets`` on ``grid``: what fanout's dry run answers. Nothing is written or published.

    Parameters
    ----------
    datasets : sequence of str
        The job's scenes, checked already (fanout's choose_scenes and inspect_inputs).
    raster : RasterGrid
        Their grid (inspect_inputs' answer).
    grid : Grid
        The windows (``Grid(raster.width, raster.height, tile_size)``).
    settings : Settings
        The function's settings: work location (for the messages' size), instance sizes.
    method : str
        ``luminance`` or ``per-band``.
    deployment : Deployment, optional
        Default: Terraform's defaults with ``settings``' instance sizes (:meth:`Deployment.from_settings`).
    parameters : Parameters, optional
        Default: the simulation's table.
    max_workers : int, optional
        Threads opening scenes (default as inspect_inputs).
    layout : Layout, optional
        An area's layout (fanout's ``place``): each window reads only the scenes it assigns it,
        each scene the blocks under the window's footprint in its own pixel space. None: every
        scene is on ``raster`` as it is, and every window reads all of them.

    Returns
    -------
    Plan
        Windows, scenes and bytes per window from each COG's block byte counts, and the
        simulated wall time (POST to job.json), cost and bound.
    """
    datasets = list(datasets)
    parameters = parameters or Parameters()
    work = settings.work_url
    paths = JobPaths.of(work, "job-plan")
    tiles = list(grid.windows())
    if layout is None:
        sizes = window_bytes(datasets, grid, parameters, max_workers=max_workers)
        messages = [WindowMessage("job-plan", tile, window, method, tuple(datasets), str(paths.tile(tile)), work,
                                  raster) for tile, window in tiles]
    else:
        sizes = area_window_bytes(layout, parameters, max_workers=max_workers)
        messages = [_area_message(layout, tile, window, method, str(paths.tile(tile)), work) for tile, window in tiles]
    message_bytes = sum(len(message.to_bytes()) for message in messages)
    windows = tuple(WindowShape(str(tile), window.width * window.height, len(message.datasets), size)
                    for (tile, window), message, size in zip(tiles, messages, sizes))
    shape = JobShape(windows, method, message_bytes, len(datasets))
    deployment = deployment or Deployment.from_settings(settings)
    return Plan(grid, shape, BLOCK_COUNTS, deployment, parameters, simulate(shape, deployment, parameters))


def plan_geometry(scenes: int, width: int, height: int, tile_size: int = 1024, *,
                  bytes_per_window: int | None = None, method: str = DEFAULT_METHOD,
                  deployment: Deployment | None = None, parameters: Parameters | None = None) -> Plan:
    """Plan a job from its geometry alone (no inputs to open), e.g. a granule: 216 x 10980 x 10980.

    Parameters
    ----------
    scenes, width, height, tile_size : int
    bytes_per_window : int, optional
        Compressed bytes a full window reads (all scenes); edge windows get their share by
        pixels. Default: the measured ratio ``input_bytes_per_sample`` of the parameters.
    method, deployment, parameters
        As :func:`plan_job` (deployment default: Terraform's defaults).
    """
    parameters = parameters or Parameters()
    grid = Grid(width, height, tile_size)
    full = tile_size * tile_size
    if bytes_per_window is None:
        per_pixel = scenes * parameters.input_bytes_per_sample
        source = f"the measured ratio input_bytes_per_sample = {parameters.input_bytes_per_sample:g} bytes"
    else:
        per_pixel = bytes_per_window / full
        source = f"--bytes-per-window {bytes_per_window} (full windows; edge windows by their pixels)"
    windows = tuple(WindowShape(str(tile), w.width * w.height, scenes, int(round(per_pixel * w.width * w.height)))
                    for tile, w in grid.windows())
    shape = JobShape(windows, method, len(windows) * (500 + MESSAGE_BYTES_PER_SCENE * scenes))
    deployment = deployment or Deployment.terraform()
    return Plan(grid, shape, source, deployment, parameters, simulate(shape, deployment, parameters))


def window_bytes(datasets: Sequence[str], grid: Grid, parameters: Parameters | None = None, *,
                 max_workers: int | None = None) -> list[int]:
    """Compressed bytes each window of ``grid`` reads, summed over ``datasets``.

    Each scene is opened once and its TIFF block byte counts summed over the blocks each window
    touches (:func:`temporal_median.raster.read.window_block_bytes`, the figure compute_tile
    reports as ``bytes_read``). A scene whose counts GDAL does not give (not a TIFF) is counted
    at the measured ratio ``input_bytes_per_sample``.
    """
    # rasterio and GDAL load only here: fanout's cold start and status calls never need them.
    from concurrent.futures import ThreadPoolExecutor

    import rasterio

    from temporal_median.raster.gdal import gdal_env, read_threads
    from temporal_median.raster.read import open_scene

    try:
        from temporal_median.raster.read import window_block_bytes
    except ImportError:  # its name before raster/read.py made it public
        from temporal_median.raster.read import _window_block_bytes as window_block_bytes

    parameters = parameters or Parameters()
    windows = [window for _, window in grid.windows()]

    def scene(url: str) -> list[int]:
        with rasterio.Env(), open_scene(url) as ds:
            counts = [window_block_bytes(ds, window) for window in windows]
        if not any(counts):
            counts = [int(w.width * w.height * parameters.input_bytes_per_sample) for w in windows]
        return counts

    with gdal_env(), ThreadPoolExecutor(read_threads(list(datasets), max_workers)) as pool:
        per_scene = list(pool.map(scene, datasets))
    return [sum(column) for column in zip(*per_scene)] if per_scene else [0] * len(windows)


def area_window_bytes(layout: Layout, parameters: Parameters | None = None, *,
                      max_workers: int | None = None) -> list[int]:
    """Compressed bytes each window of an area's ``layout`` reads, in ``layout.grid``'s order.

    A window reads only the scenes the layout gives it; of each, the blocks under the window's
    footprint in the scene's pixel space (:func:`scene_part`), as compute_area_tile counts them
    in ``bytes_read``. Each scene is opened once. A scene whose counts GDAL does not give is
    counted at ``input_bytes_per_sample`` over its parts' pixels.
    """
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from rasterio.crs import CRS

    from temporal_median.raster.gdal import gdal_env, read_threads
    from temporal_median.raster.read import open_scene, window_block_bytes

    parameters = parameters or Parameters()
    tiles = list(layout.grid.windows())
    readers: dict[int, list[int]] = {}  # scene index -> the windows (positions in tiles) reading it
    for k, (tile, _) in enumerate(tiles):
        for j in layout.windows.get(tile, ()):
            readers.setdefault(j, []).append(k)
    out_crs = CRS.from_user_input(layout.raster.crs)

    def scene(j: int) -> list[int]:
        with rasterio.Env(), open_scene(layout.scenes[j].url) as ds:
            same = ds.crs == out_crs
            parts = [scene_part(ds, layout.raster, tiles[k][1], same) for k in readers[j]]
            counts = [window_block_bytes(ds, part) if part is not None else 0 for part in parts]
        if not any(counts):
            counts = [int(p.width * p.height * parameters.input_bytes_per_sample) if p else 0 for p in parts]
        return counts

    sizes = [0] * len(tiles)
    with gdal_env(), ThreadPoolExecutor(read_threads([s.url for s in layout.scenes], max_workers)) as pool:
        for j, counts in zip(readers, pool.map(scene, list(readers))):
            for k, count in zip(readers[j], counts):
                sizes[k] += count
    return sizes


def scene_part(ds, raster: RasterGrid, window: Window, same_crs: bool) -> Window | None:
    """The part of an open scene ``ds`` that ``window`` of the output ``raster`` reads, as
    :func:`temporal_median.raster.warp.warp_scene` reads it: a plain window cut to the scene when the
    scene is on the output's pixel grid (:func:`~temporal_median.raster.warp.aligned_offset`), else
    the scene's pixels under the window's footprint (:func:`~temporal_median.raster.warp.source_window`).
    None when the two do not meet."""
    from temporal_median.raster.warp import aligned_offset, aligned_part, source_window

    offset = aligned_offset(ds.transform.to_gdal(), raster) if same_crs else None
    if offset is None:
        return source_window(raster, window, ds.crs, ds.transform, ds.width, ds.height)
    return aligned_part(offset, ds.width, ds.height, window)


def _area_message(layout: Layout, tile, window: Window, method: str, destination: str, work: str) -> WindowMessage:
    """An area window's message, as the manifest builds it: its scenes, grouped by observation."""
    chosen = layout.windows.get(tile, ())
    position = {index: i for i, index in enumerate(chosen)}
    groups = (tuple(position[i] for i in group if i in position) for group in layout.observations)
    return WindowMessage("job-plan", tile, window, method, tuple(layout.scenes[i].url for i in chosen), destination,
                         work, layout.raster, observations=tuple(g for g in groups if g))
