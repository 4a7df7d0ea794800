"""The scene classification (SCL) of a date, from what was drawn, with Sen2Cor-like misses at cloud edges."""

from __future__ import annotations

import numpy as np

from .land import CLASSES, VARIANTS, Ground
from .noise import lattice, smooth
from .sky import Sky

#: The Sentinel-2 L2A scene classification values the sample uses.
NO_DATA = 0
CLOUD_SHADOWS = 3
VEGETATION = 4
NOT_VEGETATED = 5
WATER = 6
CLOUD_MEDIUM_PROBABILITY = 8
CLOUD_HIGH_PROBABILITY = 9
THIN_CIRRUS = 10
#: Every SCL class (value, name, description), as the STAC classification extension lists them.
SCL_CLASSES = (
    (0, "no_data", "No data"),
    (1, "saturated_or_defective", "Saturated or defective"),
    (2, "dark_area_pixels", "Dark area pixels"),
    (3, "cloud_shadows", "Cloud shadows"),
    (4, "vegetation", "Vegetation"),
    (5, "not_vegetated", "Not vegetated"),
    (6, "water", "Water"),
    (7, "unclassified", "Unclassified"),
    (8, "cloud_medium_probability", "Cloud medium probability"),
    (9, "cloud_high_probability", "Cloud high probability"),
    (10, "thin_cirrus", "Thin cirrus"),
    (11, "snow", "Snow or ice"),
)
#: Haze is flagged (thin cirrus) where it veils the ground at least this much; thinner haze is
#: missed and classified as the ground under it.
HAZE_FLAGGED = 0.12
#: The densest share of a date's cloud pixels is "high probability", the rest "medium".
HIGH_PROBABILITY_SHARE = 0.6
#: Cell (pixels) of the noise choosing where a cloud's one-pixel rim is missed (about half of it).
_RIM_CELL = 40.0
#: A land-cover class is vegetation on a date when its green exceeds its red by this much.
_GREENER = 10.0


def land_classes(table: np.ndarray) -> np.ndarray:
    """(classes * variants,) uint8: the SCL class of each land-cover variant on a date.

    Parameters
    ----------
    table : (3, classes * variants) ndarray
        The date's colours (:meth:`Ground.colour_table`).

    Returns
    -------
    ndarray
        Water 6; towns, roads and tracks 5; the rest vegetation (4) when green on the date
        (green at least ``_GREENER`` above red), else not vegetated (5). Indexed like
        :attr:`Ground.kv`.
    """
    lut = np.where(table[1] >= table[0] + _GREENER, VEGETATION, NOT_VEGETATED).astype(np.uint8)
    kind = np.arange(lut.size) // VARIANTS
    lut[np.isin(kind, [CLASSES.index(c) for c in ("urban", "road", "track")])] = NOT_VEGETATED
    lut[kind == CLASSES.index("water")] = WATER
    return lut


class Classifier:
    """The SCL of one date, at the scene's resolution, strip by strip.

    What was drawn gives the class: swath gaps 0; clouds 9 (the densest
    ``HIGH_PROBABILITY_SHARE`` of them) or 8; shadows 3; haze 10 where it veils the ground at
    least ``HAZE_FLAGGED``; otherwise the ground: vegetation 4, not vegetated 5, water 6. Two
    misses, as Sen2Cor has: on about half of each cloud's outline its one-pixel rim is
    classified as the ground under it, and thin haze is not flagged.

    Parameters
    ----------
    sky : Sky
        The date's atmosphere.
    seed, index : int
        The series' seed and the date's index (they choose where the rim is missed).
    table : (3, classes * variants) ndarray
        The date's colours (:meth:`Ground.colour_table`).
    """

    def __init__(self, sky: Sky, seed: int, index: int, table: np.ndarray):
        self.sky = sky
        self.lut = land_classes(table)
        if sky.field is not None:
            self.thr_high = float(np.quantile(sky.field[::4, ::4], 1.0 - HIGH_PROBABILITY_SHARE * sky.w.cover))
            # A stream of its own: the weather's draws, hence the scenes, stay as they were.
            self.rim_lattice = lattice(np.random.default_rng([seed, 4, index]), sky.height, sky.width, _RIM_CELL)

    def strip(self, ground: Ground, y0: int, y1: int) -> np.ndarray:
        """(rows, width) uint8: the classes of rows y0..y1 at the scene's resolution."""
        sky = self.sky
        out = np.take(self.lut, ground.kv[y0:y1])
        if sky.w.haze:
            out[sky.haze_strength(y0, y1) >= HAZE_FLAGGED] = THIN_CIRRUS
        if sky.field is not None:
            out[sky.shadow[y0:y1]] = CLOUD_SHADOWS
            seen = sky.cloud[y0:y1] & ~(self.rim(y0, y1) & (smooth(self.rim_lattice, _RIM_CELL, y0, y1, sky.width) > 0))
            high = sky.field[y0:y1] > self.thr_high
            out[seen & high] = CLOUD_HIGH_PROBABILITY
            out[seen & ~high] = CLOUD_MEDIUM_PROBABILITY
        if sky.w.swath is not None:
            out[sky.gap(y0, y1)] = NO_DATA
        return out

    def rim(self, y0: int, y1: int) -> np.ndarray:
        """(rows, width) bool: cloud pixels of rows y0..y1 with a clear 4-neighbour (in the image)."""
        cloud = self.sky.cloud
        ya, yb = max(y0 - 1, 0), min(y1 + 1, cloud.shape[0])
        block = cloud[ya:yb]
        inner = block.copy()
        inner[1:] &= block[:-1]
        inner[:-1] &= block[1:]
        inner[:, 1:] &= block[:, :-1]
        inner[:, :-1] &= block[:, 1:]
        return (block & ~inner)[y0 - ya : y1 - ya]
