"""Value and hash noise, functions of absolute pixel coordinates, so strips join up."""

from __future__ import annotations

import numpy as np


def lattice(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Random values in [-1, 1] on a lattice of ``cell`` pixels covering the image."""
    return rng.uniform(-1.0, 1.0, (int(height / cell) + 3, int(width / cell) + 3)).astype(np.float32)


def smooth(lattice: np.ndarray, cell: float, y0: int, y1: int, width: int) -> np.ndarray:
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


def hash_noise(y0: int, y1: int, width: int, key: int) -> list[np.ndarray]:
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
