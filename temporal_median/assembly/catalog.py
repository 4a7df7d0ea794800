"""A job's results as STAC 1.1.0: one item per composite (the whole range, each period), one collection."""

from __future__ import annotations

import posixpath
import re
from datetime import date, datetime

from temporal_median.assembly.footprint import footprint, union_bbox
from temporal_median.base.clock import isoformat
from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.raster.profiles import BAND_COUNT, BAND_DESCRIPTIONS, NODATA

# Where everything lives, relative to the job's folder <output>/<job_id>/ (so the folder can be
# copied anywhere and still load):
#
#   collection.json                      the job's collection, linking every item
#   item.json, median.tif, quicklook.png the whole range's composite (item id <job_id>)
#   job.json                             the job record (every item's "metadata" asset)
#   <period>/item.json, median.tif, ...  one folder per period (item id <job_id>-<period>)
#
# Each item sits beside its composite, as STAC's best practices lay catalogues out, so a period's
# folder describes itself. The item's file name is fixed ("item.json", not "<item-id>.json"): a
# job may be called "job" or "collection", whose item would otherwise overwrite job.json or
# collection.json.

STAC_VERSION = "1.1.0"
#: The extension versions pystac (1.15) reads and writes: eo, raster and projection v2 (proj:code).
EO_EXTENSION = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EXTENSIONS = [EO_EXTENSION, PROJECTION_EXTENSION, RASTER_EXTENSION]
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
COLLECTION_FILE = "collection.json"
ITEM_FILE = "item.json"
#: A period's name is its folder's: one path segment, no dots (never a file's name).
_PERIOD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: eo:bands names of the four bands (band 4 has no common name: it is not light).
_EO_NAMES = ("red", "green", "blue", "count")
LICENSE_NOTE = (
    "Derived from the job's inputs (listed in job.json): their terms apply. For Copernicus "
    "Sentinel-2 data: free and open, credited as 'Contains modified Copernicus Sentinel data'."
)


# --------------------------------------------------------------------------------------------
# Names and paths
# --------------------------------------------------------------------------------------------


def item_id(job_id: str, name: str | None) -> str:
    """The id of a composite's item: ``<job_id>`` for the whole range (``name`` None), else
    ``<job_id>-<name>``."""
    return job_id if name is None else f"{job_id}-{_period(name)}"


def item_path(name: str | None) -> str:
    """Where a composite's item lives, relative to the job's folder: ``item.json`` for the whole
    range (``name`` None), ``<name>/item.json`` for a period."""
    return ITEM_FILE if name is None else f"{_period(name)}/{ITEM_FILE}"


def composite_hrefs(name: str | None) -> dict[str, str]:
    """The asset hrefs :func:`composite_item` expects for the standard layout, relative to the
    item: ``./median.tif``, ``./quicklook.png`` and the job record (``./job.json`` at the job
    root, ``../job.json`` from a period's folder)."""
    return {
        "cog_href": "./median.tif",
        "quicklook_href": "./quicklook.png",
        "record_href": "./job.json" if name is None else "../job.json",
    }


def _period(name) -> str:
    if not isinstance(name, str) or not _PERIOD.match(name):
        raise InvalidRequest(
            f"a period's name must be 1 to 64 characters of letters, digits, '-' and '_' (it names a "
            f"folder), got {name!r}"
        )
    return name


def _relative_href(href, item_dir: str, what: str) -> str:
    """``href`` if it is relative and, resolved from the item's folder, stays in the job's folder."""
    if not isinstance(href, str) or not href or "://" in href or href.startswith(("/", "\\")) or ":" in href:
        raise InvalidRequest(f"{what} must be a relative href (the job's folder is copied as it is), got {href!r}")
    resolved = posixpath.normpath(posixpath.join(item_dir, href))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        raise InvalidRequest(f"{what} {href!r} resolves outside the job's folder")
    return href


