"""A grid's outline in WGS 84 (densified, counter-clockwise, split at the antimeridian): STAC geometry and bbox."""

from __future__ import annotations

#: Points per edge of the footprint before reprojection: projected edges bend in WGS 84.
DENSIFY = 20
#: Decimal places of WGS 84 coordinates: 1e-7 degrees is about 1 cm.
DIGITS = 7


def _ring_area(ring: list[tuple[float, float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1])) / 2


def _clip(ring: list[tuple[float, float]], keep_west: bool) -> list[tuple[float, float]]:
    """Sutherland-Hodgman: the part of ``ring`` west (or east) of the meridian 180 (unwrapped)."""
    inside = (lambda x: x <= 180) if keep_west else (lambda x: x >= 180)
    out = []
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        if inside(x0):
            out.append((x0, y0))
        if inside(x0) != inside(x1):
            out.append((180.0, y0 + (y1 - y0) * (180 - x0) / (x1 - x0)))
    return out


def _closed(ring: list[tuple[float, float]], shift: float = 0.0) -> list[list[float]]:
    points = [[round(x + shift, DIGITS), round(y, DIGITS)] for x, y in ring]
    return points + points[:1]


def footprint(crs, transform, width: int, height: int) -> tuple[dict, list[float]]:
    """The grid's outline in WGS 84: a GeoJSON geometry and its bbox.

    Each edge is densified (``DENSIFY`` points) before reprojection, so the curved edges of a
    projected grid are followed. The ring is counter-clockwise (RFC 7946). A footprint across the
    antimeridian is a MultiPolygon split at 180 degrees, and its bbox has west > east, as GeoJSON
    and STAC want.

    Parameters
    ----------
    crs : rasterio.crs.CRS or str
        The grid's CRS.
    transform : affine.Affine
        Pixel to CRS coordinates.
    width, height : int
        The grid's size in pixels.

    Returns
    -------
    geometry : dict
        A GeoJSON Polygon (or MultiPolygon across the antimeridian).
    bbox : list of float
        ``[west, south, east, north]``.
    """
    from rasterio.warp import transform as reproject_points

    corners = [(0, 0), (0, height), (width, height), (width, 0)]
    pixels = [
        (c0 + (c1 - c0) * i / DENSIFY, r0 + (r1 - r0) * i / DENSIFY)
        for (c0, r0), (c1, r1) in zip(corners, corners[1:] + corners[:1])
        for i in range(DENSIFY)
    ]
    xs, ys = zip(*(transform @ pixel for pixel in pixels))
    lons, lats = reproject_points(crs, "EPSG:4326", list(xs), list(ys))
    ring, offset = [], 0.0
    for i, lon in enumerate(lons):  # unwrap: no step of more than 180 degrees between neighbours
        if i and abs(lon + offset - ring[-1][0]) > 180:
            offset -= 360 if lon + offset > ring[-1][0] else -360
        ring.append((lon + offset, lats[i]))
    if min(x for x, _ in ring) < -180:
        ring = [(x + 360, y) for x, y in ring]
    if _ring_area(ring) < 0:
        ring.reverse()
    south, north = round(min(lats), DIGITS), round(max(lats), DIGITS)
    if max(x for x, _ in ring) <= 180:
        geometry = {"type": "Polygon", "coordinates": [_closed(ring)]}
        return geometry, [round(min(x for x, _ in ring), DIGITS), south, round(max(x for x, _ in ring), DIGITS), north]
    west, east = _clip(ring, keep_west=True), _clip(ring, keep_west=False)
    geometry = {"type": "MultiPolygon", "coordinates": [[_closed(west)], [_closed(east, -360)]]}
    return geometry, [round(min(x for x, _ in west), DIGITS), south, round(max(x for x, _ in east) - 360, DIGITS), north]


def union_bbox(bboxes: list[list[float]]) -> list[float]:
    """The smallest ``[west, south, east, north]`` covering every bbox (west > east across the
    antimeridian), as a collection's spatial extent.

    Each bbox is an interval of longitude; the union is taken both as they are and with those west
    of 0 moved by +360 degrees, and the narrower of the two is kept (a union of bboxes on both sides
    of the antimeridian is narrow only in the second).

    Raises
    ------
    ValueError
        If there is no bbox.
    """
    if not bboxes:
        raise ValueError("no bbox to take the union of")
    intervals = [(w, e if e >= w else e + 360) for w, _, e, _ in bboxes]
    unions = []
    for shifted in (intervals, [(w + 360, e + 360) if w < 0 else (w, e) for w, e in intervals]):
        unions.append((min(w for w, _ in shifted), max(e for _, e in shifted)))
    west, east = min(unions, key=lambda u: u[1] - u[0])
    if east - west >= 360:
        west, east = -180.0, 180.0
    wrap = lambda x: x - 360 if x > 180 else x  # noqa: E731
    return [wrap(west), min(b[1] for b in bboxes), wrap(east), max(b[3] for b in bboxes)]
