"""Scenes and their acquisition times: from STAC items, or from Sentinel-2 file names."""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .errors import (
    InvalidRequest,
)

#: The asset of a STAC item that holds the true-colour scene (Earth Search, Planetary Computer).
DEFAULT_ASSET = "visual"

_CLOUD_SOURCES = ("eo:cloud_cover", "estimate")
_STAMP = re.compile(r"(?:^|[_.-])(\d{8}T\d{6})(?=$|[_.-])")


# --------------------------------------------------------------------------------------------
# Acquisition times
# --------------------------------------------------------------------------------------------


def time_from_name(url: str) -> datetime | None:
    """The acquisition time written in a Sentinel-2 file name, as an aware UTC datetime.

    Parameters
    ----------
    url : str
        A path or URL; its base name is searched for ``_YYYYMMDDTHHMMSS_`` first (e.g.
        ``T31TCJ_20230709T104629_TCI.tif``), then its folder's name (e.g.
        ``.../S2B_T31TCJ_20230709T104629_L2A/TCI.tif``). The first stamp found wins: in product
        names (``S2B_MSIL2A_<sensing>_N0511_R051_T31TCJ_<processing>``) it is the sensing time.

    Returns
    -------
    datetime or None
        None when no valid stamp is found.
    """
    path = urllib.parse.urlparse(url).path if "://" in url else url
    parts = [p for p in path.split("/") if p]
    for part in reversed(parts[-2:]):
        for match in _STAMP.finditer(part):
            try:
                return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            except ValueError:
                continue
    return None


def parse_datetime(value) -> datetime | None:
    """An RFC 3339 timestamp (STAC ``datetime``) as an aware UTC datetime; None if absent or malformed.

    Fractions beyond microseconds are cut; a timestamp without offset is taken as UTC.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def isoformat_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One input scene, with what is known about it before reading its pixels.

    Attributes
    ----------
    url : str
        Where the raster is: ``gs://``, ``https://`` or a local path.
    datetime : datetime or None
        Acquisition time, aware and in UTC.
    cloud_cover : float or None
        Percentage (0-100) of the scene's valid footprint covered by cloud.
    cloud_source : {"eo:cloud_cover", "estimate"} or None
        Where ``cloud_cover`` comes from: the STAC item's ``eo:cloud_cover``, or
        :func:`estimate_cloud_cover`; None when it is unknown.
    item_id : str or None
        The STAC item the scene comes from.
    """

    url: str
    datetime: datetime | None = None
    cloud_cover: float | None = None
    cloud_source: str | None = None
    item_id: str | None = None

    def __post_init__(self):
        if not isinstance(self.url, str) or not self.url:
            raise InvalidRequest(f"a scene needs a URL, got {self.url!r}")
        if self.datetime is not None and (
            not isinstance(self.datetime, datetime) or self.datetime.utcoffset() is None
        ):
            raise InvalidRequest(f"{self.url}: acquisition time must be an aware datetime, got {self.datetime!r}")
        if self.datetime is not None and self.datetime.utcoffset().total_seconds() != 0:
            object.__setattr__(self, "datetime", self.datetime.astimezone(UTC))
        if (self.cloud_cover is None) != (self.cloud_source is None):
            raise InvalidRequest(f"{self.url}: cloud_cover and cloud_source go together")
        if self.cloud_source is not None and self.cloud_source not in _CLOUD_SOURCES:
            raise InvalidRequest(f"{self.url}: unknown cloud_source {self.cloud_source!r}")
        if self.cloud_cover is not None:
            object.__setattr__(self, "cloud_cover", percentage(self.cloud_cover, f"{self.url}: cloud_cover"))

    @classmethod
    def from_url(cls, url: str) -> Scene:
        """A scene known by its URL only; its acquisition time read from the file name, if any."""
        return cls(url, time_from_name(url))

    @classmethod
    def from_item(cls, item: dict, asset: str = DEFAULT_ASSET, base: str | None = None) -> Scene:
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
        from .stac_items import asset_href, item_id_of  # STAC's side of a scene

        item_id = item_id_of(item)
        url = asset_href(item, asset, base)
        props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
        moment = parse_datetime(props.get("datetime")) or parse_datetime(props.get("start_datetime"))
        cover = props.get("eo:cloud_cover")
        if isinstance(cover, (int, float)) and not isinstance(cover, bool) and math.isfinite(cover) and 0 <= cover <= 100:
            return cls(url, moment or time_from_name(url), float(cover), "eo:cloud_cover", item_id)
        return cls(url, moment or time_from_name(url), None, None, item_id)

    def with_cloud_estimate(self, percent: float) -> Scene:
        """This scene with ``percent`` as its estimated cloud cover."""
        return replace(self, cloud_cover=float(percent), cloud_source="estimate")

    @property
    def name(self) -> str:
        """How messages name the scene: its item id, or its URL."""
        return self.item_id or self.url

    def to_dict(self) -> dict:
        """A JSON-safe dict, for job records."""
        return {
            "url": self.url,
            "datetime": isoformat_or_none(self.datetime),
            "cloud_cover": self.cloud_cover,
            "cloud_source": self.cloud_source,
            "item_id": self.item_id,
        }


def percentage(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"{what} must be a number between 0 and 100, got {value!r}")
    if not 0 <= value <= 100:
        raise InvalidRequest(f"{what} must be between 0 and 100, got {value!r}")
    return float(value)
