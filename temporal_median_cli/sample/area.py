"""A multi-tile series: overlapping tiles in two UTM zones, each date drawn once over the area and cut per tile.

The tiles are small MGRS-like tiles (10 m pixels, 1000 x 1000 by default) around the edge of
UTM zones 30 and 31 at 0 deg E, 44.3 deg N: tile A in EPSG:32630 just west of 0 deg E; tile B
in EPSG:32631 east of it, overlapping A by about a tenth of the width; with three tiles, C in
EPSG:32631 south of B, overlapping B by a tenth of the height, across a 100 km MGRS row (so
B and C have different MGRS squares, like T31TBK and T31TBJ). A and B straddle the zone
edge: their grids are rotated about 4 degrees from each other.

Each date is drawn once (ground, clouds, shadows, haze, swath gap and SCL classes) on an
*area frame*: a 10 m grid in EPSG:32631 covering every tile. Each tile's scene, SCL and
ground truth are the frame's pixels at the tile's pixel centres (nearest neighbour), so the
tiles of one date agree wherever they overlap, up to that resampling; tiles in the frame's
CRS are exact cuts of it. All tiles share the dates, hence each pass's datetime and platform.

Files, in OUT_DIR: one folder per tile (``T30TYP/`` ...), each a complete single-tile series
(scenes, ``scl/``, ``truth/``, its ``items.json`` and ``series.json``); ``items.json``, the
items of every tile (by date, then tile); ``area.json``, written last.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from .cog import write_cog
from .generate import (
    check_parameters,
    draw_scene,
    is_complete,
    prepare_dirs,
    remove_series,
    scene_info,
    write_series_json,
)
from .land import Ground
from .scl import CLOUD_SHADOWS
from .series import (
    AREA_JSON,
    GROUND_TRUTH,
    ITEMS_JSON,
    SERIES_JSON,
    SceneInfo,
    SeriesInfo,
)
from .sky import acquisition_times
from .stac import stac_items, write_item_collection, write_items
from .truth import ground_truth as truth_of

FRAME_CRS = "EPSG:32631"
PIXEL_SIZE = 10.0
#: A 100 km MGRS row boundary of zone 31 (northing, m): B lies north of it, C south.
_ROW_EDGE = 4_900_000.0
#: Overlap of neighbouring tiles, as a share of their width (or height), as MGRS tiles have.
OVERLAP = 0.1


@dataclass(frozen=True)
class AreaInfo:
    """A generated multi-tile series: where it is, its parameters and its tiles' series."""

    out_dir: str
    parameters: dict
    tiles: tuple

    @property
    def items_path(self) -> str:
        """The ItemCollection of every tile's scenes."""
        return os.path.join(self.out_dir, ITEMS_JSON)

    @classmethod
    def load(cls, out_dir: str) -> AreaInfo | None:
        """The area described by OUT_DIR/area.json with its tiles' series, or None if any is missing."""
        try:
            with open(os.path.join(out_dir, AREA_JSON), encoding="utf-8") as f:
                data = json.load(f)
            tiles = tuple(SeriesInfo.load(os.path.join(out_dir, granule)) for granule in data["tiles"])
            parameters = data["parameters"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return None if any(t is None for t in tiles) else cls(out_dir, parameters, tiles)


def _snap(value: float, step: float = PIXEL_SIZE) -> float:
    return float(round(value / step) * step)


def mgrs_granule(zone: int, x: float, y: float, latitude: float) -> str:
    """The MGRS 100 km square holding (x, y) of UTM ``zone`` (north), as a granule name like ``T31TCJ``."""
    band = "CDEFGHJKLMNPQRSTUVWX"[min(int((latitude + 80) // 8), 19)]
    column = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(zone - 1) % 3][int(x // 100_000) - 1]
    row = "ABCDEFGHJKLMNPQRSTUV"[(int(y // 100_000) + (5 if zone % 2 == 0 else 0)) % 20]
    return f"T{zone:02d}{band}{column}{row}"


def tile_layout(tiles: int, width: int, height: int) -> list[dict]:
    """Where the tiles are: per tile its ``granule``, ``crs`` and ``origin`` (upper-left x, y).

    Parameters
    ----------
    tiles : int
        2 (A and B) or 3 (A, B and C); see the module docstring.
    width, height : int
        Size of every tile in 10 m pixels.

    Returns
    -------
    list of dict
        In the order A, B, C.
    """
    from rasterio.warp import transform

    over_x, over_y = round(OVERLAP * width), round(OVERLAP * height)
    # B: its west edge on 0 deg E, its south edge half an overlap below the row boundary.
    _, (lat,) = transform(FRAME_CRS, "EPSG:4326", [262_000.0], [_ROW_EDGE])
    (x_edge,), _ = transform("EPSG:4326", FRAME_CRS, [0.0], [lat])
    b_south = _ROW_EDGE - (over_y // 2) * PIXEL_SIZE
    b = {"crs": FRAME_CRS, "origin": (_snap(x_edge), b_south + height * PIXEL_SIZE)}
    # A: in zone 30, its east edge an overlap east of B's west edge, centred on B's rows.
    b_mid_y = b_south + height * PIXEL_SIZE / 2
    (xa,), (ya,) = transform(FRAME_CRS, "EPSG:32630", [b["origin"][0]], [b_mid_y])
    a = {"crs": "EPSG:32630", "origin": (_snap(xa + (over_x - width) * PIXEL_SIZE), _snap(ya + height * PIXEL_SIZE / 2))}
    # C: below B, overlapping it by a tenth of the height.
    c = {"crs": FRAME_CRS, "origin": (b["origin"][0], b_south + over_y * PIXEL_SIZE)}
    layout = [a, b, c][:tiles]
    for tile in layout:
        x0, y0 = tile["origin"]
        cx, cy = x0 + width * PIXEL_SIZE / 2, y0 - height * PIXEL_SIZE / 2
        _, (clat,) = transform(tile["crs"], "EPSG:4326", [cx], [cy])
        tile["granule"] = mgrs_granule(int(tile["crs"][-2:]), cx, cy, clat)
    return layout


def _frame(series: list[SeriesInfo]) -> tuple[float, float, int, int]:
    """The area frame in FRAME_CRS covering every tile, 2 pixels of margin: (x0, y0, width, height)."""
    from rasterio.warp import transform_bounds

    boxes = []
    for s in series:
        x0, y0 = s.origin
        boxes.append(transform_bounds(s.crs, FRAME_CRS, x0, y0 - s.height * s.pixel_size, x0 + s.width * s.pixel_size,
                                      y0, densify_pts=21))
    west = math.floor(min(b[0] for b in boxes) / PIXEL_SIZE) - 2
    north = math.ceil(max(b[3] for b in boxes) / PIXEL_SIZE) + 2
    east = math.ceil(max(b[2] for b in boxes) / PIXEL_SIZE) + 2
    south = math.floor(min(b[1] for b in boxes) / PIXEL_SIZE) - 2
    return west * PIXEL_SIZE, north * PIXEL_SIZE, east - west, north - south


def index_map(series: SeriesInfo, frame: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) int arrays of the tile's shape: the frame pixel under each tile pixel's centre."""
    from rasterio.warp import transform

    fx0, fy0, fw, fh = frame
    cols, rows = np.meshgrid(np.arange(series.width), np.arange(series.height))
    xs = series.origin[0] + (cols + 0.5) * series.pixel_size
    ys = series.origin[1] - (rows + 0.5) * series.pixel_size
    if series.crs != FRAME_CRS:
        tx, ty = transform(series.crs, FRAME_CRS, xs.ravel(), ys.ravel())
        xs, ys = np.asarray(tx).reshape(xs.shape), np.asarray(ty).reshape(ys.shape)
    ix = np.floor((xs - fx0) / PIXEL_SIZE).astype(np.int32)
    iy = np.floor((fy0 - ys) / PIXEL_SIZE).astype(np.int32)
    if ix.min() < 0 or iy.min() < 0 or ix.max() >= fw or iy.max() >= fh:  # the frame covers every tile
        raise AssertionError(f"tile {series.granule} is not inside the area frame")
    return iy, ix


def generate_area(
    out_dir: str,
    *,
    tiles: int = 3,
    scenes: int = 24,
    width: int = 1000,
    height: int = 1000,
    seed: int = 0,
    year: int = 2023,
    force: bool = False,
    ground_truth: bool = True,
    workers: int | None = None,
    log=None,
) -> AreaInfo:
    """Write a multi-tile series into ``out_dir`` (see the module docstring) and describe it.

    A complete area with the same parameters is reused; a different one (or a single-tile
    series) in ``out_dir`` is an error unless ``force``.

    Parameters
    ----------
    out_dir : str
        Directory to write; created if needed.
    tiles : int
        2 or 3.
    scenes, width, height : int
        Number of dates, and each tile's size in 10 m pixels.
    seed, year : int
        As for :func:`generate_series`.
    force : bool
        Replace what ``out_dir`` holds.
    ground_truth : bool
        Also write each tile's truth/ground_truth.tif.
    workers : int, optional
        Dates drawn concurrently (default: 2, or 1 on one CPU).
    log : callable, optional
        Called with progress lines.

    Returns
    -------
    AreaInfo

    Raises
    ------
    ValueError
        On bad parameters, or something else in ``out_dir`` without ``force``.
    """
    if tiles not in (2, 3):
        raise ValueError(f"tiles must be 2 or 3, got {tiles!r}")
    check_parameters("T31TCJ", width, height, PIXEL_SIZE, year, FRAME_CRS)
    times = acquisition_times(scenes, year, seed)
    log = log or (lambda line: None)
    parameters = {"tiles": tiles, "scenes": scenes, "width": width, "height": height, "seed": int(seed),
                  "year": int(year)}
    existing = AreaInfo.load(out_dir)
    if existing is not None and existing.parameters == parameters and not force and all(
        is_complete(t, ground_truth) for t in existing.tiles
    ):
        log(f"{out_dir}: area already there ({tiles} tiles of {scenes} scenes), reusing it")
        return existing
    taken = os.path.isdir(out_dir) and any(n in (AREA_JSON, SERIES_JSON) or n.endswith("_TCI.tif")
                                           for n in os.listdir(out_dir))
    if taken and not force and (existing is None or existing.parameters != parameters):
        raise ValueError(f"{out_dir} already holds a different series; use --force to replace it")
    layout = tile_layout(tiles, width, height)
    names = [[f"{t['granule']}_{moment:%Y%m%dT%H%M%S}_TCI.tif" for moment in times] for t in layout]
    series = [
        SeriesInfo(os.path.join(out_dir, t["granule"]), t["granule"], int(year), int(seed), width, height, t["crs"],
                   PIXEL_SIZE, t["origin"], scenes=tuple(SceneInfo(n, "", 0, 0, 0, False) for n in tile_names),
                   area=parameters)
        for t, tile_names in zip(layout, names)
    ]
    os.makedirs(out_dir, exist_ok=True)
    for name in (AREA_JSON, ITEMS_JSON):
        if os.path.exists(os.path.join(out_dir, name)):
            os.unlink(os.path.join(out_dir, name))
    if os.path.exists(os.path.join(out_dir, SERIES_JSON)):
        remove_series(out_dir)
    for s in series + list(existing.tiles if existing is not None else ()):
        if os.path.isdir(s.out_dir):
            remove_series(s.out_dir)
    for s in series:
        prepare_dirs(s.out_dir, ground_truth)

    started = time.perf_counter()
    workers = workers or (2 if (os.cpu_count() or 1) > 1 else 1)
    frame = _frame(series)
    ground = Ground(seed, frame[2], frame[3], workers)
    maps = [index_map(s, frame) for s in series]
    doys = [(t - dt.datetime(year, 1, 1)).total_seconds() / 86400.0 for t in times]

    def one_date(i: int) -> list[SceneInfo]:
        scene, classes, counts = draw_scene(ground, seed, PIXEL_SIZE, i, doys[i], half=False)
        infos = []
        for s, (iy, ix) in zip(series, maps):
            tile_scene = scene[:, iy, ix]
            write_cog(s.paths[i], tile_scene, s.transform, s.crs)
            write_cog(s.scl_paths[i], classes[iy[::2, ::2], ix[::2, ::2]][None], s.scl_transform, s.crs)
            tile_counts = {
                "clouds": int(np.count_nonzero((tile_scene == 255).all(axis=0))),
                "shadows": int(np.count_nonzero(classes[iy, ix] == CLOUD_SHADOWS)),
                "nodata": int(np.count_nonzero(~tile_scene.any(axis=0))),
                "haze": counts["haze"],
            }
            infos.append(scene_info(os.path.basename(s.paths[i]), times[i], tile_counts, width * height))
        return infos

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sample-area") as pool:
        per_date = []
        for i, infos in enumerate(pool.map(one_date, range(scenes))):
            per_date.append(infos)
            log(f"  {times[i]:%Y-%m-%dT%H:%M:%S}  " + "  ".join(
                f"{info.name[:6]} clouds {info.cloud_fraction:6.1%}" for info in infos))
    if ground_truth:
        truth = truth_of(ground, doys)
        for s, (iy, ix) in zip(series, maps):
            write_cog(os.path.join(s.out_dir, GROUND_TRUTH), truth[:, iy, ix], s.transform, s.crs)
    series = [replace(s, scenes=tuple(infos[k] for infos in per_date)) for k, s in enumerate(series)]
    for s in series:
        write_item_collection(s)
        write_series_json(s)
    items = sorted((item for s in series for item in stac_items(s)),
                   key=lambda item: (item["properties"]["datetime"], item["properties"]["grid:code"]))
    write_items(os.path.join(out_dir, ITEMS_JSON), items)
    area = AreaInfo(out_dir, parameters, tuple(series))
    tmp = os.path.join(out_dir, f".{AREA_JSON}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"parameters": parameters, "tiles": [s.granule for s in series],
                   "frame": {"crs": FRAME_CRS, "origin": list(frame[:2]), "width": frame[2], "height": frame[3]}},
                  f, indent=1)
    os.replace(tmp, os.path.join(out_dir, AREA_JSON))
    log(f"{out_dir}: {tiles} tiles ({', '.join(s.granule for s in series)}) of {scenes} scenes of {width} x {height}"
        f" in {time.perf_counter() - started:.1f} s")
    return area
