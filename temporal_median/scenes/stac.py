"""STAC inputs of a job: an ItemCollection document, or a STAC API item search."""

from __future__ import annotations

import json
import math
import urllib.parse
import warnings
from dataclasses import dataclass, field
from datetime import date

from temporal_median.base.clock import parse_time_or_none
from temporal_median.base.errors import (
    InputUnreadable,
    InvalidRequest,
    StorageUnavailable,
    TemporalMedianError,
)
from temporal_median.scenes.items import scenes_from_items
from temporal_median.scenes.scene import DEFAULT_ASSET, Scene

#: Most items a STAC search may bring into one job, unless the caller allows more or fewer.
DEFAULT_MAX_ITEMS = 1000
#: Seconds to connect to, and to wait for an answer from, a STAC API or an ItemCollection URL.
HTTP_TIMEOUT = (10.0, 60.0)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_SEARCH_KEYS = {"url", "collections", "bbox", "intersects", "datetime", "query", "filter", "max_items"}


# --------------------------------------------------------------------------------------------
# STAC inputs: an ItemCollection file, or a STAC API search
# --------------------------------------------------------------------------------------------


def _check_http_url(url, what: str) -> str:
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise InvalidRequest(f"{what} must be a URL of at most 2048 characters, got {url!r}")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        return url
    if parsed.scheme == "http" and parsed.hostname in _LOOPBACK:
        return url
    raise InvalidRequest(f"{what} must be an https:// URL (http:// only on this machine's loopback), got {url!r}")


def _transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def _http_get(url: str, what: str) -> bytes:
    import requests

    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT)
    except requests.RequestException as exc:
        raise StorageUnavailable(f"cannot reach {what} at {url}: {type(exc).__name__}: {exc}") from exc
    if _transient_status(response.status_code):
        raise StorageUnavailable(f"{what} at {url} answered HTTP {response.status_code}, worth a retry")
    if response.status_code == 404:
        raise InputUnreadable(f"{what} at {url} does not exist (HTTP 404)")
    if response.status_code >= 400:
        raise InvalidRequest(f"{what} at {url} refused the request: HTTP {response.status_code}: {response.text[:300]}")
    return response.content


@dataclass(frozen=True)
class ItemCollectionSource:
    """A STAC ItemCollection (GeoJSON FeatureCollection of items) at a URL or path."""

    url: str

    @classmethod
    def from_request(cls, url, *, allow_local: bool = False) -> ItemCollectionSource:
        """Validate the location: ``gs://``, ``https://`` (``http://`` on loopback) or, where
        allowed, an absolute local path; InvalidRequest naming ``inputs`` otherwise."""
        if not isinstance(url, str) or not url or len(url) > 2048:
            raise InvalidRequest(f"'inputs' must be a location of at most 2048 characters, got {url!r}")
        if url.startswith("gs://"):
            bucket, _, key = url[len("gs://") :].partition("/")
            if not bucket or not key:
                raise InvalidRequest(f"'inputs': an ItemCollection must be an object, gs://bucket/key: {url!r}")
        elif url.startswith(("https://", "http://")):
            _check_http_url(url, "'inputs'")
        elif url.startswith("/") and "://" not in url:
            if not allow_local:
                raise InvalidRequest(f"'inputs': local paths are not allowed here (only gs:// and https://): {url!r}")
            if ".." in url.split("/"):
                raise InvalidRequest(f"'inputs': '..' is not allowed in {url!r}")
        else:
            raise InvalidRequest(f"'inputs': an ItemCollection must be at a gs:// or https:// URL, got {url!r}")
        return cls(url)

    def read(self) -> bytes:
        """The file's bytes (google-cloud-storage for gs://, HTTP GET, or the local file)."""
        if self.url.startswith("gs://"):
            from temporal_median.base.storage import GsUrl, read_bytes

            data = read_bytes(GsUrl.parse(self.url))
            if data is None:
                raise InputUnreadable(f"ItemCollection {self.url} does not exist")
            return data
        if "://" in self.url:
            return _http_get(self.url, "the ItemCollection")
        try:
            with open(self.url, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise InputUnreadable(f"ItemCollection {self.url} does not exist") from None
        except OSError as exc:
            raise InputUnreadable(f"ItemCollection {self.url} cannot be read: {exc}") from exc

    def items(self) -> list[dict]:
        """The items it holds.

        Raises
        ------
        InvalidRequest
            When it is not JSON, or not a FeatureCollection of objects.
        InputUnreadable, StorageUnavailable
            When it cannot be read (missing; storage trouble worth a retry).
        """
        try:
            data = json.loads(self.read())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"ItemCollection {self.url} is not JSON: {exc}") from None
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(features, list):
            raise InvalidRequest(f"{self.url} is not a STAC ItemCollection (a GeoJSON FeatureCollection of items)")
        if not all(isinstance(f, dict) for f in features):
            raise InvalidRequest(f"ItemCollection {self.url} holds features that are not JSON objects")
        return features

    def to_dict(self) -> dict:
        return {"item_collection": self.url}


