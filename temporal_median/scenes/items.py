"""STAC items as scenes: the asset to read, its href, and one grid for every item."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Sequence

from temporal_median.base.clock import parse_time_or_none
from temporal_median.base.errors import InvalidRequest
from temporal_median.scenes.scene import DEFAULT_ASSET, Scene, time_from_name

#: Items named in one error message at most.
_NAMED = 10


# --------------------------------------------------------------------------------------------
# STAC items: asset hrefs and grids
# --------------------------------------------------------------------------------------------


def item_id_of(item) -> str:
    if not isinstance(item, dict):
        raise InvalidRequest(f"a STAC item must be a JSON object, got {type(item).__name__}")
    item_id = item.get("id")
    return item_id if isinstance(item_id, str) and item_id else "<item without id>"


def _readable(href: str) -> bool:
    return href.startswith(("gs://", "https://")) or (href.startswith("/") and "://" not in href)


def asset_href(item: dict, asset: str = DEFAULT_ASSET, base: str | None = None) -> str:
    """The URL we read ``item``'s ``asset`` from.

    ``gs://``, ``https://`` and local hrefs are used as they are (``file://`` becomes a path;
    a relative href is resolved against ``base``, where the item was read from). Anything
    else, such as ``s3://`` (Earth Search lists ``alternate.s3`` beside an ``https://``
    href), is replaced by the asset's first ``alternate`` href we can read.

    Raises
    ------
    InvalidRequest
        Naming the item, when it has no such asset, or no readable href for it.
    """
    item_id = item_id_of(item)
    assets = item.get("assets")
    entry = assets.get(asset) if isinstance(assets, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("href"), str) or not entry["href"]:
        available = ", ".join(sorted(assets)) if isinstance(assets, dict) and assets else "none"
        raise InvalidRequest(f"item {item_id} has no asset {asset!r} (its assets: {available})")
    href = _absolute(entry["href"], base)
    if _readable(href):
        return href
    alternates = entry.get("alternate")
    if isinstance(alternates, dict):
        for alternate in alternates.values():
            if isinstance(alternate, dict) and isinstance(alternate.get("href"), str):
                candidate = _absolute(alternate["href"], base)
                if _readable(candidate):
                    return candidate
    raise InvalidRequest(
        f"item {item_id}: asset {asset!r} is at {href}, which cannot be read here (only gs://, https:// and local "
        "paths), and the asset lists no alternate href that can"
    )


def _absolute(href: str, base: str | None) -> str:
    if href.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(href).path)
    if "://" in href or href.startswith("/") or not base:
        return href
    if "://" in base:
        return urllib.parse.urljoin(base, href)
    return os.path.normpath(os.path.join(os.path.dirname(base), href))


def scene_from_item(item: dict, asset: str = DEFAULT_ASSET, base: str | None = None) -> Scene:
    """The scene of a STAC item's ``asset``.

    Parameters
    ----------
    item : dict
        A STAC item (GeoJSON Feature).
    asset : str
        Asset key holding the 3-band true-colour raster.
    base : str, optional
        Where the item was read from, to resolve relative hrefs.

    Returns
    -------
    Scene
        ``datetime`` from the item's ``datetime`` (or ``start_datetime``, or the file
        name); ``cloud_cover`` from ``eo:cloud_cover`` when it is a number in 0-100.

    Raises
    ------
    InvalidRequest
        When the item has no such asset, or its href cannot be read by us (see
        :func:`asset_href`).
    """
    item_id = item_id_of(item)
    url = asset_href(item, asset, base)
    props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
    moment = parse_time_or_none(props.get("datetime")) or parse_time_or_none(props.get("start_datetime"))
    cover = props.get("eo:cloud_cover")
    if isinstance(cover, (int, float)) and not isinstance(cover, bool) and math.isfinite(cover) and 0 <= cover <= 100:
        cover, source = float(cover), "eo:cloud_cover"
    else:
        cover, source = None, None
    platform = props.get("platform") if isinstance(props.get("platform"), str) and props.get("platform") else None
    assets = []
    for key in item.get("assets") or {}:
        if isinstance(key, str) and key != asset:
            try:
                assets.append((key, asset_href(item, key, base)))
            except InvalidRequest:
                pass  # an asset we could not read (s3:// only, no href): not one a job can use
    return Scene(url, moment or time_from_name(url), cover, source, item_id, platform, _wgs84_bbox(item), tuple(assets))


def _wgs84_bbox(item: dict) -> tuple | None:
    """The item's 2D ``bbox`` (west, south, east, north; degrees), if it has a valid one."""
    bbox = item.get("bbox")
    if not isinstance(bbox, list) or len(bbox) not in (4, 6):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None
    west, south, east, north = (bbox[0], bbox[1], bbox[2], bbox[3]) if len(bbox) == 4 else (bbox[0], bbox[1], bbox[3], bbox[4])
    return (float(west), float(south), float(east), float(north)) if west < east and south < north else None


def scenes_from_items(items: Sequence[dict], asset: str = DEFAULT_ASSET, base: str | None = None) -> tuple[Scene, ...]:
    """The scenes of STAC items' ``asset``, in the items' order, on whatever grids they are.

    Items of several tiles or UTM zones are welcome: the job's output grid is decided after
    the selection (fanout), from the scenes kept.

    Raises
    ------
    InvalidRequest
        No items; items without the asset or a readable href (all of them named).
    """
    if not items:
        raise InvalidRequest("no STAC item to take scenes from")
    problems, scenes = [], []
    for item in items:
        try:
            scenes.append(scene_from_item(item, asset, base))
        except InvalidRequest as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - _NAMED} more)" if len(problems) > _NAMED else ""
        raise InvalidRequest("; ".join(problems[:_NAMED]) + more)
    return tuple(scenes)