def _day(value, what: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidRequest(f"{what} must be a date or an ISO date like '2023-06-01', got {value!r}")


def period_datetimes(start, end) -> tuple[str, str]:
    """``start_datetime`` and ``end_datetime`` of a period from its first and last days (dates or
    ISO dates): the first day at 00:00:00Z and the last at 23:59:59Z.

    Raises
    ------
    InvalidRequest
        If a day is malformed or ``start`` is after ``end``.
    """
    first, last = _day(start, "start"), _day(end, "end")
    if first > last:
        raise InvalidRequest(f"start {first} is after end {last}")
    return f"{first.isoformat()}T00:00:00Z", f"{last.isoformat()}T23:59:59Z"


def _timestamp(value, what: str) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRequest(f"{what} must be an RFC 3339 time, got {value!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidRequest(f"{what} must be a time with its zone (UTC), got {value!r}")
    return isoformat(value)


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


def _grid(cog_path: str):
    import rasterio

    with rasterio.open(cog_path) as src:
        if src.count != BAND_COUNT or set(src.dtypes) != {"uint8"}:
            raise InputMismatch(f"{cog_path} has {src.count} bands of {set(src.dtypes)}; a composite has {BAND_COUNT} of uint8")
        if src.crs is None:
            raise InputMismatch(f"{cog_path} has no CRS: a composite is georeferenced")
        return src.crs, src.transform, src.width, src.height


def band_fields(resolution: float | None = None) -> dict:
    """``raster:bands`` and ``eo:bands`` of a composite's data asset: R, G, B (uint8, nodata 0)
    and the valid-sample count (uint8, no nodata: 0 means no valid sample)."""
    raster = []
    for index, description in enumerate(BAND_DESCRIPTIONS):
        band = {"data_type": "uint8"}
        if index < 3:
            band["nodata"] = NODATA
        else:
            band["description"] = description
        if resolution is not None:
            band["spatial_resolution"] = resolution
        raster.append(band)
    eo = [{"name": name, "common_name": name} for name in _EO_NAMES[:3]]
    eo.append({"name": _EO_NAMES[3], "description": BAND_DESCRIPTIONS[3]})
    return {"raster:bands": raster, "eo:bands": eo}


def composite_item(
    job_id: str,
    name: str | None,
    start,
    end,
    cog_path: str,
    *,
    cog_href: str,
    quicklook_href: str,
    record_href: str,
    created,
    count_of_scenes: int | None = None,
    platform: str | None = None,
    constellation: str | None = None,
) -> dict:
    """The STAC 1.1.0 item of one composite, as a dict ready for ``json.dump``.

    It is meant to be written to ``<output>/<job_id>/`` + :func:`item_path` (``name``), beside its
    composite: its links (self, parent, collection, root) are relative hrefs that hold there.

    Parameters
    ----------
    job_id : str
        The job (and its collection's id).
    name : str or None
        The period (``"2023-01"``, ``"2023-Q1"``, ``"2023-DJF"``...; it names the period's folder),
        or None for the composite of the whole date range.
    start, end : datetime.date or str
        First and last day of the composite's dates (ISO dates accepted):
        ``start_datetime`` is ``start`` at 00:00:00Z, ``end_datetime`` is ``end`` at 23:59:59Z.
    cog_path : str
        Local path of the composite's COG, opened to read its grid (CRS, transform, size).
    cog_href, quicklook_href, record_href : str
        The COG, the quicklook PNG and ``job.json``, relative to the item's folder and inside the
        job's folder (see :func:`composite_hrefs` for the standard layout).
    created : datetime.datetime or str
        When the composite was made (aware; written in UTC).
    count_of_scenes : int, optional
        The scenes the composite was computed from (``tm:scene_count``).
    platform, constellation : str, optional
        STAC common metadata, e.g. ``constellation="sentinel-2"``.

    Returns
    -------
    dict
        The item: WGS 84 geometry and bbox, ``datetime`` null with ``start_datetime`` and
        ``end_datetime``, the projection extension (``proj:code`` and ``proj:bbox`` on the item,
        ``proj:shape`` and ``proj:transform`` on the data asset), ``raster:bands`` and
        ``eo:bands`` on the data asset, and the assets data, overview and metadata.

    Raises
    ------
    InvalidRequest
        A malformed period name, day, time or href (absolute, or outside the job's folder).
    InputMismatch
        If the COG is not 4 bands of uint8 or has no CRS.
    """
    identifier = item_id(job_id, name)
    item_dir = posixpath.dirname(item_path(name)) or "."
    hrefs = {
        what: _relative_href(href, item_dir, what)
        for what, href in (("cog_href", cog_href), ("quicklook_href", quicklook_href), ("record_href", record_href))
    }
    start_datetime, end_datetime = period_datetimes(start, end)
    crs, transform, width, height = _grid(cog_path)
    geometry, bbox = footprint(crs, transform, width, height)
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    properties = {
        "title": f"Temporal median of {name}" if name else "Temporal median of the whole date range",
        "datetime": None,
        "start_datetime": start_datetime,
        "end_datetime": end_datetime,
        "created": _timestamp(created, "created"),
        **_crs_fields(crs),
        "proj:bbox": [min(left, right), min(top, bottom), max(left, right), max(top, bottom)],
    }
    if count_of_scenes is not None:
        if not isinstance(count_of_scenes, int) or isinstance(count_of_scenes, bool) or count_of_scenes < 0:
            raise InvalidRequest(f"count_of_scenes must be a count, got {count_of_scenes!r}")
        properties["tm:scene_count"] = count_of_scenes
    for key, value in (("platform", platform), ("constellation", constellation)):
        if value is not None:
            properties[key] = value
    to_collection = posixpath.relpath(COLLECTION_FILE, item_dir)
    to_collection = to_collection if to_collection.startswith("../") else f"./{to_collection}"
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS),
        "id": identifier,
        "collection": job_id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "links": [
            {"rel": "self", "href": f"./{ITEM_FILE}", "type": "application/geo+json"},
            {"rel": "parent", "href": to_collection, "type": "application/json"},
            {"rel": "collection", "href": to_collection, "type": "application/json"},
            {"rel": "root", "href": to_collection, "type": "application/json"},
        ],
        "assets": {
            "data": {
                "href": hrefs["cog_href"],
                "type": COG_MEDIA_TYPE,
                "title": "Composite: R, G, B and the valid-sample count",
                "roles": ["data"],
                "proj:shape": [height, width],
                "proj:transform": list(transform)[:6],
                **band_fields(abs(transform.a)),
            },
            "overview": {"href": hrefs["quicklook_href"], "type": "image/png", "title": "Quicklook", "roles": ["overview"]},
            "metadata": {"href": hrefs["record_href"], "type": "application/json", "title": "Job record", "roles": ["metadata"]},
        },
    }


