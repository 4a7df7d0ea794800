"""Grids: the raster grid every scene shares, and the windows (tiles) that cover it exactly once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from affine import Affine

from temporal_median.base.errors import InvalidRequest

MIN_TILE_SIZE = 256
MAX_TILE_SIZE = 4096
DEFAULT_TILE_SIZE = 1024

_TILE_ID = re.compile(r"^r(\d{3,})_c(\d{3,})$")


@dataclass(frozen=True, order=True)
class TileId:
    """Row and column of a window in its grid; its text form is ``r003_c007``."""

    row: int
    col: int

    def __str__(self) -> str:
        return f"r{self.row:03d}_c{self.col:03d}"

    @classmethod
    def parse(cls, text: str) -> "TileId":
        """Parse the text form, e.g. ``TileId.parse("r003_c007")``."""
        match = _TILE_ID.match(text) if isinstance(text, str) else None
        if not match:
            raise InvalidRequest(f"not a tile id: {text!r} (expected like 'r003_c007')")
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Window:
    """A pixel window ``[col_off, row_off, width, height]``, as in the course's messages."""

    col_off: int
    row_off: int
    width: int
    height: int

    def as_list(self) -> list[int]:
        return [self.col_off, self.row_off, self.width, self.height]

    @classmethod
    def from_list(cls, values) -> "Window":
        """Build from ``[x0, y0, w, h]``; raises InvalidRequest on anything else."""
        if (
            not isinstance(values, (list, tuple))
            or len(values) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        ):
            raise InvalidRequest(f"window must be four integers [x0, y0, w, h], got {values!r}")
        window = cls(*values)
        if window.col_off < 0 or window.row_off < 0 or window.width <= 0 or window.height <= 0:
            raise InvalidRequest(f"window must have x0, y0 >= 0 and w, h > 0, got {values!r}")
        return window

    def to_rasterio(self):
        from rasterio.windows import Window as RioWindow

        return RioWindow(self.col_off, self.row_off, self.width, self.height)


@dataclass(frozen=True)
class Grid:
    """Windows of ``tile_size`` covering a ``width`` x ``height`` raster, edge windows smaller."""

    width: int
    height: int
    tile_size: int = DEFAULT_TILE_SIZE

    def __post_init__(self):
        for name in ("width", "height", "tile_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidRequest(f"{name} must be a positive integer, got {value!r}")
        if not MIN_TILE_SIZE <= self.tile_size <= MAX_TILE_SIZE:
            raise InvalidRequest(
                f"tile_size must be between {MIN_TILE_SIZE} and {MAX_TILE_SIZE}, got {self.tile_size}"
            )

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_size)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile_size)

    def __len__(self) -> int:
        return self.rows * self.cols

    def tile_ids(self) -> Iterator[TileId]:
        """Every tile id, row by row."""
        for row in range(self.rows):
            for col in range(self.cols):
                yield TileId(row, col)

    def window(self, tile: TileId | str) -> Window:
        """The window of a tile id; raises InvalidRequest if it is not in this grid."""
        if isinstance(tile, str):
            tile = TileId.parse(tile)
        if not (0 <= tile.row < self.rows and 0 <= tile.col < self.cols):
            raise InvalidRequest(f"tile {tile} is outside a grid of {self.rows} x {self.cols} tiles")
        x0 = tile.col * self.tile_size
        y0 = tile.row * self.tile_size
        return Window(x0, y0, min(self.tile_size, self.width - x0), min(self.tile_size, self.height - y0))

    def tile_id(self, window: Window) -> TileId:
        """The tile id of one of this grid's windows; raises InvalidRequest for any other window."""
        tile = TileId(window.row_off // self.tile_size, window.col_off // self.tile_size)
        if (
            window.col_off % self.tile_size
            or window.row_off % self.tile_size
            or not (0 <= tile.row < self.rows and 0 <= tile.col < self.cols)
            or self.window(tile) != window
        ):
            raise InvalidRequest(f"window {window.as_list()} is not a window of {self}")
        return tile

    def windows(self) -> Iterator[tuple[TileId, Window]]:
        """Every (tile id, window), row by row."""
        for tile in self.tile_ids():
            yield tile, self.window(tile)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "tile_size": self.tile_size}

    @classmethod
    def from_dict(cls, data: dict) -> "Grid":
        try:
            return cls(int(data["width"]), int(data["height"]), int(data["tile_size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"grid must have integer width, height and tile_size: {exc}") from exc


@dataclass(frozen=True)
class RasterGrid:
    """The grid every scene of a series shares.

    Attributes
    ----------
    width, height : int
        Size in pixels.
    crs : str
        ``"EPSG:xxxx"`` when the CRS has a code, else WKT; ``""`` if the raster has none.
    transform : tuple of float
        Affine coefficients ``(a, b, c, d, e, f)``.
    block : tuple of int
        Internal block ``(height, width)`` of the first band.
    """

    width: int
    height: int
    crs: str
    transform: tuple
    block: tuple

    @classmethod
    def from_dataset(cls, ds) -> "RasterGrid":
        """The grid of an open rasterio dataset."""
        block_h, block_w = ds.block_shapes[0]
        return cls(
            width=int(ds.width),
            height=int(ds.height),
            crs=ds.crs.to_string() if ds.crs else "",
            transform=tuple(float(v) for v in tuple(ds.transform)[:6]),
            block=(int(block_h), int(block_w)),
        )

    def to_dict(self) -> dict:
        """A JSON-safe dict, for job manifests."""
        return {
            "width": self.width,
            "height": self.height,
            "crs": self.crs,
            "transform": list(self.transform),
            "block": list(self.block),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RasterGrid":
        """Inverse of :meth:`to_dict`; raises InvalidRequest on a malformed dict."""
        try:
            width, height = int(data["width"]), int(data["height"])
            crs = data["crs"]
            transform = tuple(float(v) for v in data["transform"])
            block = tuple(int(v) for v in data["block"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"raster grid must have width, height, crs, transform, block: {exc!r}") from None
        if not isinstance(crs, str) or len(transform) != 6 or len(block) != 2:
            raise InvalidRequest(f"raster grid has a bad crs, transform or block: {data!r}")
        if width <= 0 or height <= 0 or min(block) <= 0:
            raise InvalidRequest(f"raster grid sizes must be positive: {data!r}")
        return cls(width, height, crs, transform, block)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    def window_transform(self, window: Window) -> Affine:
        """The transform of ``window``: this grid's transform shifted by the window's offset."""
        a, b, c, d, e, f = self.transform
        col, row = window.col_off, window.row_off
        return Affine(a, b, c + a * col + b * row, d, e, f + d * col + e * row)

    def contains(self, window: Window) -> bool:
        return (
            window.col_off >= 0
            and window.row_off >= 0
            and window.width > 0
            and window.height > 0
            and window.col_off + window.width <= self.width
            and window.row_off + window.height <= self.height
        )
