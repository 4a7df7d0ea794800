"""A job's plan before it runs: its windows, scenes and bytes to read, and its simulated wall time and cost."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from temporal_median.base.grid import Grid, RasterGrid
from temporal_median.base.methods import DEFAULT_METHOD
from temporal_median.base.settings import Settings
from temporal_median.job.messages import WindowMessage
from temporal_median.job.paths import JobPaths
from temporal_median.plan.deployment import Deployment
from temporal_median.plan.model import JobShape, Simulation, WindowShape
from temporal_median.plan.parameters import Parameters
from temporal_median.plan.simulate import simulate

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
             parameters: Parameters | None = None, max_workers: int | None = None) -> Plan:
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

    Returns
    -------
    Plan
        Windows, scenes and bytes per window from each COG's block byte counts, and the
        simulated wall time (POST to job.json), cost and bound.
    """
    datasets = list(datasets)
    parameters = parameters or Parameters()
    sizes = window_bytes(datasets, grid, parameters, max_workers=max_workers)
    work = settings.work_url
    paths = JobPaths.of(work, "job-plan")
    message_bytes = sum(
        len(WindowMessage("job-plan", tile, window, method, tuple(datasets), str(paths.tile(tile)), work,
                          raster).to_bytes())
        for tile, window in grid.windows()
    )
    windows = tuple(WindowShape(str(tile), window.width * window.height, len(datasets), size)
                    for (tile, window), size in zip(grid.windows(), sizes))
    shape = JobShape(windows, method, message_bytes)
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
