"""What the generator knows of a series' samples: which are clean, and the clean ground's colours, on a pixel subgrid."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from .land import Ground
from .series import SeriesInfo
from .sky import _FRINGE, Sky, weather


@dataclass(frozen=True)
class Oracle:
    """Every date of a series on the pixels ``rows`` x ``cols``, as drawn.

    Attributes
    ----------
    clean : (T, h, w) bool ndarray
        Samples with nothing of the sky on them: no cloud, cloud fringe, shadow, haze (a date
        with haze veils all its pixels) or swath gap. What a perfect mask keeps.
    ground : (T, 3, h, w) uint8 ndarray
        The clean ground of every sample, sensor noise included (what a clean sample shows).
    noise_free : (T, 3, h, w) uint8 ndarray
        The same without sensor noise: what the ground truth is the luminance median of.
    """

    clean: np.ndarray
    ground: np.ndarray
    noise_free: np.ndarray


def oracle(series: SeriesInfo, rows: np.ndarray, cols: np.ndarray, workers: int = 2) -> Oracle:
    """The :class:`Oracle` of ``series`` (a generated one: series.json's seed, geometry and dates) on ``rows`` x ``cols``."""
    ground = Ground(series.seed, series.width, series.height, workers)
    h, w, n = len(rows), len(cols), len(series.scenes)
    at = np.ix_(rows, cols)
    kv, tex = ground.kv[at], ground.tex[at].astype(np.float32)
    clean = np.ones((n, h, w), bool)
    colours, noise_free = np.empty((n, 3, h, w), np.uint8), np.empty((n, 3, h, w), np.uint8)
    new_year = dt.datetime(series.year, 1, 1)
    for index, scene in enumerate(series.scenes):
        doy = (dt.datetime.fromisoformat(scene.acquired.removesuffix("Z")) - new_year).total_seconds() / 86400.0
        table = ground.colour_table(doy)
        for band in range(3):
            noise_free[index, band] = np.clip(np.rint(np.take(table[band], kv) + tex), 1, 254)
        for r0 in range(0, h, 64):  # the noisy ground, by strips of the subgrid's rows
            strip = rows[r0 : r0 + 64]
            full = ground.colour(int(strip[0]), int(strip[-1]) + 1, table, index)
            colours[index, :, r0 : r0 + 64] = np.clip(np.rint(full[:, strip - strip[0]][:, :, cols]), 1, 254)
        sky = Sky(weather(series.seed, index, series.width, series.height, series.pixel_size), series.width, series.height)
        if sky.w.haze:
            clean[index] = False
            continue
        if sky.field is not None:
            clean[index] &= ~(sky.field[at] > sky.thr - _FRINGE) & ~sky.shadow[at]  # clouds, their fringes, shadows
        if sky.w.swath is not None:
            clean[index] &= ~sky.gap(0, series.height)[at]
    return Oracle(clean, colours, noise_free)