def _crs_fields(crs) -> dict:
    epsg = crs.to_epsg()
    if epsg is not None:
        return {"proj:code": f"EPSG:{epsg}"}
    return {"proj:code": None, "proj:wkt2": crs.to_wkt(version="WKT2_2019")}


# --------------------------------------------------------------------------------------------
# The job's collection
# --------------------------------------------------------------------------------------------


def _name_of(item: dict, job_id: str) -> str | None:
    """The period of an item :func:`composite_item` made for ``job_id`` (None: the whole range)."""
    if not isinstance(item, dict) or item.get("type") != "Feature" or item.get("collection") != job_id:
        raise InvalidRequest(f"not an item of job {job_id!r}: {item.get('id') if isinstance(item, dict) else item!r}")
    if item["id"] == job_id:
        return None
    if not item["id"].startswith(f"{job_id}-"):
        raise InvalidRequest(f"item {item['id']!r} is not named <job_id> or <job_id>-<period>")
    return _period(item["id"][len(job_id) + 1 :])


def _summary(items: list[dict], key: str) -> list:
    return sorted({item["properties"][key] for item in items if item["properties"].get(key) is not None})


def job_collection(
    job_id: str,
    items: list[dict],
    *,
    description: str,
    created,
    keywords: list[str] | None = None,
    license_note: str = LICENSE_NOTE,
) -> dict:
    """The job's STAC 1.1.0 collection over its composites' items, as a dict ready for ``json.dump``.

    It is meant to be written to ``<output>/<job_id>/collection.json``; its ``item`` links point
    to each item where :func:`item_path` puts it, relative to the collection.

    Parameters
    ----------
    job_id : str
        The collection's id (the items' ``collection``).
    items : list of dict
        Items from :func:`composite_item` for this job, linked in this order (ids unique).
    description : str
        What the composites are (CommonMark).
    created : datetime.datetime or str
        When the collection was made (aware; written in UTC).
    keywords : list of str, optional
        Added to the standard ones ("temporal median", "composite", ...).
    license_note : str
        Why the licence is "other": the composites are derived from the inputs, whose terms apply.

    Returns
    -------
    dict
        The collection: its extent is the union of the items' bboxes and the earliest
        ``start_datetime`` to the latest ``end_datetime``; summaries of ``proj:code``,
        ``constellation`` and ``platform``; ``item_assets`` with the data asset's bands.

    Raises
    ------
    InvalidRequest
        If there is no item, an item is not this job's, or two items share an id.
    """
    if not items:
        raise InvalidRequest(f"job {job_id!r} has no composite to catalogue")
    names = [_name_of(item, job_id) for item in items]
    ids = [item["id"] for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"items of job {job_id!r} share an id: {sorted(i for i in ids if ids.count(i) > 1)}")
    starts = [item["properties"]["start_datetime"] for item in items]
    ends = [item["properties"]["end_datetime"] for item in items]
    summaries = {key: values for key in ("proj:code", "constellation", "platform") if (values := _summary(items, key))}
    data_asset = items[0]["assets"]["data"]
    resolutions = {item["assets"]["data"]["raster:bands"][0].get("spatial_resolution") for item in items}
    if len(resolutions) == 1 and None not in resolutions:
        summaries["gsd"] = sorted(resolutions)
    standard = ["temporal median", "composite", "cloud-free", "mosaic", *_summary(items, "constellation")]
    links = [
        {"rel": "root", "href": f"./{COLLECTION_FILE}", "type": "application/json"},
        {"rel": "self", "href": f"./{COLLECTION_FILE}", "type": "application/json"},
    ]
    for item, name in zip(items, names):
        links.append({"rel": "item", "href": f"./{item_path(name)}", "type": "application/geo+json",
                      "title": item["properties"].get("title", item["id"])})
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS),
        "id": job_id,
        "title": f"Temporal median composites of job {job_id}",
        "description": description,
        "keywords": list(dict.fromkeys([*standard, *(keywords or [])])),
        "license": "other",
        "tm:license_note": license_note,
        "providers": [{"name": "temporal-median", "roles": ["processor"],
                       "description": "Serverless temporal-median composites (this job's job.json says how)"}],
        "extent": {
            "spatial": {"bbox": [union_bbox([item["bbox"] for item in items])]},
            "temporal": {"interval": [[min(starts), max(ends)]]},
        },
        "summaries": summaries,
        "item_assets": {
            "data": {"type": COG_MEDIA_TYPE, "roles": ["data"], "title": data_asset["title"],
                     **band_fields(*resolutions if len(resolutions) == 1 else [None])},
            "overview": {"type": "image/png", "roles": ["overview"], "title": "Quicklook"},
            "metadata": {"type": "application/json", "roles": ["metadata"], "title": "Job record"},
        },
        "created": _timestamp(created, "created"),
        "links": links,
    }
