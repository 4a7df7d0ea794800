"""An area's layout: its output grid, the scenes each window reads, and which scenes are one acquisition."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Sequence

import numpy as np

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import Grid, RasterGrid
from temporal_median.job.area import Area
from temporal_median.raster.gdal import gdal_env, read_threads
from temporal_median.raster.read import probe, shutdown, wait_all
from temporal_median.raster.warp import (
    area_grid,
    bounds_in,
    check_scene_type,
    crs_text,
    grid_bounds,
    outline_in,
    parse_crs,
    utm_crs,
    window_bounds,
)
from temporal_median.scenes.scene import Scene

_WGS84 = "EPSG:4326"
#: Output pixels a window is grown by before its footprint test: the outline's points lie on the
#: scene's true edges, and the curve between two of them strays far less from their chord.
_MARGIN_PIXELS = 2


@dataclass(frozen=True)
class Footprint:
    """Where a scene lies, in the output grid's CRS: its box, and the convex hull of its outline.

    A scene of another CRS is a turned, slightly curved quadrilateral there, and its box holds
    corners it does not cover: windows there would read it for nothing but nodata.
    """

    url: str
    bounds: tuple
    hull: tuple = ()  # counter-clockwise (x, y) vertices; () when the box is the footprint

    @classmethod
    def of(cls, url: str, box: tuple, crs: str, out_crs: str) -> "Footprint":
        """The footprint of a scene's ``box`` in its ``crs``, on the output CRS."""
        bounds = bounds_in(box, crs, out_crs)
        return cls(url, bounds, _convex_hull(outline_in(box, crs, out_crs)) if crs != out_crs else ())

    def touches(self, bounds: tuple, margin: float = 0.0) -> bool:
        """True if the footprint's box overlaps the box ``bounds`` by more than an edge, and its
        hull meets ``bounds`` grown by ``margin``."""
        return bool(self.touching(np.asarray([bounds], float), margin)[0])

    def touching(self, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """:meth:`touches` of each of ``boxes`` (n, 4) at once: (n,) bool."""
        w, s, e, n = self.bounds
        west, south, east, north = boxes.T
        touch = (w < east) & (west < e) & (s < north) & (south < n)
        if self.hull and touch.any():
            hull = np.asarray(self.hull)
            x0, y0 = hull[:, 0, None, None], hull[:, 1, None, None]
            dx, dy = (np.roll(hull, -1, axis=0) - hull).T[:, :, None, None]
            xs = np.stack([west - margin, east + margin, east + margin, west - margin], axis=1)[None]
            ys = np.stack([south - margin, south - margin, north + margin, north + margin], axis=1)[None]
            # Every corner right of a counter-clockwise edge: that edge's line separates the two.
            separated = ((dx * (ys - y0) - dy * (xs - x0)) <= 0).all(axis=2).any(axis=0)
            touch &= ~separated
        return touch


def _convex_hull(points) -> tuple:
    """Counter-clockwise convex hull of points (Andrew's monotone chain)."""
    points = sorted(set(points))

    def half(seq):
        chain = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(points), half(reversed(points))
    return tuple(lower[:-1] + upper[:-1])


def solar_day(moment: datetime, longitude: float) -> date:
    """The local solar day of an acquisition: UTC shifted by the longitude (15 degrees an hour).

    Neighbouring tiles of one pass, taken seconds apart, share it; as odc-stac's
    ``groupby="solar_day"`` defines it.
    """
    return (moment + timedelta(hours=longitude / 15.0)).date()


@dataclass(frozen=True)
class Layout:
    """Where an area job's windows are, and what each reads.

    Attributes
    ----------
    raster : RasterGrid
        The output grid.
    grid : Grid
        Its windows.
    scenes : tuple of Scene
        The scenes whose footprint touches the area, grouped by acquisition: the scenes of one
        observation are consecutive, observations in acquisition order.
    observations : tuple of tuple of int
        Indices into ``scenes``, one group per acquisition (solar day and platform), each in
        (acquisition time, URL) order: the order in which the fuser takes a pixel's first
        valid sample.
    windows : dict
        TileId -> indices into ``scenes`` of those whose footprint touches the window.
    outside : tuple of Scene
        Scenes kept by the selection whose footprint misses the area.
    """

    raster: RasterGrid
    grid: Grid
    scenes: tuple
    observations: tuple
    windows: dict
    outside: tuple

    def to_dict(self, area: Area | None) -> dict:
        """The manifest's ``area``: the request's fields, the observations, each window's scenes."""
        return {
            "request": area.to_dict() if area else None,
            "crs": self.raster.crs,
            "resolution": abs(self.raster.transform[0]),
            "bounds": list(grid_bounds(self.raster)),
            "observations": [list(group) for group in self.observations],
            "windows": {str(tile): list(indices) for tile, indices in self.windows.items()},
            "outside": [scene.name for scene in self.outside],
        }


def plan_layout(
    scenes: Sequence[Scene], area: Area | None, tile_size: int, *, max_windows: int, max_workers: int | None = None
) -> Layout:
    """The layout of an area job over ``scenes`` (kept by the selection, in acquisition order).

    Every scene's header is read (concurrently) for its grid. The output grid is ``area``'s,
    its missing parts filled in: the CRS the scenes share, else the UTM zone of the area's
    centre; the finest of the scenes' pixel sizes in that CRS; the union of the scenes'
    footprints. Pixel edges fall on multiples of the resolution (:func:`area_grid`).

    Raises
    ------
    InputMismatch
        A scene that is not 3-band uint8 or has no CRS (naming it).
    InvalidRequest
        Naming the field: an unknown ``crs``; a ``resolution`` coarser than the area; an area
        touching no scene (``bbox``); more windows than ``max_windows``.
    """
    urls = [scene.url for scene in scenes]
    with gdal_env():
        pool = ThreadPoolExecutor(read_threads(urls, max_workers), thread_name_prefix="tm-open")
        try:
            futures = [pool.submit(probe, url, None) for url in urls]
            wait_all(futures)
        finally:
            shutdown(pool)
    facts = [future.result() for future in futures]
    for scene, fact in zip(scenes, facts):
        check_scene_type(fact, scene.url)
    boxes = [_scene_box(scene, fact) for scene, fact in zip(scenes, facts)]  # in the scene's own CRS

    if area is not None and area.crs:
        crs = parse_crs(area.crs)
    elif len({fact.grid.crs for fact in facts}) == 1:
        crs = parse_crs(facts[0].grid.crs, "crs of the scenes")
    else:
        west, south, east, north = area.bbox if area and area.bbox else _union(
            bounds_in(box, fact.grid.crs, _WGS84) for box, fact in zip(boxes, facts)
        )
        crs = utm_crs((west + east) / 2, (south + north) / 2)
    out_crs = crs_text(crs)
    footprints = [Footprint.of(s.url, box, f.grid.crs, out_crs) for s, box, f in zip(scenes, boxes, facts)]
    if area is not None and area.resolution:
        resolution = area.resolution
    else:
        resolution = min(_pixel_size(fact, fp, out_crs) for fact, fp in zip(facts, footprints))
    bounds = bounds_in(area.bbox, _WGS84, out_crs) if area and area.bbox else _union(fp.bounds for fp in footprints)
    raster = area_grid(bounds, crs, resolution)
    grid = Grid(raster.width, raster.height, tile_size)
    if len(grid) > max_windows:
        field = "bbox" if area and area.bbox else "resolution"
        raise InvalidRequest(
            f"'{field}': the output grid is {raster.width} x {raster.height} pixels, {len(grid)} windows of "
            f"{tile_size}; at most {max_windows} (TM_MAX_WINDOWS) are allowed: a smaller area or a coarser resolution"
        )

    extent, margin = grid_bounds(raster), _MARGIN_PIXELS * resolution
    inside = [i for i, fp in enumerate(footprints) if fp.touches(extent, margin)]
    if not inside:
        raise InvalidRequest("'bbox': the area touches no scene's footprint")
    outside = tuple(scenes[i] for i in range(len(scenes)) if i not in set(inside))
    centres = {i: _centre_longitude(footprints[i].bounds, out_crs) for i in inside}
    ordered, observations = _group(scenes, inside, centres)
    tiles = list(grid.windows())
    boxes = np.asarray([window_bounds(raster, window) for _, window in tiles], float)
    touching = [footprints[i].touching(boxes, margin) for i in ordered]
    windows = {tile: tuple(j for j, touch in enumerate(touching) if touch[k]) for k, (tile, _) in enumerate(tiles)}
    return Layout(raster, grid, tuple(scenes[i] for i in ordered), observations, windows, outside)


def _scene_box(scene: Scene, fact) -> tuple:
    """A scene's footprint box in its own CRS: its file's bounds, cut to its item's bbox if any."""
    box = grid_bounds(fact.grid)
    if scene.bbox is None:
        return box
    item = bounds_in(scene.bbox, _WGS84, fact.grid.crs)
    cut = (max(box[0], item[0]), max(box[1], item[1]), min(box[2], item[2]), min(box[3], item[3]))
    return cut if cut[0] < cut[2] and cut[1] < cut[3] else box


def _union(boxes) -> tuple:
    boxes = list(boxes)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _pixel_size(fact, footprint: Footprint, out_crs: str) -> float:
    """A scene's pixel size in the output CRS's units (its own, when the CRS is the same)."""
    if fact.grid.crs == out_crs:
        return abs(fact.grid.transform[0])
    box = bounds_in(grid_bounds(fact.grid), fact.grid.crs, out_crs)
    return round((box[2] - box[0]) / fact.grid.width, 6)


def _centre_longitude(bounds: tuple, crs: str) -> float:
    west, _, east, _ = bounds_in(bounds, crs, _WGS84)
    return (west + east) / 2


def _group(scenes: Sequence[Scene], inside: list[int], longitudes: dict) -> tuple[list[int], tuple]:
    """Scene indices ordered so each acquisition's scenes are consecutive, and the groups."""
    groups: dict[tuple, list[int]] = {}
    for i in inside:
        scene = scenes[i]
        if scene.datetime is None:
            key = ("undated", scene.url)  # no time, no solar day: an acquisition of its own
        else:
            key = (solar_day(scene.datetime, longitudes[i]).isoformat(), scene.platform or "")
        groups.setdefault(key, []).append(i)
    # Scenes came in acquisition order (or input order when undated); groups keep it by their
    # first scene, members by (time, URL).
    ordered_groups = sorted(groups.values(), key=lambda members: min(inside.index(i) for i in members))
    ordered, observations = [], []
    for members in ordered_groups:
        members = sorted(members, key=lambda i: (scenes[i].datetime or datetime.min, scenes[i].url))
        observations.append(tuple(range(len(ordered), len(ordered) + len(members))))
        ordered.extend(members)
    return ordered, tuple(observations)
