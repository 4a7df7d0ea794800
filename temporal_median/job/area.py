"""An area job: the output grid a request names (bbox or intersects, crs, resolution), validated field by field."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from temporal_median.base.errors import InvalidRequest

#: The request fields of an output grid.
AREA_KEYS = ("bbox", "intersects", "crs", "resolution")
_GEOMETRIES = ("Polygon", "MultiPolygon")
#: What a CRS field may look like before it is resolved (fanout resolves it with PROJ).
_CRS_TEXT = re.compile(r"^(EPSG|epsg):\d{4,6}$")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_bbox(value, field: str = "bbox") -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4 or not all(_number(v) for v in value):
        raise InvalidRequest(f"'{field}' must be [west, south, east, north] in degrees, got {value!r}")
    west, south, east, north = (float(v) for v in value)
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise InvalidRequest(f"'{field}' must be longitudes in -180..180 and latitudes in -90..90, got {value!r}")
    if west >= east:
        raise InvalidRequest(f"'{field}': west {west} must be less than east {east} (an area across the antimeridian is two jobs)")
    if south >= north:
        raise InvalidRequest(f"'{field}': south {south} must be less than north {north}")
    return west, south, east, north


def _positions(coordinates, depth: int):
    if depth == 0:
        if not isinstance(coordinates, list) or len(coordinates) < 2 or not all(_number(v) for v in coordinates[:2]):
            raise InvalidRequest(f"'intersects' has a position that is not [lon, lat]: {coordinates!r}")
        yield float(coordinates[0]), float(coordinates[1])
        return
    if not isinstance(coordinates, list) or not coordinates:
        raise InvalidRequest("'intersects' has empty or malformed coordinates")
    for part in coordinates:
        yield from _positions(part, depth - 1)


def _geometry_bounds(geometry) -> tuple[float, float, float, float]:
    if not isinstance(geometry, dict) or geometry.get("type") not in _GEOMETRIES:
        raise InvalidRequest(f"'intersects' must be a GeoJSON Polygon or MultiPolygon, got {str(geometry)[:80]!r}")
    depth = 2 if geometry["type"] == "Polygon" else 3
    lons, lats = zip(*_positions(geometry.get("coordinates"), depth))
    return _check_bbox([min(lons), min(lats), max(lons), max(lats)], "intersects")


@dataclass(frozen=True)
class Area:
    """The output grid a job asks for: where (degrees), in which CRS, at which pixel size.

    Attributes
    ----------
    bbox : tuple of float or None
        ``(west, south, east, north)`` in WGS 84 degrees: from ``bbox``, or the bounds of
        ``intersects``. None: the union of the scenes' footprints.
    intersects : dict or None
        The GeoJSON geometry as given (its bounds are the area).
    crs : str or None
        The output CRS (``EPSG:32631``). None: the CRS the scenes share, else the UTM zone of
        the area's centre.
    resolution : float or None
        Pixel size in the CRS's units. None: the finest of the scenes'.
    """

    bbox: tuple | None = None
    intersects: dict | None = None
    crs: str | None = None
    resolution: float | None = None

    @classmethod
    def from_request(cls, body: dict) -> "Area | None":
        """The area of a request body, or None when it names none of :data:`AREA_KEYS`."""
        if not any(key in body for key in AREA_KEYS):
            return None
        if "bbox" in body and "intersects" in body:
            raise InvalidRequest("give 'bbox' or 'intersects', not both")
        bbox = _check_bbox(body["bbox"]) if "bbox" in body else None
        intersects = body.get("intersects")
        if intersects is not None:
            bbox = _geometry_bounds(intersects)
        crs = body.get("crs")
        if crs is not None and (not isinstance(crs, str) or not _CRS_TEXT.match(crs.strip())):
            raise InvalidRequest(f"'crs' must be an EPSG code like \"EPSG:32631\", got {crs!r}")
        resolution = body.get("resolution")
        if resolution is not None and (not _number(resolution) or resolution <= 0):
            raise InvalidRequest(f"'resolution' must be a positive number of the CRS's units, got {resolution!r}")
        return cls(bbox, intersects, crs.strip().upper() if crs else None, float(resolution) if resolution else None)

    def to_dict(self) -> dict:
        """The fields as requested (JSON-safe), for job ids and manifests."""
        return {
            "bbox": list(self.bbox) if self.bbox and self.intersects is None else None,
            "intersects": self.intersects,
            "crs": self.crs,
            "resolution": self.resolution,
        }
