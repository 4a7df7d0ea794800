"""Generating a series: each scene and its SCL drawn strip by strip and written, then truth, items and series.json."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from .cog import write_cog
from .land import Ground
from .scl import Classifier
from .series import (
    AREA_JSON,
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    DEFAULT_PIXEL_SIZE,
    GRANULE,
    GROUND_TRUTH,
    ITEMS_JSON,
    PROFILES,
    SCL_DIR,
    SERIES_JSON,
    STRIP_ROWS,
    SceneInfo,
    SeriesInfo,
)
from .sky import Sky, acquisition_times, weather
from .stac import write_item_collection
from .truth import write_ground_truth


def draw_scene(ground: Ground, seed: int, pixel_size: float, index: int, doy: float, *,
               half: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw date ``index`` over the whole of ``ground``: the scene, its classification and counts.

    Parameters
    ----------
    ground : Ground
        The landscape.
    seed : int
        The series' seed.
    pixel_size : float
        Pixel size (shadow lengths are in metres).
    index : int
        The date's index in the series.
    doy : float
        The date, as days since 1 January.
    half : bool
        Classes at half the resolution (every second pixel of every second row, from the
        first), as the SCL is written; else at the scene's.

    Returns
    -------
    scene : (3, height, width) uint8 ndarray
    classes : uint8 ndarray
        The SCL classes (:class:`Classifier`).
    counts : dict
        ``clouds``, ``shadows``, ``nodata`` (pixels) and ``haze`` (bool).
    """
    width, height = ground.width, ground.height
    sky = Sky(weather(seed, index, width, height, pixel_size), width, height)
    table = ground.colour_table(doy)
    classifier = Classifier(sky, seed, index, table)
    scene = np.empty((3, height, width), np.uint8)
    classes = np.empty(((height + 1) // 2, (width + 1) // 2) if half else (height, width), np.uint8)
    clouds = shadows = nodata = 0
    for y0 in range(0, height, STRIP_ROWS):  # STRIP_ROWS is even: halves start on even rows
        y1 = min(height, y0 + STRIP_ROWS)
        scene[:, y0:y1], c, s = sky.strip(ground.colour(y0, y1, table, index), y0, y1)
        strip_classes = classifier.strip(ground, y0, y1)
        if half:
            classes[y0 // 2 : (y1 + 1) // 2] = strip_classes[::2, ::2]
        else:
            classes[y0:y1] = strip_classes
        clouds += c
        shadows += s
        nodata += int(np.count_nonzero(~scene[:, y0:y1].any(axis=0)))
    return scene, classes, {"clouds": clouds, "shadows": shadows, "nodata": nodata, "haze": bool(sky.w.haze)}


def scene_info(name: str, moment: dt.datetime, counts: dict, total: int) -> SceneInfo:
    """A scene's description from its drawing's ``counts`` over ``total`` pixels."""
    return SceneInfo(
        name=name, acquired=moment.isoformat() + "Z",
        cloud_fraction=round(counts["clouds"] / total, 6), shadow_fraction=round(counts["shadows"] / total, 6),
        nodata_fraction=round(counts["nodata"] / total, 6), haze=counts["haze"],
    )


def _generate_scene(ground: Ground, series: SeriesInfo, times: list, index: int, doy: float) -> SceneInfo:
    scene, scl, counts = draw_scene(ground, series.seed, series.pixel_size, index, doy)
    name = os.path.basename(series.paths[index])
    write_cog(series.paths[index], scene, series.transform, series.crs)
    del scene  # free it before the SCL's COG copy
    write_cog(series.scl_paths[index], scl[None], series.scl_transform, series.crs)
    return scene_info(name, times[index], counts, ground.width * ground.height)


def is_complete(series: SeriesInfo, ground_truth: bool) -> bool:
    """Whether every file of ``series`` is there (the ground truth only if ``ground_truth``)."""
    return all(os.path.exists(p) for p in series.paths + series.scl_paths) and (
        not ground_truth or os.path.exists(series.ground_truth_path)
    )


def remove_series(out_dir: str) -> None:
    """Remove what a series writes in ``out_dir`` (and nothing else): its scenes, SCLs, truth, JSON files."""
    for name in os.listdir(out_dir):
        if name in (SERIES_JSON, ITEMS_JSON) or (name.endswith("_TCI.tif") and name.startswith("T")):
            os.unlink(os.path.join(out_dir, name))
    scl_dir = os.path.join(out_dir, SCL_DIR)
    if os.path.isdir(scl_dir):
        for name in os.listdir(scl_dir):
            if name.endswith("_SCL.tif") and name.startswith("T"):
                os.unlink(os.path.join(scl_dir, name))
    if os.path.exists(os.path.join(out_dir, GROUND_TRUTH)):
        os.unlink(os.path.join(out_dir, GROUND_TRUTH))


def prepare_dirs(out_dir: str, ground_truth: bool) -> None:
    """Create ``out_dir`` and its subfolders (SCLs, and the truth's if ``ground_truth``)."""
    os.makedirs(os.path.join(out_dir, SCL_DIR), exist_ok=True)
    if ground_truth:
        os.makedirs(os.path.dirname(os.path.join(out_dir, GROUND_TRUTH)), exist_ok=True)


def write_series_json(series: SeriesInfo) -> None:
    """Write series.json, last: its presence means the series is complete."""
    tmp = os.path.join(series.out_dir, f".{SERIES_JSON}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(series.to_dict(), f, indent=1)
    os.replace(tmp, os.path.join(series.out_dir, SERIES_JSON))


def check_parameters(granule: str, width, height, pixel_size, year: int, crs: str) -> str:
    """Validate a series' parameters; returns the CRS as a string (e.g. ``EPSG:32631``).

    Raises
    ------
    ValueError
        Naming the parameter and its bad value.
    """
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if not GRANULE.match(granule or ""):
        raise ValueError(f"granule must look like T31TCJ, got {granule!r}")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or not 16 <= value <= 100_000:
            raise ValueError(f"{name} must be an integer between 16 and 100000, got {value!r}")
    if not (isinstance(pixel_size, (int, float)) and pixel_size > 0 and math.isfinite(pixel_size)):
        raise ValueError(f"pixel size must be a positive number, got {pixel_size!r}")
    if not 1900 <= year <= 2100:
        raise ValueError(f"year must be between 1900 and 2100, got {year!r}")
    try:
        return CRS.from_user_input(crs).to_string()
    except CRSError as exc:
        raise ValueError(f"unknown CRS {crs!r}: {exc}") from None


def generate_series(
    out_dir: str,
    *,
    scenes: int = PROFILES["demo"]["scenes"],
    width: int = PROFILES["demo"]["width"],
    height: int = PROFILES["demo"]["height"],
    crs: str = DEFAULT_CRS,
    pixel_size: float = DEFAULT_PIXEL_SIZE,
    origin: tuple = DEFAULT_ORIGIN,
    seed: int = 0,
    granule: str = "T31TCJ",
    year: int = 2023,
    force: bool = False,
    ground_truth: bool = True,
    workers: int | None = None,
    log=None,
) -> SeriesInfo:
    """Write a synthetic series into ``out_dir`` (see the package docstring) and describe it.

    If ``out_dir`` already holds a complete series with the same parameters it is reused as is;
    a different one is an error unless ``force`` (then its files are replaced).

    Parameters
    ----------
    out_dir : str
        Directory to write; created if needed.
    scenes, width, height : int
        Number of dates and size in pixels.
    crs : str
        CRS of every scene, e.g. ``"EPSG:32631"``.
    pixel_size : float
        Pixel size in CRS units.
    origin : (float, float)
        Upper-left corner (x, y).
    seed : int
        Everything is a deterministic function of it.
    granule : str
        Tile name used in file names, like ``T31TCJ``.
    year : int
        Year of the acquisition dates.
    force : bool
        Replace a different series already in ``out_dir``.
    ground_truth : bool
        Also write truth/ground_truth.tif.
    workers : int, optional
        Scenes generated concurrently (default: 2, or 1 on one CPU).
    log : callable, optional
        Called with progress lines.

    Returns
    -------
    SeriesInfo

    Raises
    ------
    ValueError
        On bad parameters, or an existing different series without ``force``.
    """
    crs = check_parameters(granule, width, height, pixel_size, year, crs)
    origin = (float(origin[0]), float(origin[1]))
    times = acquisition_times(scenes, year, seed)
    log = log or (lambda line: None)

    wanted = SeriesInfo(out_dir, granule, int(year), int(seed), width, height, crs, float(pixel_size), origin,
                        scenes=tuple(SceneInfo("", "", 0, 0, 0, False) for _ in range(scenes)))
    existing = SeriesInfo.load(out_dir)
    same = existing is not None and existing.parameters() == wanted.parameters()
    if same and not force and is_complete(existing, ground_truth):
        log(f"{out_dir}: series already there ({len(existing.scenes)} scenes), reusing it")
        if not os.path.exists(existing.items_path):  # a series made before items.json existed
            write_item_collection(existing)
        return existing
    if existing is not None and not same and not force:
        raise ValueError(f"{out_dir} already holds a different series; use --force to replace it")
    if os.path.isdir(out_dir) and not force and existing is None and any(
        n.endswith("_TCI.tif") for n in os.listdir(out_dir)
    ):
        raise ValueError(f"{out_dir} already holds scenes but no {SERIES_JSON}; use --force to replace them")
    if not force and os.path.exists(os.path.join(out_dir, AREA_JSON)):
        raise ValueError(f"{out_dir} already holds a multi-tile series; use --force to replace it")
    if same and not force:  # the same series, but some of its files are missing (e.g. made before SCLs)
        log(f"{out_dir}: series incomplete, writing it again")
    os.makedirs(out_dir, exist_ok=True)
    if force or same:
        remove_series(out_dir)
        if os.path.exists(os.path.join(out_dir, AREA_JSON)):
            os.unlink(os.path.join(out_dir, AREA_JSON))
    prepare_dirs(out_dir, ground_truth)

    started = time.perf_counter()
    workers = workers or (2 if (os.cpu_count() or 1) > 1 else 1)
    ground = Ground(seed, width, height, workers)
    names = [f"{granule}_{t:%Y%m%dT%H%M%S}_TCI.tif" for t in times]
    doys = [(t - dt.datetime(year, 1, 1)).total_seconds() / 86400.0 for t in times]
    named = replace(wanted, scenes=tuple(SceneInfo(n, "", 0, 0, 0, False) for n in names))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sample") as pool:
        futures = [pool.submit(_generate_scene, ground, named, times, i, doys[i]) for i in range(scenes)]
        results = []
        for i, future in enumerate(futures):
            results.append(future.result())
            log(f"  {names[i]}  clouds {results[-1].cloud_fraction:6.1%}  nodata {results[-1].nodata_fraction:6.1%}")
    if ground_truth:
        write_ground_truth(ground, doys, os.path.join(out_dir, GROUND_TRUTH), wanted.transform, crs)
    series = replace(wanted, scenes=tuple(results))
    write_item_collection(series)
    write_series_json(series)
    log(f"{out_dir}: {scenes} scenes of {width} x {height} in {time.perf_counter() - started:.1f} s")
    return series
