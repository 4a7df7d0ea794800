"""The course's naive luminance median, kept as a benchmark reference: per pixel, gather and sort."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def course_median(stack):  # pragma: no cover - compiled
    """Luminance median as the course wrote it: one pixel at a time, argsort of the valid samples.

    Deliberately untuned (single thread, strided reads, a fresh sort per pixel) but not
    handicapped either (gather buffers allocated once): it is the yardstick the kernels in
    ``temporal_median.compute.median`` are measured against.

    Parameters
    ----------
    stack : numpy.ndarray
        (T, 3, h, w) uint8 in acquisition order.

    Returns
    -------
    tuple of numpy.ndarray
        (3, h, w) uint8 median colour and (h, w) uint16 valid-sample counts.
    """
    n_samples, _, height, width = stack.shape
    rgb = np.zeros((3, height, width), np.uint8)
    count = np.zeros((height, width), np.uint16)
    lums = np.empty(n_samples, np.int64)
    times = np.empty(n_samples, np.int64)
    for y in range(height):
        for x in range(width):
            n = 0
            for t in range(n_samples):
                r = stack[t, 0, y, x]
                g = stack[t, 1, y, x]
                b = stack[t, 2, y, x]
                if r == 0 or g == 0 or b == 0 or r == 255 or g == 255 or b == 255:
                    continue
                lums[n] = int(r) + int(g) + int(b)
                times[n] = t
                n += 1
            count[y, x] = n
            if n == 0:
                continue
            order = np.argsort(lums[:n], kind="mergesort")
            t = times[order[n // 2]]
            rgb[0, y, x] = stack[t, 0, y, x]
            rgb[1, y, x] = stack[t, 1, y, x]
            rgb[2, y, x] = stack[t, 2, y, x]
    return rgb, count