def _check_datetime_interval(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'stac.datetime' must be a string like \"2023-01-01/2023-12-31\", got {value!r}")
    parts = value.strip().split("/")
    if len(parts) > 2 or all(p in ("", "..") for p in parts):
        raise InvalidRequest(f"'stac.datetime' must be one time or an interval \"start/end\", got {value!r}")
    for part in parts:
        if part in ("", ".."):
            continue
        try:
            date.fromisoformat(part)
        except ValueError:
            if parse_time_or_none(part) is None:
                raise InvalidRequest(
                    f"'stac.datetime': {part!r} is neither a date (2023-01-01) nor an RFC 3339 time"
                ) from None
    return value.strip()


def _check_bbox(value) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) not in (4, 6)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise InvalidRequest(f"'stac.bbox' must be [west, south, east, north] in degrees, got {value!r}")
    half = len(value) // 2
    west, south, east, north = value[0], value[1], value[half], value[half + 1]
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidRequest(f"'stac.bbox' is outside WGS84 degrees or has south > north: {value!r}")
    return tuple(float(v) for v in value)


def _check_geometry(value) -> dict:
    if (
        not isinstance(value, dict)
        or value.get("type") not in ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
        or "coordinates" not in value
    ):
        raise InvalidRequest(f"'stac.intersects' must be a GeoJSON geometry (type and coordinates), got {value!r}")
    return value


