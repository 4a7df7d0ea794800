"""The series as STAC: one item per scene, written as the ItemCollection items.json."""

from __future__ import annotations

import json
import os

from .series import COG_MEDIA_TYPE, ITEMS_JSON, STAC_EXTENSIONS, SceneInfo, SeriesInfo


def cloud_cover_percent(scene: SceneInfo) -> float:
    """The scene's clouds (255) as a percentage of its valid footprint (the pixels not 0 in all
    bands), as STAC's ``eo:cloud_cover`` means it; 100 for a scene with no valid pixel."""
    valid = 1.0 - scene.nodata_fraction
    if valid <= 0:
        return 100.0
    return round(min(100.0, 100.0 * scene.cloud_fraction / valid), 4)


def stac_items(series: SeriesInfo) -> list[dict]:
    """One STAC 1.1.0 item per scene of ``series``, in acquisition order.

    Each has the acquisition ``datetime``; ``eo:cloud_cover`` (:func:`cloud_cover_percent`);
    the scene as its ``visual`` asset (absolute local href, a COG) with ``proj:shape`` and
    ``proj:transform``; ``proj:code`` and ``proj:epsg``; ``grid:code`` ``MGRS-<granule>`` (the
    sample's granule name: a fixed code per series, no real MGRS tile); and bbox / geometry,
    the scene's bounds in WGS84 (rasterio.warp.transform_bounds, densified edges).

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
    from rasterio.warp import transform_bounds

    a, _, c, _, e, f = series.transform
    xs = (c, c + a * series.width)
    ys = (f, f + e * series.height)
    west, south, east, north = (
        round(v, 7)
        for v in transform_bounds(CRS.from_user_input(series.crs), "EPSG:4326", min(xs), min(ys), max(xs), max(ys),
                                  densify_pts=21)
    )
    geometry = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    crs = CRS.from_user_input(series.crs)
    epsg = crs.to_epsg()
    projection = {"proj:code": f"EPSG:{epsg}", "proj:epsg": epsg} if epsg else {"proj:code": None, "proj:wkt2": crs.to_wkt()}
    items = []
    for scene, path in zip(series.scenes, series.paths):
        items.append({
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": list(STAC_EXTENSIONS),
            "id": scene.name.removesuffix(".tif").removesuffix("_TCI"),
            "geometry": geometry,
            "bbox": [west, south, east, north],
            "properties": {
                "datetime": scene.acquired,
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
            },
        })
    return items


def write_item_collection(series: SeriesInfo) -> str:
    """Write ``items.json`` (a STAC ItemCollection of :func:`stac_items`) beside the scenes.

    It is not a .tif, so listing the folder for inputs still finds the scenes only. Returns
    its path.
    """
    path = series.items_path
    tmp = os.path.join(series.out_dir, f".{ITEMS_JSON}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"type": "FeatureCollection", "features": stac_items(series)}, f, indent=1)
    os.replace(tmp, path)
    return path
