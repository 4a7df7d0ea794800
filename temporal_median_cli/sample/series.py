"""The series' constants and descriptions: profiles, file names, SceneInfo and SeriesInfo."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field

#: Default geometry per profile. The demo is 2600 x 2200 (not multiples of 1024, so the 3 x 3
#: window grid has 552- and 152-pixel edge windows) with 108 dates (every ~3.4 days: half the
#: real year's 216, so the stacks are deep enough that reading, not fixed costs, dominates).
#: ``area`` is the multi-tile series (``--tiles``): three overlapping tiles of 1000 x 1000 in two
#: UTM zones, 24 dates (see :mod:`.area`).
PROFILES = {
    "demo": {"scenes": 108, "width": 2600, "height": 2200},
    "full": {"scenes": 216, "width": 10980, "height": 10980},
    "area": {"scenes": 24, "width": 1000, "height": 1000, "tiles": 3},
}
DEFAULT_CRS = "EPSG:32631"
DEFAULT_ORIGIN = (300000.0, 4900020.0)
DEFAULT_PIXEL_SIZE = 10.0
SERIES_JSON = "series.json"
ITEMS_JSON = "items.json"
#: What a multi-tile series writes last in OUT_DIR, beside its tiles' folders (see :mod:`.area`).
AREA_JSON = "area.json"
GROUND_TRUTH = "truth/ground_truth.tif"
#: The scene classifications' folder: beside the scenes, a listing of OUT_DIR for inputs would
#: take them for scenes.
SCL_DIR = "scl"
#: STAC extensions the sample's items use (the versions pystac writes and reads).
STAC_EXTENSIONS = (
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
)
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STRIP_ROWS = 256
GRANULE = re.compile(r"^T\d{2}[A-Z]{3}$")


def scl_name(scene_name: str) -> str:
    """The scene classification's file name: the scene's with ``_SCL`` in place of ``_TCI``."""
    return scene_name.replace("_TCI", "_SCL")


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
    #: For a tile of a multi-tile series: the area's parameters (see :mod:`.area`), else None.
    area: dict | None = None

    @property
    def transform(self) -> tuple:
        """Affine coefficients (a, b, c, d, e, f) of every scene."""
        return (self.pixel_size, 0.0, self.origin[0], 0.0, -self.pixel_size, self.origin[1])

    @property
    def paths(self) -> list[str]:
        """Scene paths in acquisition order."""
        return [os.path.join(self.out_dir, s.name) for s in self.scenes]

    @property
    def scl_paths(self) -> list[str]:
        """The scenes' classifications (SCL), in the scenes' order."""
        return [os.path.join(self.out_dir, SCL_DIR, scl_name(s.name)) for s in self.scenes]

    @property
    def scl_transform(self) -> tuple:
        """Affine coefficients of the classifications: the scenes' at half the resolution."""
        return (2 * self.pixel_size, 0.0, self.origin[0], 0.0, -2 * self.pixel_size, self.origin[1])

    @property
    def scl_shape(self) -> tuple[int, int]:
        """(rows, columns) of the classifications: ceil(height / 2), ceil(width / 2)."""
        return ((self.height + 1) // 2, (self.width + 1) // 2)

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
        } | ({"area": self.area} if self.area is not None else {})

    def to_dict(self) -> dict:
        """What series.json holds: the fields, the transform, and the scenes as dictionaries."""
        data = asdict(self)
        data.pop("out_dir")
        data["origin"] = list(self.origin)
        data["transform"] = list(self.transform)
        data["scenes"] = [asdict(s) for s in self.scenes]
        if self.area is None:
            data.pop("area")
        return data

    @classmethod
    def from_dict(cls, data: dict, out_dir: str) -> SeriesInfo:
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
            area=data.get("area"),
        )

    @classmethod
    def load(cls, out_dir: str) -> SeriesInfo | None:
        """The series described by OUT_DIR/series.json, or None if there is none (or it is unreadable)."""
        try:
            with open(os.path.join(out_dir, SERIES_JSON), encoding="utf-8") as f:
                return cls.from_dict(json.load(f), out_dir)
        except (OSError, ValueError, KeyError, TypeError):
            return None
