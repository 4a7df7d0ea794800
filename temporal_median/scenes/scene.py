"""Scenes and their acquisition times: from STAC items, or from Sentinel-2 file names."""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from temporal_median.base.clock import isoformat_or_none
from temporal_median.base.errors import InvalidRequest

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
    platform : str or None
        The satellite (STAC ``platform``, e.g. ``sentinel-2a``): scenes of one solar day and
        platform are one acquisition.
    bbox : tuple of float or None
        The item's footprint box in WGS 84 (west, south, east, north).
    """

    url: str
    datetime: datetime | None = None
    cloud_cover: float | None = None
    cloud_source: str | None = None
    item_id: str | None = None
    platform: str | None = None
    bbox: tuple | None = None
    #: The item's other assets we can read, as (key, href) pairs: e.g. its SCL mask.
    assets: tuple = ()

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
            "platform": self.platform,
        }


def percentage(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"{what} must be a number between 0 and 100, got {value!r}")
    if not 0 <= value <= 100:
        raise InvalidRequest(f"{what} must be between 0 and 100, got {value!r}")
    return float(value)
