"""Dates and atmosphere: acquisition times, and per date the clouds, shadows, haze and swath gaps."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from .noise import lattice, smooth
from .series import STRIP_ROWS


def acquisition_times(n: int, year: int, seed: int) -> list[dt.datetime]:
    """``n`` distinct dates spread over ``year`` (one per equal slice of the year), 10:30-11:00 UTC.

    Parameters
    ----------
    n : int
        Number of dates, 1 to the number of days in ``year``.
    year : int
        Their year.
    seed : int
        The series' seed.

    Returns
    -------
    list of datetime.datetime
        Naive UTC times, sorted, on distinct days.

    Raises
    ------
    ValueError
        If ``n`` is out of range.
    """
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


def platform_of(moment: dt.datetime) -> str:
    """The satellite of an acquisition: ``sentinel-2a`` or ``sentinel-2b``, from its date alone.

    The two satellites follow each other 5 days apart on the same orbits, so the platform here
    alternates every 5 days; a function of the date, every tile of one pass has the same.
    """
    return "sentinel-2a" if (moment.toordinal() // 5) % 2 == 0 else "sentinel-2b"


@dataclass(frozen=True)
class Weather:
    """The random draws of one date: cloud cover and field, shadow geometry, haze, swath edge."""

    cover: float
    cloud_lattices: tuple
    shadow_offset: tuple
    shadow_dark: float
    haze: float
    haze_lattice: np.ndarray | None
    swath: tuple | None  # (x at mid-height, slope dx/dy, nodata on the east side?)


_CLOUD_OCTAVES = ((900.0, 1.0), (300.0, 0.55), (90.0, 0.3), (24.0, 0.12))


def weather(seed: int, index: int, width: int, height: int, pixel_size: float) -> Weather:
    """The draws of date ``index`` of the series ``seed`` over a ``width`` x ``height`` scene."""
    rng = np.random.default_rng([seed, 1, index])
    kind = rng.uniform()
    cover = rng.uniform(0.0, 0.02) if kind < 0.35 else rng.uniform(0.05, 0.5) if kind < 0.7 else rng.uniform(0.5, 0.95)
    # Shadows fall away from the sun (south-south-east at 10:45 UTC), 0.6 to 2 km from the cloud.
    length = rng.uniform(600.0, 2000.0) / pixel_size
    azimuth = math.radians(rng.uniform(145, 165))
    offset = (-math.cos(azimuth) * length, math.sin(azimuth) * length)  # (dy south, dx east)
    lattices = tuple(lattice(rng, height, width, cell) for cell, _ in _CLOUD_OCTAVES)
    haze = rng.uniform(0.12, 0.3) if rng.uniform() < 0.15 else 0.0
    haze_lattice = lattice(rng, height, width, 500) if haze else None
    swath = None
    if rng.uniform() < 0.25:
        swath = (rng.uniform(0.35, 0.75) * width, math.tan(math.radians(rng.uniform(-12, 12))), bool(rng.uniform() < 0.5))
    return Weather(cover, lattices, offset, rng.uniform(0.4, 0.6), haze, haze_lattice, swath)


def _cloud_field(w: Weather, y0: int, y1: int, width: int) -> np.ndarray:
    total = np.zeros((y1 - y0, width), np.float32)
    for lat, (cell, amp) in zip(w.cloud_lattices, _CLOUD_OCTAVES):
        total += amp * smooth(lat, cell, y0, y1, width)
    return total


_FRINGE = 0.08


class Sky:
    """The atmosphere of one date over the whole scene: cloud field, cloud and shadow masks.

    Parameters
    ----------
    w : Weather
        The date's draws (:func:`weather`).
    width, height : int
        Size of the scene in pixels.
    """

    def __init__(self, w: Weather, width: int, height: int):
        self.w, self.width, self.height = w, width, height
        self.field = self.cloud = self.shadow = None
        if w.cover < 0.003:
            return
        self.field = np.empty((height, width), np.float32)
        for y0 in range(0, height, STRIP_ROWS):
            self.field[y0 : y0 + STRIP_ROWS] = _cloud_field(w, y0, min(height, y0 + STRIP_ROWS), width)
        self.thr = float(np.quantile(self.field[::4, ::4], 1.0 - w.cover))
        self.cloud = self.field > self.thr
        # A pixel is in shadow when the cloud it looks up to, towards the sun, is there.
        dy, dx = (round(v) for v in w.shadow_offset)
        cast = np.zeros_like(self.cloud)
        src = self.cloud[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
        cast[max(-dy, 0) : max(-dy, 0) + src.shape[0], max(-dx, 0) : max(-dx, 0) + src.shape[1]] = src
        self.shadow = cast & ~self.cloud

    def strip(self, img: np.ndarray, y0: int, y1: int) -> tuple[np.ndarray, int, int]:
        """Apply the sky to rows y0..y1 of clean ground.

        Parameters
        ----------
        img : (3, rows, width) float32 ndarray
            The clean ground of the rows (:meth:`Ground.colour`); modified.
        y0, y1 : int
            The rows.

        Returns
        -------
        out : (3, rows, width) uint8 ndarray
            The scene's rows: clouds 255 and swath gaps 0 in all bands, the rest in 1..254.
        clouds, shadows : int
            Cloud pixels (outside gaps) and shadow pixels in the rows.
        """
        w = self.w
        if w.haze:
            a = self.haze_strength(y0, y1)
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
            gap = self.gap(y0, y1)
            np.copyto(out, np.uint8(0), where=gap[None])
            if clouds:
                clouds = int(np.count_nonzero(cloud & ~gap))
        return out, clouds, shadow_n

    def haze_strength(self, y0: int, y1: int) -> np.ndarray:
        """(rows, width) float32: how far rows y0..y1 are veiled towards the haze colour (date with haze only)."""
        return self.w.haze * (0.6 + 0.4 * smooth(self.w.haze_lattice, 500, y0, y1, self.width))

    def gap(self, y0: int, y1: int) -> np.ndarray:
        """(rows, width) bool: the pixels of rows y0..y1 beyond the swath edge (date with a swath edge only)."""
        x_mid, slope, east = self.w.swath
        ys = np.arange(y0, y1, dtype=np.float64)[:, None]
        edge = x_mid + slope * (ys - self.height / 2)
        xs = np.arange(self.width)[None, :]
        return xs > edge if east else xs < edge
