"""STAC items as scenes: the asset to read, its href, and one grid for every item."""

from __future__ import annotations

import json
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


def _mgrs_code(props: dict) -> str | None:
    code = props.get("grid:code")
    if isinstance(code, str) and code:
        return code
    zone, band, square = (props.get(k) for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"))
    if str(zone).isdigit() and isinstance(band, str) and isinstance(square, str) and band and square:
        return f"MGRS-{int(zone):02d}{band}{square}"
    tile = props.get("s2:mgrs_tile")
    if isinstance(tile, str) and tile:
        return "MGRS-" + tile.removeprefix("T")
    return None


def _crs(props: dict, entry: dict) -> str | None:
    for source in (entry, props):
        code = source.get("proj:code")
        if isinstance(code, str) and code:
            return code.upper()
        epsg = source.get("proj:epsg")
        if isinstance(epsg, int) and not isinstance(epsg, bool):
            return f"EPSG:{epsg}"
    return None


def _grid_values(item: dict, asset: str) -> dict[str, str]:
    props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
    assets = item.get("assets") if isinstance(item.get("assets"), dict) else {}
    entry = assets.get(asset) if isinstance(assets.get(asset), dict) else {}
    values = {}
    tile = _mgrs_code(props)
    if tile:
        values["MGRS tile"] = tile
    crs = _crs(props, entry)
    if crs:
        values["CRS"] = crs
    for key, label in (("proj:transform", "transform"), ("proj:shape", "shape")):
        value = entry.get(key, props.get(key))
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            values[label] = "[" + ", ".join(f"{v:g}" for v in value[: 6 if key == "proj:transform" else 2]) + "]"
    return values


def check_one_grid(items: Sequence[dict], asset: str = DEFAULT_ASSET) -> None:
    """Refuse items whose ``asset`` is not on one grid, as far as their STAC metadata tells.

    Compared: the MGRS tile (``grid:code``, ``mgrs:*`` or ``s2:mgrs_tile``), the CRS
    (``proj:code`` or ``proj:epsg``, of the asset or the item) and the asset's
    ``proj:transform`` and ``proj:shape``. Items that do not give one of them are not compared
    on it: the fanout's header check still opens every scene.

    Raises
    ------
    InvalidRequest
        Listing, per property that differs, each value with the items that have it, and
        suggesting to narrow the search.
    """
    groups: dict[str, dict[str, list[str]]] = {}
    for item in items:
        for label, value in _grid_values(item, asset).items():
            groups.setdefault(label, {}).setdefault(value, []).append(item_id_of(item))
    problems, example = [], "MGRS-31TCJ"
    tiles = groups.get("MGRS tile")
    if tiles:
        example = max(tiles.items(), key=lambda kv: (len(kv[1]), kv[0]))[0]
    for label, by_value in groups.items():
        if len(by_value) > 1:
            listed = "; ".join(
                f"{value} ({len(ids)} item{'s' if len(ids) > 1 else ''}: {', '.join(ids[:_NAMED])}"
                f"{' ...' if len(ids) > _NAMED else ''})"
                for value, ids in sorted(by_value.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            )
            problems.append(f"{label}: {listed}")
    if problems:
        raise InvalidRequest(
            "the STAC items are not on one grid, and a median needs every scene on the same pixels: "
            + " | ".join(problems)
            + ". Narrow the search to one tile (e.g. a query or filter on grid:code, such as "
            + json.dumps({"grid:code": {"eq": example}})
            + ")"
        )


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
        return Scene(url, moment or time_from_name(url), float(cover), "eo:cloud_cover", item_id)
    return Scene(url, moment or time_from_name(url), None, None, item_id)


def scenes_from_items(items: Sequence[dict], asset: str = DEFAULT_ASSET, base: str | None = None) -> tuple[Scene, ...]:
    """The scenes of STAC items' ``asset``, in the items' order, after checking their grids.

    Raises
    ------
    InvalidRequest
        No items; items without the asset or a readable href (all of them named); items on
        more than one grid (:func:`check_one_grid`).
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
    check_one_grid(items, asset)
    return tuple(scenes)
