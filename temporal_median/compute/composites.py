"""One window's composites: the whole range and each period's, from one read of the scenes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster.profiles import profile
from temporal_median.raster.write import check_dest, write_bands


@dataclass(frozen=True)
class PeriodOutput:
    """A period's tile: its name, its run ``[first, stop)`` of the stack, and where it is written."""

    name: str
    first: int
    stop: int
    path: str

    @classmethod
    def check(cls, value, n: int) -> "PeriodOutput":
        """A PeriodOutput from ``(name, first, stop, path)``, its run inside ``[0, n]``."""
        name, first, stop, path = value
        if not (isinstance(first, int) and isinstance(stop, int) and 0 <= first <= stop <= n):
            raise InvalidRequest(f"period {name}: run [{first}, {stop}) is not inside the {n} samples")
        check_dest(path)
        return cls(str(name), first, stop, path)


@dataclass(frozen=True)
class TileStats:
    """What computing one tile cost.

    Attributes
    ----------
    window : Window
        The tile's window in the scenes.
    valid_fraction : float
        Fraction of the tile's pixels with at least one valid sample.
    bytes_read : int
        Estimate of the bytes fetched: compressed sizes of the source blocks intersecting the
        window, summed over scenes (0 where the format does not tell).
    seconds_read, seconds_median, seconds_write : float
        Wall time the calling thread spent opening and waiting for reads, in the median
        kernel, and writing the COG. Reads overlap the median, so reading time hidden behind
        the median is not counted in ``seconds_read``.
    """

    window: Window
    valid_fraction: float
    bytes_read: int
    seconds_read: float
    seconds_median: float
    seconds_write: float

    def to_dict(self) -> dict:
        """A JSON-safe dict, for logs and tile records."""
        return {
            "window": self.window.as_list(),
            "valid_fraction": self.valid_fraction,
            "bytes_read": self.bytes_read,
            "seconds_read": round(self.seconds_read, 4),
            "seconds_median": round(self.seconds_median, 4),
            "seconds_write": round(self.seconds_write, 4),
        }


class Composites:
    """The 4-band tiles of the whole range and of each period, filled chunk by chunk.

    Each period's samples are a run of the acquisition-ordered stack, so its median is the
    median of a slice: the scenes are read once for every period.
    """

    def __init__(self, window: Window, n: int, periods: Sequence = ()) -> None:
        self.window, self.n = window, n
        self.periods = [PeriodOutput.check(p, n) for p in periods]
        shape = (window.height, window.width)
        # bands[0] is the whole range; bands[i + 1] is period i. R, G, B written by the median.
        self.bands = np.zeros((1 + len(self.periods), 4, *shape), np.uint8)
        self.counts = np.zeros((1 + len(self.periods), *shape), np.uint16)
        self.seconds_median = 0.0

    def add(self, stack: np.ndarray, method: str, r0: int, r1: int, c0: int, c1: int) -> None:
        """Take every composite's median of one chunk ``stack`` (n, 3, r1 - r0, c1 - c0)."""
        from temporal_median.compute.median import compute_median  # numba or the library: workers only

        started = time.perf_counter()
        runs = [(0, self.n)] + [(p.first, p.stop) for p in self.periods]
        for k, (first, stop) in enumerate(runs):
            if stop > first:
                out = (self.bands[k, :3, r0:r1, c0:c1], self.counts[k, r0:r1, c0:c1])
                compute_median(stack[first:stop], method, out=out)
        self.seconds_median += time.perf_counter() - started

    def write(self, dest_path: str, grid: RasterGrid, bytes_read: int, seconds_read: float, *,
              threads: str | None = None) -> TileStats:
        """Write the whole range to ``dest_path`` and each period to its path; what the tile cost."""
        started = time.perf_counter()
        options = profile("tile")
        if threads:
            options["num_threads"] = threads
        transform = grid.window_transform(self.window)
        paths = [dest_path] + [p.path for p in self.periods]
        for k, path in enumerate(paths):
            # The kernels give RGB 0 exactly where the count is 0, as write_tile checks: no need to.
            np.minimum(self.counts[k], 255, out=self.bands[k, 3], casting="unsafe")
            write_bands(path, self.bands[k], transform, grid.crs, options)
        return TileStats(
            window=self.window,
            valid_fraction=self.valid_fraction,
            bytes_read=bytes_read,
            seconds_read=seconds_read,
            seconds_median=self.seconds_median,
            seconds_write=time.perf_counter() - started,
        )

    @property
    def valid_fraction(self) -> float:
        """Share of the whole range's pixels with at least one valid sample."""
        return float(np.count_nonzero(self.counts[0])) / self.counts[0].size
