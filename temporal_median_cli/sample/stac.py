"""The series as STAC: one item per scene, written as the ItemCollection items.json."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os

from .series import COG_MEDIA_TYPE, STAC_EXTENSIONS, SceneInfo, SeriesInfo
from .sky import platform_of


def cloud_cover_percent(scene: SceneInfo) -> float:
    """The scene's clouds (255) as a percentage of its valid footprint (the pixels not 0 in all
    bands), as STAC's ``eo:cloud_cover`` means it; 100 for a scene with no valid pixel."""
    valid = 1.0 - scene.nodata_fraction
    if valid <= 0:
        return 100.0
    return round(min(100.0, 100.0 * scene.cloud_fraction / valid), 4)


def footprint(series: SeriesInfo, per_edge: int = 4) -> tuple[list[float], dict]:
    """The scenes' WGS84 bbox and footprint: the grid's outline reprojected, ``per_edge`` segments a side.

    The bbox is rasterio.warp.transform_bounds' (edges densified by 21 points); the geometry a
    Polygon whose ring runs counter-clockwise (south-west, south-east, north-east, north-west),
    as GeoJSON wants, its positions rounded to 1e-7 degree.
    """
    from rasterio.crs import CRS
    from rasterio.warp import transform, transform_bounds

    crs = CRS.from_user_input(series.crs)
    a, _, c, _, e, f = series.transform
    xs = (c, c + a * series.width)
    ys = (f, f + e * series.height)
    west, south, east, north = min(xs), min(ys), max(xs), max(ys)
    bbox = [round(v, 7) for v in transform_bounds(crs, "EPSG:4326", west, south, east, north, densify_pts=21)]
    corners = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    ring_x, ring_y = [], []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        for k in range(per_edge):
            ring_x.append(x0 + (x1 - x0) * k / per_edge)
            ring_y.append(y0 + (y1 - y0) * k / per_edge)
    lons, lats = transform(crs, "EPSG:4326", ring_x, ring_y)
    ring = [[round(lon, 7), round(lat, 7)] for lon, lat in zip(lons, lats)]
    return bbox, {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def scl_asset(series: SeriesInfo, path: str) -> dict:
    """The ``scl`` asset of a scene whose classification is at ``path``: a COG at half the resolution."""
    from .scl import SCL_CLASSES

    return {
        "href": os.path.abspath(path),
        "type": COG_MEDIA_TYPE,
        "title": "Scene classification map (synthetic SCL)",
        "roles": ["data"],
        "proj:shape": list(series.scl_shape),
        "proj:transform": list(series.scl_transform),
        "raster:bands": [{"data_type": "uint8", "spatial_resolution": 2 * series.pixel_size}],
        "classification:classes": [
            {"value": value, "name": name, "description": text} for value, name, text in SCL_CLASSES
        ],
    }


def stac_items(series: SeriesInfo) -> list[dict]:
    """One STAC 1.1.0 item per scene of ``series``, in acquisition order.

    Each has the acquisition ``datetime``; ``platform`` (``sentinel-2a`` or ``sentinel-2b``,
    :func:`platform_of`: the same for every tile of one pass) and ``constellation``;
    ``eo:cloud_cover`` (:func:`cloud_cover_percent`); the scene as its ``visual`` asset
    (absolute local href, a COG) with ``proj:shape`` and ``proj:transform``; its
    classification as its ``scl`` asset (:func:`scl_asset`); ``proj:code`` and ``proj:epsg``;
    ``grid:code`` ``MGRS-<granule>`` (the sample's granule name: a code per tile, no real
    110 km MGRS tile); and bbox / geometry, the scene's outline in WGS84 (:func:`footprint`).

    Parameters
    ----------
    series : SeriesInfo
        A generated series.

    Returns
    -------
    list of dict
        The items, as JSON-ready dictionaries.
    """
    from rasterio.crs import CRS

    bbox, geometry = footprint(series)
    crs = CRS.from_user_input(series.crs)
    epsg = crs.to_epsg()
    projection = {"proj:code": f"EPSG:{epsg}", "proj:epsg": epsg} if epsg else {"proj:code": None, "proj:wkt2": crs.to_wkt()}
    items = []
    for scene, path, scl_path in zip(series.scenes, series.paths, series.scl_paths):
        items.append({
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": list(STAC_EXTENSIONS),
            "id": scene.name.removesuffix(".tif").removesuffix("_TCI"),
            "geometry": geometry,
            "bbox": bbox,
            "properties": {
                "datetime": scene.acquired,
                "platform": platform_of(dt.datetime.fromisoformat(scene.acquired.removesuffix("Z"))),
                "constellation": "sentinel-2",
                "eo:cloud_cover": cloud_cover_percent(scene),
                **projection,
                "grid:code": f"MGRS-{series.granule.removeprefix('T')}",
            },
            "links": [],
            "assets": {
                "visual": {
                    "href": os.path.abspath(path),
                    "type": COG_MEDIA_TYPE,
                    "title": "True colour (synthetic)",
                    "roles": ["visual"],
                    "proj:shape": [series.height, series.width],
                    "proj:transform": list(series.transform),
                },
                "scl": scl_asset(series, scl_path),
            },
        })
    return items


def write_items(path: str, items: list[dict]) -> str:
    """Write ``items`` as a STAC ItemCollection at ``path`` (atomically); returns ``path``."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"type": "FeatureCollection", "features": items}, f, indent=1)
    os.replace(tmp, path)
    return path


def write_item_collection(series: SeriesInfo) -> str:
    """Write ``items.json`` (a STAC ItemCollection of :func:`stac_items`) beside the scenes.

    It is not a .tif, so listing the folder for inputs still finds the scenes only. Returns
    its path.
    """
    return write_items(series.items_path, stac_items(series))
