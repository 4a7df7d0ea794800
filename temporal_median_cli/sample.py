"""`temporal-median sample`: a synthetic year of Sentinel-2-like TCI COGs, with its ground truth.

What a series holds (everything is a deterministic function of the seed):

* The ground: agricultural parcels on two rotated field patterns (wheat, maize, sunflower,
  meadow, rapeseed, fallow), each with its own seasonal colour curve shifted a little per
  parcel; forest and town patches; farm tracks along some parcel edges, two roads and a river;
  a smooth texture and +-2 of per-pixel sensor noise. Clean ground values stay in 1..254.
* Per date: saturated clouds (255 in all bands) from a multi-scale noise field, a thin
  bright fringe around them (valid but contaminated values), darker cloud shadows offset
  towards the sun, thin haze on about one date in seven, and on about one date in four a
  slanted swath edge with 0 (nodata) in all bands beyond it.
* Files, in OUT_DIR: ``{GRANULE}_{YYYYMMDDTHHMMSS}_TCI.tif`` (3-band uint8 COG, 512 blocks,
  lossless DEFLATE with the horizontal predictor, so 0 and 255 stay exact, unlike the course's
  JPEG); ``truth/ground_truth.tif`` (in a subdirectory, so that listing OUT_DIR for inputs
  finds the scenes only): the luminance median of the *clean*, noise-free series, i.e. the
  same dates without clouds, fringes, shadows, haze, swath gaps or sensor noise, computed
  independently of temporal_median.compute.median; what a perfect composite of the cloudy series
  tends to. ``items.json``: a STAC ItemCollection with one item per scene (acquisition time,
  ``eo:cloud_cover`` of the clouds drawn, the scene as its ``visual`` asset, projection and
  grid), what a STAC API would answer for the series. ``series.json``: names, dates,
  geometry, seed and each scene's measured cloud / shadow / nodata fractions. series.json is
  written last, so its presence means the series is complete.

Scenes are generated one at a time in row strips, so the ``full`` profile (216 x 10980 x
10980) needs about one scene in memory, never the series.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

#: Default geometry per profile. The demo is 2600 x 2200 (not multiples of 1024, so the 3 x 3
#: window grid has 552- and 152-pixel edge windows) with 108 dates (every ~3.4 days: half the
#: real year's 216, so the stacks are deep enough that reading, not fixed costs, dominates).
PROFILES = {
    "demo": {"scenes": 108, "width": 2600, "height": 2200},
    "full": {"scenes": 216, "width": 10980, "height": 10980},
}
DEFAULT_CRS = "EPSG:32631"
DEFAULT_ORIGIN = (300000.0, 4900020.0)
DEFAULT_PIXEL_SIZE = 10.0
SERIES_JSON = "series.json"
ITEMS_JSON = "items.json"
GROUND_TRUTH = "truth/ground_truth.tif"
#: STAC extensions the sample's items use (the versions pystac writes and reads).
STAC_EXTENSIONS = (
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
)
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_STRIP_ROWS = 256
_GRANULE = re.compile(r"^T\d{2}[A-Z]{3}$")

# Land-cover classes and their colour through the year: (day of year, (R, G, B)) key points,
# interpolated cyclically. Values are TCI-like (vegetation dark green, soils brown).
_CURVES = {
    "wheat": [(15, (60, 85, 50)), (100, (55, 110, 45)), (150, (80, 120, 50)), (175, (150, 140, 80)),
              (200, (175, 160, 110)), (240, (130, 105, 80)), (290, (120, 95, 75)), (320, (85, 95, 65))],
    "maize": [(15, (125, 100, 80)), (120, (130, 105, 85)), (160, (95, 105, 70)), (200, (45, 95, 40)),
              (240, (55, 100, 45)), (270, (140, 125, 85)), (290, (120, 95, 75)), (340, (115, 95, 78))],
    "sunflower": [(15, (120, 98, 78)), (130, (115, 100, 75)), (170, (65, 100, 50)), (195, (190, 170, 60)),
                  (225, (110, 90, 60)), (260, (90, 75, 60)), (300, (120, 98, 78))],
    "meadow": [(15, (70, 95, 55)), (110, (60, 120, 50)), (170, (80, 115, 55)), (220, (125, 125, 80)),
               (280, (75, 105, 55)), (340, (70, 95, 55))],
    "rapeseed": [(15, (60, 95, 50)), (95, (80, 120, 50)), (110, (210, 200, 60)), (130, (120, 140, 60)),
                 (170, (150, 135, 85)), (200, (130, 110, 85)), (260, (90, 100, 60)), (300, (60, 95, 50))],
    "fallow": [(15, (110, 100, 80)), (120, (100, 105, 70)), (200, (135, 120, 90)), (300, (110, 100, 80))],
    "forest": [(15, (70, 70, 55)), (100, (45, 80, 40)), (150, (35, 75, 35)), (250, (40, 72, 36)),
               (300, (80, 70, 45)), (340, (70, 70, 55))],
    "urban": [(0, (140, 132, 125))],
    "water": [(15, (35, 55, 70)), (200, (40, 65, 60))],
    "road": [(0, (160, 158, 150))],
    "track": [(15, (150, 135, 110)), (200, (170, 155, 120))],
}
_CLASSES = tuple(_CURVES)
_CROPS = ("wheat", "maize", "sunflower", "meadow", "rapeseed", "fallow")
_CROP_WEIGHTS = (0.3, 0.2, 0.12, 0.18, 0.08, 0.12)
#: Texture amplitude (grey levels) per class.
_TEXTURE = {"wheat": 6, "maize": 6, "sunflower": 7, "meadow": 5, "rapeseed": 6, "fallow": 8,
            "forest": 14, "urban": 28, "water": 3, "road": 3, "track": 5}
#: Parcel variants: each parcel has one of these phenology shifts and brightness factors.
_VARIANTS = 16


@dataclass(frozen=True)
class SceneInfo:
    """One generated date and what it shows (fractions of the scene's pixels)."""

    name: str
    acquired: str  # ISO 8601, UTC
    cloud_fraction: float
    shadow_fraction: float
    nodata_fraction: float
    haze: bool


@dataclass(frozen=True)
class SeriesInfo:
    """A generated series: where it is, its geometry and its scenes in acquisition order."""

    out_dir: str
    granule: str
    year: int
    seed: int
    width: int
    height: int
    crs: str
    pixel_size: float
    origin: tuple
    scenes: tuple = field(default_factory=tuple)
    ground_truth: str = GROUND_TRUTH

    @property
    def transform(self) -> tuple:
        """Affine coefficients (a, b, c, d, e, f) of every scene."""
        return (self.pixel_size, 0.0, self.origin[0], 0.0, -self.pixel_size, self.origin[1])

    @property
    def paths(self) -> list[str]:
        """Scene paths in acquisition order."""
        return [os.path.join(self.out_dir, s.name) for s in self.scenes]

    @property
    def ground_truth_path(self) -> str:
        return os.path.join(self.out_dir, self.ground_truth)

    @property
    def items_path(self) -> str:
        """The series' STAC ItemCollection (see :func:`write_item_collection`)."""
        return os.path.join(self.out_dir, ITEMS_JSON)

    def parameters(self) -> dict:
        """What determines the content: equal parameters, equal files."""
        return {
            "granule": self.granule, "year": self.year, "seed": self.seed, "scenes": len(self.scenes),
            "width": self.width, "height": self.height, "crs": self.crs,
            "pixel_size": self.pixel_size, "origin": list(self.origin),
        }

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("out_dir")
        data["origin"] = list(self.origin)
        data["transform"] = list(self.transform)
        data["scenes"] = [asdict(s) for s in self.scenes]
        return data

    @classmethod
    def from_dict(cls, data: dict, out_dir: str) -> "SeriesInfo":
        return cls(
            out_dir=out_dir,
            granule=data["granule"],
            year=int(data["year"]),
            seed=int(data["seed"]),
            width=int(data["width"]),
            height=int(data["height"]),
            crs=data["crs"],
            pixel_size=float(data["pixel_size"]),
            origin=tuple(float(v) for v in data["origin"]),
            scenes=tuple(SceneInfo(**s) for s in data["scenes"]),
            ground_truth=data.get("ground_truth", GROUND_TRUTH),
        )

    @classmethod
    def load(cls, out_dir: str) -> "SeriesInfo | None":
        """The series described by OUT_DIR/series.json, or None if there is none (or it is unreadable)."""
        try:
            with open(os.path.join(out_dir, SERIES_JSON), encoding="utf-8") as f:
                return cls.from_dict(json.load(f), out_dir)
        except (OSError, ValueError, KeyError, TypeError):
            return None


# --------------------------------------------------------------------------------------------
# Noise and geometry helpers (all functions of absolute pixel coordinates, so strips join up)
# --------------------------------------------------------------------------------------------


def _lattice(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Random values in [-1, 1] on a lattice of ``cell`` pixels covering the image."""
    return rng.uniform(-1.0, 1.0, (int(height / cell) + 3, int(width / cell) + 3)).astype(np.float32)


def _sample(lattice: np.ndarray, cell: float, y0: int, y1: int, width: int) -> np.ndarray:
    """Smooth (smoothstep-bilinear) value noise of ``lattice`` at rows y0..y1: (rows, width) float32."""
    def axis(coords, size):
        pos = (coords + 0.5) / cell
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, size - 2)
        f = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
        return i0, f * f * (3 - 2 * f)

    iy, fy = axis(np.arange(y0, y1, dtype=np.float64), lattice.shape[0])
    ix, fx = axis(np.arange(width, dtype=np.float64), lattice.shape[1])
    rows = np.unique(np.concatenate([iy, iy + 1]))
    sub = lattice[rows]
    across = sub[:, ix] * (1 - fx) + sub[:, ix + 1] * fx
    lo = np.searchsorted(rows, iy)
    hi = np.searchsorted(rows, iy + 1)
    return across[lo] * (1 - fy)[:, None] + across[hi] * fy[:, None]


def _hash_noise(y0: int, y1: int, width: int, key: int) -> list[np.ndarray]:
    """Per band, (rows, width) float32 noise in {-1.5, -0.5, 0.5, 1.5} from a hash of (x, y, key).

    Addressable by coordinates, so every strip layout gives the same pixels.
    """
    y = np.arange(y0, y1, dtype=np.uint32)[:, None] * np.uint32(0x85EBCA77)
    x = np.arange(width, dtype=np.uint32)[None, :] * np.uint32(0x9E3779B1)
    h = (x ^ (y + np.uint32((key * 0x27D4EB2F) & 0xFFFFFFFF))) * np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x297A2D39)
    bands = []
    for shift in (8, 16, 24):
        noise = ((h >> np.uint32(shift)) & np.uint32(3)).astype(np.float32)
        noise -= 1.5
        bands.append(noise)
    return bands


def _boundaries(rng: np.random.Generator, lo: float, hi: float, min_w: float, max_w: float) -> np.ndarray:
    widths = rng.uniform(min_w, max_w, int((hi - lo) / min_w) + 2)
    return lo + np.concatenate([[0.0], np.cumsum(widths)])


class _Ground:
    """The static landscape of a series; ``colour(rows, doy)`` gives the clean ground of a date."""

    def __init__(self, seed: int, width: int, height: int, workers: int = 1):
        rng = np.random.default_rng([seed, 0])
        self.width, self.height = width, height
        extent = float(width + height)
        # Two field patterns at different angles, chosen by a large-scale zone noise.
        self.patterns = []
        for _ in range(2):
            angle = rng.uniform(-0.45, 0.45)
            self.patterns.append((
                math.cos(angle), math.sin(angle),
                _boundaries(rng, -extent, extent, 25, 110), _boundaries(rng, -extent, extent, 25, 110),
            ))
        self.zone_pattern = _lattice(rng, height, width, 700)
        self.zone_forest = _lattice(rng, height, width, 450)
        self.zone_urban = _lattice(rng, height, width, 380)
        self.tex_fine = _lattice(rng, height, width, 3)
        self.tex_mid = _lattice(rng, height, width, 14)
        # Parcel attributes, looked up by a hash of the parcel index.
        self.parcel_class = rng.choice([_CLASSES.index(c) for c in _CROPS], size=4096, p=_CROP_WEIGHTS).astype(np.uint8)
        self.parcel_variant = rng.integers(0, _VARIANTS, size=4096, dtype=np.uint8)
        self.variant_shift = rng.uniform(-15, 15, _VARIANTS)
        self.variant_bright = rng.uniform(0.88, 1.12, _VARIANTS)
        # Two straight roads and one meandering river.
        self.roads = [(rng.uniform(0, math.pi), rng.uniform(0.2, 0.8)) for _ in range(2)]
        self.river = (rng.uniform(0.25, 0.75) * height, rng.uniform(0.04, 0.1) * height, rng.uniform(0.6, 1.4) * width,
                      rng.uniform(0, 2 * math.pi), rng.uniform(4, 7))
        self.texture_amp = np.array([_TEXTURE[c] for c in _CLASSES], np.float32)
        self.class_of = {c: i for i, c in enumerate(_CLASSES)}
        # The static layers of the whole image, once (3 bytes a pixel); dates only recolour them.
        self.kv = np.empty((height, width), np.uint16)
        self.tex = np.empty((height, width), np.int8)

        def fill(y0):
            y1 = min(height, y0 + _STRIP_ROWS)
            self.kv[y0:y1], self.tex[y0:y1] = self.layers(y0, y1)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fill, range(0, height, _STRIP_ROWS)))

    def layers(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows y0..y1 of the static layers: (class * _VARIANTS + variant, texture offset in grey levels)."""
        w = self.width
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]
        pick = _sample(self.zone_pattern, 700, y0, y1, w) > 0
        kind = np.empty((y1 - y0, w), np.uint8)
        variant = np.empty((y1 - y0, w), np.uint8)
        track = np.zeros((y1 - y0, w), bool)
        for p, (cos, sin, bu, bv) in enumerate(self.patterns):
            u = xs * cos + ys * sin
            v = -xs * sin + ys * cos
            iu = np.searchsorted(bu, u)
            iv = np.searchsorted(bv, v)
            parcel = (iu * 7919 + iv * 104729 + p * 15485863) % 4096
            sel = pick if p == 0 else ~pick
            kind[sel] = self.parcel_class[parcel[sel]]
            variant[sel] = self.parcel_variant[parcel[sel]]
            # Farm tracks on one parcel edge in four.
            du = np.minimum(u - bu[iu - 1], bu[iu] - u)
            near_u = np.where(u - bu[iu - 1] < bu[iu] - u, iu - 1, iu)
            track |= sel & (du < 1.2) & (near_u % 4 == 0)
        tex = 0.65 * _sample(self.tex_fine, 3, y0, y1, w) + 0.35 * _sample(self.tex_mid, 14, y0, y1, w)
        forest = _sample(self.zone_forest, 450, y0, y1, w) > 0.42
        urban = _sample(self.zone_urban, 380, y0, y1, w) > 0.55
        kind[track] = self.class_of["track"]
        kind[forest] = self.class_of["forest"]
        kind[urban] = self.class_of["urban"]
        for angle, frac in self.roads:
            dist = np.abs((xs - frac * w) * math.sin(angle) - (ys - 0.5 * self.height) * math.cos(angle))
            kind[dist < 2.5] = self.class_of["road"]
        base, amp, period, phase, half_width = self.river
        centre = base + amp * np.sin(2 * math.pi * xs / period + phase)
        kind[np.abs(ys - centre) < half_width] = self.class_of["water"]
        kv = kind.astype(np.uint16) * _VARIANTS + variant
        return kv, np.rint(self.texture_amp[kind] * tex).astype(np.int8)

    def colour_table(self, doy: float) -> np.ndarray:
        """(3, classes * variants) float32 colours on day ``doy``, indexed like ``layers``' first array."""
        table = np.empty((3, len(_CLASSES), _VARIANTS), np.float32)
        for k, name in enumerate(_CLASSES):
            days = np.array([d for d, _ in _CURVES[name]], np.float64)
            cols = np.array([c for _, c in _CURVES[name]], np.float64)
            shift = self.variant_shift if name in _CROPS else np.zeros(_VARIANTS)
            bright = self.variant_bright if name in _CROPS or name == "forest" else np.ones(_VARIANTS)
            day = (doy - shift) % 365
            for band in range(3):
                table[band, k] = bright * np.interp(day, days, cols[:, band], period=365)
        return table.reshape(3, -1)

    def colour(self, y0: int, y1: int, table: np.ndarray, key: int) -> np.ndarray:
        """Clean ground of rows y0..y1 for a date's colour ``table``: (3, rows, width) float32 in 1..254."""
        kv, tex = self.kv[y0:y1], self.tex[y0:y1]
        noise = _hash_noise(y0, y1, self.width, key)
        out = np.empty((3, y1 - y0, self.width), np.float32)
        for band in range(3):
            np.take(table[band], kv, out=out[band])
            out[band] += tex
            out[band] += noise[band]
        return np.clip(out, 1, 254, out=out)


# --------------------------------------------------------------------------------------------
# Dates and atmosphere
# --------------------------------------------------------------------------------------------


def acquisition_times(n: int, year: int, seed: int) -> list[dt.datetime]:
    """``n`` distinct dates spread over ``year`` (one per equal slice of the year), 10:30-11:00 UTC."""
    rng = np.random.default_rng([seed, 2])
    days_in_year = 366 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 365
    if not 1 <= n <= days_in_year:
        raise ValueError(f"scenes must be between 1 and {days_in_year} (one per day at most), got {n}")
    times = []
    for k in range(n):
        first, last = (k * days_in_year) // n, ((k + 1) * days_in_year) // n - 1
        day = int(rng.integers(first, last + 1))
        seconds = int(rng.integers(10 * 3600 + 30 * 60, 11 * 3600))
        times.append(dt.datetime(year, 1, 1) + dt.timedelta(days=day, seconds=seconds))
    return times


@dataclass(frozen=True)
class _Weather:
    """The random draws of one date: cloud cover and field, shadow geometry, haze, swath edge."""

    cover: float
    cloud_lattices: tuple
    shadow_offset: tuple
    shadow_dark: float
    haze: float
    haze_lattice: np.ndarray | None
    swath: tuple | None  # (x at mid-height, slope dx/dy, nodata on the east side?)


_CLOUD_OCTAVES = ((900.0, 1.0), (300.0, 0.55), (90.0, 0.3), (24.0, 0.12))


def _weather(seed: int, index: int, width: int, height: int, pixel_size: float) -> _Weather:
    rng = np.random.default_rng([seed, 1, index])
    kind = rng.uniform()
    cover = rng.uniform(0.0, 0.02) if kind < 0.35 else rng.uniform(0.05, 0.5) if kind < 0.7 else rng.uniform(0.5, 0.95)
    # Shadows fall away from the sun (south-south-east at 10:45 UTC), 0.6 to 2 km from the cloud.
    length = rng.uniform(600.0, 2000.0) / pixel_size
    azimuth = math.radians(rng.uniform(145, 165))
    offset = (-math.cos(azimuth) * length, math.sin(azimuth) * length)  # (dy south, dx east)
    lattices = tuple(_lattice(rng, height, width, cell) for cell, _ in _CLOUD_OCTAVES)
    haze = rng.uniform(0.12, 0.3) if rng.uniform() < 0.15 else 0.0
    haze_lattice = _lattice(rng, height, width, 500) if haze else None
    swath = None
    if rng.uniform() < 0.25:
        swath = (rng.uniform(0.35, 0.75) * width, math.tan(math.radians(rng.uniform(-12, 12))), bool(rng.uniform() < 0.5))
    return _Weather(cover, lattices, offset, rng.uniform(0.4, 0.6), haze, haze_lattice, swath)


def _cloud_field(w: _Weather, y0: int, y1: int, width: int) -> np.ndarray:
    total = np.zeros((y1 - y0, width), np.float32)
    for lattice, (cell, amp) in zip(w.cloud_lattices, _CLOUD_OCTAVES):
        total += amp * _sample(lattice, cell, y0, y1, width)
    return total


_FRINGE = 0.08


class _Sky:
    """The atmosphere of one date over the whole scene: cloud field, cloud and shadow masks."""

    def __init__(self, w: _Weather, width: int, height: int):
        self.w, self.width, self.height = w, width, height
        self.field = self.cloud = self.shadow = None
        if w.cover < 0.003:
            return
        self.field = np.empty((height, width), np.float32)
        for y0 in range(0, height, _STRIP_ROWS):
            self.field[y0 : y0 + _STRIP_ROWS] = _cloud_field(w, y0, min(height, y0 + _STRIP_ROWS), width)
        self.thr = float(np.quantile(self.field[::4, ::4], 1.0 - w.cover))
        self.cloud = self.field > self.thr
        # A pixel is in shadow when the cloud it looks up to, towards the sun, is there.
        dy, dx = (int(round(v)) for v in w.shadow_offset)
        cast = np.zeros_like(self.cloud)
        src = self.cloud[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
        cast[max(-dy, 0) : max(-dy, 0) + src.shape[0], max(-dx, 0) : max(-dx, 0) + src.shape[1]] = src
        self.shadow = cast & ~self.cloud

    def strip(self, img: np.ndarray, y0: int, y1: int) -> tuple[np.ndarray, int, int]:
        """Apply the sky to rows y0..y1 of clean ground ``img`` (float32, modified); uint8 and counts."""
        w, width = self.w, self.width
        if w.haze:
            a = w.haze * (0.6 + 0.4 * _sample(w.haze_lattice, 500, y0, y1, width))
            for band, veil in enumerate((200.0, 205.0, 215.0)):
                img[band] += a * (veil - img[band])
        clouds = shadow_n = 0
        if self.field is not None:
            cloud, shadow = self.cloud[y0:y1], self.shadow[y0:y1]
            shadow_n = int(np.count_nonzero(shadow))
            if shadow_n:
                img *= np.where(shadow, np.float32(w.shadow_dark), np.float32(1.0))
            # A thin bright fringe: valid values, but brighter than the ground.
            field_ = self.field[y0:y1]
            if np.any(field_ > self.thr - _FRINGE):
                a = np.clip((field_ - (self.thr - _FRINGE)) * (0.8 / _FRINGE), 0.0, 0.8)
                for band in range(3):
                    img[band] += a * (250.0 - img[band])
        np.rint(img, out=img)
        np.clip(img, 1, 254, out=img)
        out = img.astype(np.uint8)
        if self.field is not None:
            np.copyto(out, np.uint8(255), where=cloud[None])
            clouds = int(np.count_nonzero(cloud))
        if w.swath is not None:
            x_mid, slope, east = w.swath
            ys = np.arange(y0, y1, dtype=np.float64)[:, None]
            edge = x_mid + slope * (ys - self.height / 2)
            xs = np.arange(width)[None, :]
            gap = xs > edge if east else xs < edge
            np.copyto(out, np.uint8(0), where=gap[None])
            if clouds:
                clouds = int(np.count_nonzero(cloud & ~gap))
        return out, clouds, shadow_n


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write_cog(path: str, data: np.ndarray, transform: tuple, crs: str, colorinterp=None) -> None:
    import rasterio
    from rasterio.enums import ColorInterp

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp.tif", dir=directory)
    os.close(fd)
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):
            with rasterio.open(
                tmp, "w", driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                dtype="uint8", crs=crs, transform=rasterio.Affine(*transform), compress="DEFLATE",
                predictor=2, level=1, blocksize=512, overviews="NONE", bigtiff="IF_SAFER",
            ) as dst:
                dst.write(data)
                dst.colorinterp = colorinterp or (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is an ordinary output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _ground_truth(ground: _Ground, doys: list[float], out_path: str, transform, crs) -> None:
    """Write the luminance median of the clean, noise-free series.

    Without noise a pixel's colour on a date is ``table[kv] + tex``, and ``tex`` is the same
    on every date and band, so the order of its dates by R+G+B depends on ``kv`` alone: the
    median date is picked once per land-cover variant (stable sort, index count // 2, as
    the course defines the luminance median), independently of temporal_median.compute.median.
    """
    tables = np.stack([ground.colour_table(doy) for doy in doys])  # (T, 3, kinds)
    luminance = tables.sum(axis=1)  # (T, kinds)
    order = np.argsort(luminance, axis=0, kind="stable")
    pick = order[len(doys) // 2]  # (kinds,)
    median_table = tables[pick, :, np.arange(tables.shape[2])].T  # (3, kinds)
    truth = np.empty((3, ground.height, ground.width), np.uint8)
    for y0 in range(0, ground.height, _STRIP_ROWS):
        y1 = min(ground.height, y0 + _STRIP_ROWS)
        kv, tex = ground.kv[y0:y1], ground.tex[y0:y1]
        for band in range(3):
            values = np.take(median_table[band], kv) + tex
            np.clip(np.rint(values), 1, 254, out=values)
            truth[band, y0:y1] = values
    _write_cog(out_path, truth, transform, crs)


def _generate_scene(ground: _Ground, info: dict, index: int, doy: float, path: str) -> SceneInfo:
    width, height = ground.width, ground.height
    sky = _Sky(_weather(info["seed"], index, width, height, info["pixel_size"]), width, height)
    table = ground.colour_table(doy)
    scene = np.empty((3, height, width), np.uint8)
    clouds = shadows = nodata = 0
    for y0 in range(0, height, _STRIP_ROWS):
        y1 = min(height, y0 + _STRIP_ROWS)
        scene[:, y0:y1], c, s = sky.strip(ground.colour(y0, y1, table, index), y0, y1)
        clouds += c
        shadows += s
        nodata += int(np.count_nonzero(~scene[:, y0:y1].any(axis=0)))
    haze = bool(sky.w.haze)
    del sky  # the cloud field and masks: free them before the COG copy of the scene
    _write_cog(path, scene, info["transform"], info["crs"])
    total = width * height
    return SceneInfo(
        name=os.path.basename(path), acquired=info["times"][index].isoformat() + "Z",
        cloud_fraction=round(clouds / total, 6), shadow_fraction=round(shadows / total, 6),
        nodata_fraction=round(nodata / total, 6), haze=haze,
    )


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
    """Write a synthetic series into ``out_dir`` (see the module docstring) and describe it.

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
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if not _GRANULE.match(granule or ""):
        raise ValueError(f"granule must look like T31TCJ, got {granule!r}")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or not 16 <= value <= 100_000:
            raise ValueError(f"{name} must be an integer between 16 and 100000, got {value!r}")
    if not (isinstance(pixel_size, (int, float)) and pixel_size > 0 and math.isfinite(pixel_size)):
        raise ValueError(f"pixel size must be a positive number, got {pixel_size!r}")
    if not 1900 <= year <= 2100:
        raise ValueError(f"year must be between 1900 and 2100, got {year!r}")
    try:
        crs = CRS.from_user_input(crs).to_string()
    except CRSError as exc:
        raise ValueError(f"unknown CRS {crs!r}: {exc}") from None
    origin = (float(origin[0]), float(origin[1]))
    times = acquisition_times(scenes, year, seed)
    log = log or (lambda line: None)

    wanted = SeriesInfo(out_dir, granule, int(year), int(seed), width, height, crs, float(pixel_size), origin,
                        scenes=tuple(SceneInfo("", "", 0, 0, 0, False) for _ in range(scenes)))
    existing = SeriesInfo.load(out_dir)
    if existing is not None and not force:
        if existing.parameters() == wanted.parameters() and all(os.path.exists(p) for p in existing.paths) and (
            not ground_truth or os.path.exists(existing.ground_truth_path)
        ):
            log(f"{out_dir}: series already there ({len(existing.scenes)} scenes), reusing it")
            if not os.path.exists(existing.items_path):  # a series made before items.json existed
                write_item_collection(existing)
            return existing
        raise ValueError(f"{out_dir} already holds a different series; use --force to replace it")
    if os.path.isdir(out_dir) and not force and existing is None and any(
        n.endswith("_TCI.tif") for n in os.listdir(out_dir)
    ):
        raise ValueError(f"{out_dir} already holds scenes but no {SERIES_JSON}; use --force to replace them")
    os.makedirs(out_dir, exist_ok=True)
    if force:
        for name in os.listdir(out_dir):
            if name in (SERIES_JSON, ITEMS_JSON) or (name.endswith("_TCI.tif") and name.startswith("T")):
                os.unlink(os.path.join(out_dir, name))
        if os.path.exists(os.path.join(out_dir, GROUND_TRUTH)):
            os.unlink(os.path.join(out_dir, GROUND_TRUTH))

    started = time.perf_counter()
    workers = workers or (2 if (os.cpu_count() or 1) > 1 else 1)
    ground = _Ground(seed, width, height, workers)
    names = [f"{granule}_{t:%Y%m%dT%H%M%S}_TCI.tif" for t in times]
    doys = [(t - dt.datetime(year, 1, 1)).total_seconds() / 86400.0 for t in times]
    info = {"seed": seed, "pixel_size": float(pixel_size), "transform": wanted.transform, "crs": crs, "times": times}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sample") as pool:
        futures = [
            pool.submit(_generate_scene, ground, info, i, doys[i], os.path.join(out_dir, names[i]))
            for i in range(scenes)
        ]
        results = []
        for i, future in enumerate(futures):
            results.append(future.result())
            log(f"  {names[i]}  clouds {results[-1].cloud_fraction:6.1%}  nodata {results[-1].nodata_fraction:6.1%}")
    if ground_truth:
        os.makedirs(os.path.dirname(os.path.join(out_dir, GROUND_TRUTH)), exist_ok=True)
        _ground_truth(ground, doys, os.path.join(out_dir, GROUND_TRUTH), wanted.transform, crs)
    series = SeriesInfo(out_dir, granule, int(year), int(seed), width, height, crs, float(pixel_size), origin,
                        scenes=tuple(results))
    write_item_collection(series)
    tmp = os.path.join(out_dir, f".{SERIES_JSON}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(series.to_dict(), f, indent=1)
    os.replace(tmp, os.path.join(out_dir, SERIES_JSON))
    log(f"{out_dir}: {scenes} scenes of {width} x {height} in {time.perf_counter() - started:.1f} s")
    return series


# --------------------------------------------------------------------------------------------
# STAC
# --------------------------------------------------------------------------------------------


def cloud_cover_percent(scene: SceneInfo) -> float:
    """The scene's clouds (255) as a percentage of its valid footprint (the pixels not 0 in all
    bands), as STAC's ``eo:cloud_cover`` means it; 100 for a scene with no valid pixel."""
    valid = 1.0 - scene.nodata_fraction
    if valid <= 0:
        return 100.0
    return round(min(100.0, 100.0 * scene.cloud_fraction / valid), 4)


def stac_items(series: SeriesInfo) -> list[dict]:
    """One STAC 1.1.0 item per scene of ``series``, in acquisition order.

    Each has the acquisition ``datetime``; ``eo:cloud_cover`` (:func:`cloud_cover_percent`);
    the scene as its ``visual`` asset (absolute local href, a COG) with ``proj:shape`` and
    ``proj:transform``; ``proj:code`` and ``proj:epsg``; ``grid:code`` ``MGRS-<granule>`` (the
    sample's granule name: a fixed code per series, no real MGRS tile); and bbox / geometry,
    the scene's bounds in WGS84 (rasterio.warp.transform_bounds, densified edges).
    """
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    a, _, c, _, e, f = series.transform
    xs = (c, c + a * series.width)
    ys = (f, f + e * series.height)
    west, south, east, north = (
        round(v, 7)
        for v in transform_bounds(CRS.from_user_input(series.crs), "EPSG:4326", min(xs), min(ys), max(xs), max(ys),
                                  densify_pts=21)
    )
    geometry = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    crs = CRS.from_user_input(series.crs)
    epsg = crs.to_epsg()
    projection = {"proj:code": f"EPSG:{epsg}", "proj:epsg": epsg} if epsg else {"proj:code": None, "proj:wkt2": crs.to_wkt()}
    items = []
    for scene, path in zip(series.scenes, series.paths):
        items.append({
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": list(STAC_EXTENSIONS),
            "id": scene.name.removesuffix(".tif").removesuffix("_TCI"),
            "geometry": geometry,
            "bbox": [west, south, east, north],
            "properties": {
                "datetime": scene.acquired,
                "eo:cloud_cover": cloud_cover_percent(scene),
                **projection,
                "grid:code": f"MGRS-{series.granule.removeprefix('T')}",
            },
            "links": [],
            "assets": {
                "visual": {
                    "href": os.path.abspath(path),
                    "type": COG_MEDIA_TYPE,
                    "title": "True colour (synthetic)",
                    "roles": ["visual"],
                    "proj:shape": [series.height, series.width],
                    "proj:transform": list(series.transform),
                },
            },
        })
    return items


def write_item_collection(series: SeriesInfo) -> str:
    """Write ``items.json`` (a STAC ItemCollection of :func:`stac_items`) beside the scenes.

    It is not a .tif, so listing the folder for inputs still finds the scenes only. Returns
    its path.
    """
    path = series.items_path
    tmp = os.path.join(series.out_dir, f".{ITEMS_JSON}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"type": "FeatureCollection", "features": stac_items(series)}, f, indent=1)
    os.replace(tmp, path)
    return path


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``sample`` arguments, on a new parser or on a subcommand parser given by the CLI."""
    parser = parser or argparse.ArgumentParser(prog="temporal-median sample", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write the series into")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo",
                        help="default size: demo = 108 x 2600 x 2200, full = 216 x 10980 x 10980 (default: demo)")
    parser.add_argument("--scenes", type=int, help="number of dates (overrides the profile)")
    parser.add_argument("--width", type=int, help="width in pixels (overrides the profile)")
    parser.add_argument("--height", type=int, help="height in pixels (overrides the profile)")
    parser.add_argument("--crs", default=DEFAULT_CRS, help=f"CRS of the scenes (default {DEFAULT_CRS})")
    parser.add_argument("--pixel-size", type=float, default=DEFAULT_PIXEL_SIZE, help="pixel size (default 10)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"), default=DEFAULT_ORIGIN,
                        help="upper-left corner (default 300000 4900020)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--tile-granule", default="T31TCJ", help="granule name in file names (default T31TCJ)")
    parser.add_argument("--year", type=int, default=2023, help="year of the dates (default 2023)")
    parser.add_argument("--force", action="store_true", help="replace a different series already in OUT_DIR")
    return parser


def main(argv=None) -> int:
    """Run ``sample`` with ``argv`` (default sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Generate the series described by parsed ``args``; 0 on success, 1 on a reported error."""
    defaults = PROFILES[args.profile]
    try:
        series = generate_series(
            args.out_dir,
            scenes=args.scenes if args.scenes is not None else defaults["scenes"],
            width=args.width if args.width is not None else defaults["width"],
            height=args.height if args.height is not None else defaults["height"],
            crs=args.crs, pixel_size=args.pixel_size, origin=tuple(args.origin), seed=args.seed,
            granule=args.tile_granule, year=args.year, force=args.force,
            log=lambda line: print(line, file=sys.stderr),
        )
    except ValueError as exc:
        print(f"sample: error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(series.scenes)} scenes of {series.width} x {series.height} in {series.out_dir}; "
          f"ground truth {series.ground_truth_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