@dataclass(frozen=True)
class StacSearch:
    """A STAC API item search, validated (see :meth:`from_request`)."""

    url: str
    collections: tuple[str, ...]
    bbox: tuple[float, ...] | None = None
    intersects: dict | None = field(default=None, hash=False)
    datetime: str | None = None
    query: dict | None = field(default=None, hash=False)
    filter: dict | None = field(default=None, hash=False)
    max_items: int = DEFAULT_MAX_ITEMS

    @classmethod
    def from_request(cls, spec, *, max_items_limit: int = DEFAULT_MAX_ITEMS) -> StacSearch:
        """Validate a job's ``stac`` object.

        Parameters
        ----------
        spec : dict
            ``url`` (the API root, https://), ``collections`` (non-empty list), optionally one
            of ``bbox`` ([west, south, east, north]) and ``intersects`` (GeoJSON geometry),
            ``datetime`` ("2023-01-01/2023-12-31", RFC 3339 times or dates, ".." for open),
            ``query`` (Query extension) and ``filter`` (CQL2-JSON), ``max_items`` (default and
            at most ``max_items_limit``).

        Raises
        ------
        InvalidRequest
            Naming the field (``stac.url``, ``stac.bbox``...).
        """
        if not isinstance(spec, dict):
            raise InvalidRequest("'stac' must be an object: {\"url\": ..., \"collections\": [...], ...}")
        unknown = set(spec) - _SEARCH_KEYS
        if unknown:
            raise InvalidRequest(
                f"unknown field(s) in 'stac': {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_SEARCH_KEYS))}"
            )
        if "url" not in spec:
            raise InvalidRequest("'stac.url' is required: the root of a STAC API")
        url = _check_http_url(spec["url"], "'stac.url'").rstrip("/")
        collections = spec.get("collections")
        if (
            not isinstance(collections, list)
            or not collections
            or not all(isinstance(c, str) and c.strip() for c in collections)
        ):
            raise InvalidRequest(f"'stac.collections' must be a non-empty list of collection ids, got {collections!r}")
        if spec.get("bbox") is not None and spec.get("intersects") is not None:
            raise InvalidRequest("give one of 'stac.bbox' and 'stac.intersects', not both")
        bbox = _check_bbox(spec["bbox"]) if spec.get("bbox") is not None else None
        intersects = _check_geometry(spec["intersects"]) if spec.get("intersects") is not None else None
        interval = _check_datetime_interval(spec["datetime"]) if spec.get("datetime") is not None else None
        for name in ("query", "filter"):
            if spec.get(name) is not None and (not isinstance(spec[name], dict) or not spec[name]):
                kind = "a Query extension object" if name == "query" else "a CQL2-JSON expression"
                raise InvalidRequest(f"'stac.{name}' must be {kind} (a non-empty JSON object), got {spec[name]!r}")
        max_items = spec.get("max_items", max_items_limit)
        if not isinstance(max_items, int) or isinstance(max_items, bool) or not 1 <= max_items <= max_items_limit:
            raise InvalidRequest(f"'stac.max_items' must be an integer from 1 to {max_items_limit}, got {max_items!r}")
        return cls(
            url, tuple(c.strip() for c in collections), bbox, intersects, interval, spec.get("query"),
            spec.get("filter"), max_items,
        )

    def to_dict(self) -> dict:
        """The search as it was asked (JSON-safe, for job ids and records)."""
        out = {"url": self.url, "collections": list(self.collections), "max_items": self.max_items}
        for name in ("bbox", "intersects", "datetime", "query", "filter"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if name == "bbox" else value
        return {"stac": out}

    def items(self) -> list[dict]:
        """Run the search with pystac-client and return the matching items (dicts).

        Raises
        ------
        StorageUnavailable
            The API cannot be reached, times out, or answers 5xx/429/408: worth a retry.
        InvalidRequest
            It answers 4xx, is not a STAC API with item search, does not support ``query``
            or ``filter`` when they are given, or the search matches more than
            ``max_items`` items (narrow it rather than composite a truncated list).
        """
        from pystac_client import Client
        from pystac_client.conformance import ConformanceClasses
        from pystac_client.warnings import PystacClientWarning

        try:
            with warnings.catch_warnings():
                # pystac-client warns about missing conformance classes; they are checked below.
                warnings.simplefilter("ignore", PystacClientWarning)
                client = Client.open(self.url, timeout=HTTP_TIMEOUT)
            if not client.conforms_to(ConformanceClasses.ITEM_SEARCH):
                raise InvalidRequest(f"{self.url} is a STAC catalog but not a STAC API with item search")
            for name, conformance in (("query", ConformanceClasses.QUERY), ("filter", ConformanceClasses.FILTER)):
                if getattr(self, name) is not None and not client.conforms_to(conformance):
                    raise InvalidRequest(
                        f"'stac.{name}': the STAC API at {self.url} does not support the "
                        f"{name.capitalize()} extension; use "
                        + ("'filter' (CQL2-JSON)" if name == "query" else "'query'")
                        + " or select with max_cloud, start and end"
                    )
            parameters = {
                "collections": list(self.collections),
                "max_items": self.max_items + 1,
                "limit": min(self.max_items + 1, 250),
            }
            if self.bbox is not None:
                parameters["bbox"] = list(self.bbox)
            if self.intersects is not None:
                parameters["intersects"] = self.intersects
            if self.datetime is not None:
                parameters["datetime"] = self.datetime
            if self.query is not None:
                parameters["query"] = self.query
            if self.filter is not None:
                parameters["filter"] = self.filter
                parameters["filter_lang"] = "cql2-json"
            items = list(client.search(**parameters).items_as_dicts())
        except TemporalMedianError:
            raise
        except Exception as exc:
            raise _search_error(exc, self.url) from exc
        if len(items) > self.max_items:
            raise InvalidRequest(
                f"the STAC search at {self.url} matches more than {self.max_items} items; narrow it "
                "(datetime, bbox, a query or filter on grid:code) or raise 'stac.max_items'"
            )
        if not items:
            raise InvalidRequest(f"the STAC search at {self.url} matched no item")
        return items


def _search_error(exc: BaseException, url: str) -> TemporalMedianError:
    """Our error for a pystac-client failure against the STAC API at ``url``."""
    from pystac_client.exceptions import APIError

    if isinstance(exc, APIError):
        status = getattr(exc, "status_code", None)
        text = str(exc)[:300]
        if status is None:
            return StorageUnavailable(f"cannot reach the STAC API at {url} (worth a retry): {text}")
        if _transient_status(status):
            return StorageUnavailable(f"the STAC API at {url} answered HTTP {status} (worth a retry): {text}")
        return InvalidRequest(f"the STAC API at {url} refused the search: HTTP {status}: {text}")
    if isinstance(exc, NotImplementedError):
        return InvalidRequest(f"{url} is not a STAC API with item search: {exc}")
    return InvalidRequest(f"{url} does not answer as a STAC API: {type(exc).__name__}: {str(exc)[:300]}")


@dataclass(frozen=True)
class StacInput:
    """A job's STAC input: where its items come from, and which asset holds the scene."""

    source: StacSearch | ItemCollectionSource
    asset: str = DEFAULT_ASSET

    @classmethod
    def from_request(
        cls, body: dict, *, allow_local: bool = False, max_items_limit: int = DEFAULT_MAX_ITEMS
    ) -> StacInput | None:
        """The STAC input of a job request, or None if the job lists rasters.

        A job takes its scenes from STAC when it has a ``stac`` field (a search, see
        :meth:`StacSearch.from_request`) or when its ``inputs`` is the location of a ``.json``
        ItemCollection. ``asset`` (default ``"visual"``) names the items' asset to read.

        Raises
        ------
        InvalidRequest
            Naming the field: both ``stac`` and ``inputs``; ``asset`` without STAC input or
            not a non-empty string; a bad search or location.
        """
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        asset = body.get("asset", DEFAULT_ASSET)
        if "stac" in body:
            if "inputs" in body:
                raise InvalidRequest("give either 'inputs' or 'stac' (a STAC API search), not both")
            source = StacSearch.from_request(body["stac"], max_items_limit=max_items_limit)
        elif isinstance(body.get("inputs"), str) and body["inputs"].lower().split("?")[0].endswith(".json"):
            source = ItemCollectionSource.from_request(body["inputs"], allow_local=allow_local)
        else:
            if "asset" in body:
                raise InvalidRequest("'asset' applies to STAC inputs only ('stac', or an ItemCollection .json in 'inputs')")
            return None
        if not isinstance(asset, str) or not asset.strip() or len(asset) > 100:
            raise InvalidRequest(f"'asset' must be the key of an item asset, like \"visual\", got {asset!r}")
        return cls(source, asset.strip())

    def items(self) -> list[dict]:
        """The STAC items (search results, or the ItemCollection's features)."""
        return self.source.items()

    def scenes(self) -> tuple[Scene, ...]:
        """The scenes of the items' asset, checked to be readable and on one grid.

        Raises
        ------
        InvalidRequest, InputUnreadable, StorageUnavailable
            See :meth:`StacSearch.items`, :meth:`ItemCollectionSource.items` and
            :func:`scenes_from_items`.
        """
        base = self.source.url if isinstance(self.source, ItemCollectionSource) else None
        return scenes_from_items(self.items(), self.asset, base)

    def to_dict(self) -> dict:
        return {**self.source.to_dict(), "asset": self.asset}
