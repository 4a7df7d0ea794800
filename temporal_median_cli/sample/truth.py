"""The ground truth: the luminance median of the clean, noise-free series."""

from __future__ import annotations

import numpy as np

from .cog import write_cog
from .land import Ground
from .series import STRIP_ROWS


def ground_truth(ground: Ground, doys: list[float]) -> np.ndarray:
    """(3, height, width) uint8: the luminance median of the clean, noise-free series.

    Without noise a pixel's colour on a date is ``table[kv] + tex``, and ``tex`` is the same
    on every date and band, so the order of its dates by R+G+B depends on ``kv`` alone: the
    median date is picked once per land-cover variant (stable sort, index count // 2, as
    the course defines the luminance median), independently of temporal_median.compute.median.

    Parameters
    ----------
    ground : Ground
        The series' landscape.
    doys : list of float
        The dates, as days since 1 January.
    """
    tables = np.stack([ground.colour_table(doy) for doy in doys])  # (T, 3, kinds)
    luminance = tables.sum(axis=1)  # (T, kinds)
    order = np.argsort(luminance, axis=0, kind="stable")
    pick = order[len(doys) // 2]  # (kinds,)
    median_table = tables[pick, :, np.arange(tables.shape[2])].T  # (3, kinds)
    truth = np.empty((3, ground.height, ground.width), np.uint8)
    for y0 in range(0, ground.height, STRIP_ROWS):
        y1 = min(ground.height, y0 + STRIP_ROWS)
        kv, tex = ground.kv[y0:y1], ground.tex[y0:y1]
        for band in range(3):
            values = np.take(median_table[band], kv) + tex
            np.clip(np.rint(values), 1, 254, out=values)
            truth[band, y0:y1] = values
    return truth


def write_ground_truth(ground: Ground, doys: list[float], out_path: str, transform, crs) -> None:
    """Write :func:`ground_truth` as a 3-band COG at ``out_path``, on the scenes' ``transform`` and ``crs``."""
    write_cog(out_path, ground_truth(ground, doys), transform, crs)
