"""The ground: land-cover classes, their seasonal colours, and the static landscape of a series."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .noise import hash_noise, lattice, smooth
from .series import STRIP_ROWS

# Land-cover classes and their colour through the year: (day of year, (R, G, B)) key points,
# interpolated cyclically. Values are TCI-like (vegetation dark green, soils brown).
CURVES = {
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
CLASSES = tuple(CURVES)
CROPS = ("wheat", "maize", "sunflower", "meadow", "rapeseed", "fallow")
_CROP_WEIGHTS = (0.3, 0.2, 0.12, 0.18, 0.08, 0.12)
#: Texture amplitude (grey levels) per class.
_TEXTURE = {"wheat": 6, "maize": 6, "sunflower": 7, "meadow": 5, "rapeseed": 6, "fallow": 8,
            "forest": 14, "urban": 28, "water": 3, "road": 3, "track": 5}
#: Parcel variants: each parcel has one of these phenology shifts and brightness factors.
VARIANTS = 16


def _boundaries(rng: np.random.Generator, lo: float, hi: float, min_w: float, max_w: float) -> np.ndarray:
    widths = rng.uniform(min_w, max_w, int((hi - lo) / min_w) + 2)
    return lo + np.concatenate([[0.0], np.cumsum(widths)])


class Ground:
    """The static landscape of a series; ``colour(rows, doy)`` gives the clean ground of a date.

    Parameters
    ----------
    seed : int
        The series' seed: the landscape is a deterministic function of it.
    width, height : int
        Size in pixels.
    workers : int
        Threads filling the static layers.

    Attributes
    ----------
    kv : (height, width) uint16 ndarray
        ``class * VARIANTS + variant`` of every pixel.
    tex : (height, width) int8 ndarray
        Texture offset of every pixel, in grey levels.
    """

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
        self.zone_pattern = lattice(rng, height, width, 700)
        self.zone_forest = lattice(rng, height, width, 450)
        self.zone_urban = lattice(rng, height, width, 380)
        self.tex_fine = lattice(rng, height, width, 3)
        self.tex_mid = lattice(rng, height, width, 14)
        # Parcel attributes, looked up by a hash of the parcel index.
        self.parcel_class = rng.choice([CLASSES.index(c) for c in CROPS], size=4096, p=_CROP_WEIGHTS).astype(np.uint8)
        self.parcel_variant = rng.integers(0, VARIANTS, size=4096, dtype=np.uint8)
        self.variant_shift = rng.uniform(-15, 15, VARIANTS)
        self.variant_bright = rng.uniform(0.88, 1.12, VARIANTS)
        # Two straight roads and one meandering river.
        self.roads = [(rng.uniform(0, math.pi), rng.uniform(0.2, 0.8)) for _ in range(2)]
        self.river = (rng.uniform(0.25, 0.75) * height, rng.uniform(0.04, 0.1) * height, rng.uniform(0.6, 1.4) * width,
                      rng.uniform(0, 2 * math.pi), rng.uniform(4, 7))
        self.texture_amp = np.array([_TEXTURE[c] for c in CLASSES], np.float32)
        self.class_of = {c: i for i, c in enumerate(CLASSES)}
        # The static layers of the whole image, once (3 bytes a pixel); dates only recolour them.
        self.kv = np.empty((height, width), np.uint16)
        self.tex = np.empty((height, width), np.int8)

        def fill(y0):
            y1 = min(height, y0 + STRIP_ROWS)
            self.kv[y0:y1], self.tex[y0:y1] = self.layers(y0, y1)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fill, range(0, height, STRIP_ROWS)))

    def layers(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows y0..y1 of the static layers: (class * VARIANTS + variant, texture offset in grey levels)."""
        w = self.width
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]
        pick = smooth(self.zone_pattern, 700, y0, y1, w) > 0
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
        tex = 0.65 * smooth(self.tex_fine, 3, y0, y1, w) + 0.35 * smooth(self.tex_mid, 14, y0, y1, w)
        forest = smooth(self.zone_forest, 450, y0, y1, w) > 0.42
        urban = smooth(self.zone_urban, 380, y0, y1, w) > 0.55
        kind[track] = self.class_of["track"]
        kind[forest] = self.class_of["forest"]
        kind[urban] = self.class_of["urban"]
        for angle, frac in self.roads:
            dist = np.abs((xs - frac * w) * math.sin(angle) - (ys - 0.5 * self.height) * math.cos(angle))
            kind[dist < 2.5] = self.class_of["road"]
        base, amp, period, phase, half_width = self.river
        centre = base + amp * np.sin(2 * math.pi * xs / period + phase)
        kind[np.abs(ys - centre) < half_width] = self.class_of["water"]
        kv = kind.astype(np.uint16) * VARIANTS + variant
        return kv, np.rint(self.texture_amp[kind] * tex).astype(np.int8)

    def colour_table(self, doy: float) -> np.ndarray:
        """(3, classes * variants) float32 colours on day ``doy``, indexed like ``layers``' first array."""
        table = np.empty((3, len(CLASSES), VARIANTS), np.float32)
        for k, name in enumerate(CLASSES):
            days = np.array([d for d, _ in CURVES[name]], np.float64)
            cols = np.array([c for _, c in CURVES[name]], np.float64)
            shift = self.variant_shift if name in CROPS else np.zeros(VARIANTS)
            bright = self.variant_bright if name in CROPS or name == "forest" else np.ones(VARIANTS)
            day = (doy - shift) % 365
            for band in range(3):
                table[band, k] = bright * np.interp(day, days, cols[:, band], period=365)
        return table.reshape(3, -1)

    def colour(self, y0: int, y1: int, table: np.ndarray, key: int) -> np.ndarray:
        """Clean ground of rows y0..y1 for a date's colour ``table``: (3, rows, width) float32 in 1..254."""
        kv, tex = self.kv[y0:y1], self.tex[y0:y1]
        noise = hash_noise(y0, y1, self.width, key)
        out = np.empty((3, y1 - y0, self.width), np.float32)
        for band in range(3):
            np.take(table[band], kv, out=out[band])
            out[band] += tex
            out[band] += noise[band]
        return np.clip(out, 1, 254, out=out)
