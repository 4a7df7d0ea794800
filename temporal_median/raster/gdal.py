"""GDAL's side of the core: input URLs as GDAL paths, the reading environment, and its errors."""

from __future__ import annotations

import ctypes
import functools
import os
import re
from typing import Sequence

import rasterio
from rasterio.env import get_gdal_config

from temporal_median.base.errors import (
    InputUnreadable,
    InvalidRequest,
    StorageUnavailable,
    TemporalMedianError,
    is_transient_status,
)
from temporal_median.base.settings import usable_cores

#: GDAL's block cache while reading or assembling, in bytes (rasterio passes an int to
#: GDALSetCacheMax64). GDAL's default is 5% of RAM (1.2 GB on a 24 GB box): far too much for a
#: 2 GiB worker, blocks are never decoded twice here, and at full size the mosaic peaks at
#: ~160 MB with it and is no slower than with 256 MB.
CACHE_BYTES = 64 << 20

#: GDAL settings for reading cloud COGs. A key already set (environment variable, or an
#: enclosing ``rasterio.Env``) is left alone, so users keep control of every one of them.
_GDAL_DEFAULTS = {
    # COGs carry everything in their header: never list the "directory" looking for sidecars.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    # One request fetches the header and tile index of a COG of 10980 x 10980 with 512 blocks.
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    # VSI_CACHE is per open file; a tile keeps every scene open, so keep each cache small.
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(256 * 1024),
    "GDAL_CACHEMAX": CACHE_BYTES,
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "120",
}

#: Reading threads for remote inputs: enough requests in flight to hide storage latency.
REMOTE_READ_THREADS = 16

_REMOTE_PREFIXES = ("gs://", "https://", "/vsigs/", "/vsicurl/")

# How GDAL reports HTTP codes at open time.
_HTTP_CODE = re.compile(r"HTTP response code: (\d{3})\b")
# GDAL/curl failures that retrying can cure. A block read that comes back short ("got 0 bytes,
# expected N") is how GDAL reports an HTTP error on a range request after its own retries: the
# 5xx itself only goes to the log.
_TRANSIENT_TEXT = re.compile(
    r"got \d+ bytes, expected \d+"
    r"|curl error|timed out|timeout|could not connect|couldn't connect|could not resolve"
    r"|couldn't resolve|connection (reset|refused|aborted|closed)|recv failure|send failure"
    r"|empty reply|ssl|server returned nothing|operation too slow|transfer closed",
    re.IGNORECASE,
)


def to_gdal_path(url: str) -> str:
    """The GDAL path of an input URL.

    Parameters
    ----------
    url : str
        ``gs://bucket/key``, ``https://host/path`` or a local path.

    Returns
    -------
    str
        ``/vsigs/bucket/key``, ``/vsicurl/https://host/path``, or the local path unchanged.

    Raises
    ------
    InvalidRequest
        On an empty value, a gs:// URL without bucket or key, or any other scheme.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(f"input must be a non-empty string, got {url!r}")
    if url.startswith("gs://"):
        bucket, _, key = url[len("gs://") :].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise InvalidRequest(f"gs:// input must name an object, gs://bucket/key: {url!r}")
        return f"/vsigs/{bucket}/{key}"
    if url.startswith("https://"):
        if len(url) <= len("https://") or url[len("https://")] == "/":
            raise InvalidRequest(f"https:// input has no host: {url!r}")
        return f"/vsicurl/{url}"
    if "://" in url:
        raise InvalidRequest(f"unsupported input scheme (use gs://, https:// or a local path): {url!r}")
    return url


def is_remote(url: str) -> bool:
    """True for gs:// and https:// URLs and their GDAL paths (/vsigs/, /vsicurl/)."""
    return url.startswith(_REMOTE_PREFIXES)


def read_threads(urls: Sequence[str], requested: int | None = None) -> int:
    """Threads to read ``urls`` with: ``requested``, or by default one per core for local files
    (decoding is CPU-bound: more threads only contend) and REMOTE_READ_THREADS when any input
    is remote (latency-bound); never more than there are inputs."""
    if requested is None or requested <= 0:
        remote = any(is_remote(str(url)) for url in urls)
        requested = REMOTE_READ_THREADS if remote else usable_cores()
    return max(1, min(requested, len(urls)))


def gdal_env(**overrides) -> rasterio.Env:
    """A ``rasterio.Env`` with the settings cloud COG readers need.

    Defaults (see ``_GDAL_DEFAULTS``) apply only to options not already set, as environment
    variables (``CPL_GS_ENDPOINT``, ``GDAL_HTTP_MAX_RETRY``...) or by an enclosing Env;
    ``overrides`` always apply.

    Parameters
    ----------
    **overrides
        GDAL configuration options, e.g. ``GDAL_HTTP_MAX_RETRY=0``.

    Returns
    -------
    rasterio.Env
        Not yet entered: use it as ``with gdal_env(): ...``.
    """
    options = {k: v for k, v in _GDAL_DEFAULTS.items() if not _already_set(k)}
    options.update(overrides)
    return rasterio.Env(**options)


def _already_set(key: str) -> bool:
    if key in os.environ:
        return True
    if rasterio.env.hasenv() and key in rasterio.env.getenv():
        return True
    # rasterio reports GDAL's current cache size for GDAL_CACHEMAX, set or not.
    return key != "GDAL_CACHEMAX" and get_gdal_config(key, normalize=False) is not None


def _messages(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(parts)


def gdal_error(exc: BaseException, url: str, action: str) -> TemporalMedianError:
    """Map a rasterio/GDAL failure on ``url`` to our errors.

    Parameters
    ----------
    exc : BaseException
        What rasterio raised.
    url : str
        The input as the user gave it, or its GDAL path.
    action : str
        What failed, for the message ("open raster", "read tile"...).

    Returns
    -------
    TemporalMedianError
        On a remote input: StorageUnavailable for an HTTP status storage would retry
        (:func:`temporal_median.base.errors.is_transient_status`), a curl-level failure (connect,
        resolve, timeout, reset, TLS) or a short block read; InputUnreadable for anything else
        (404, not a raster, undecodable data) and every failure of a local file.
    """
    if isinstance(exc, TemporalMedianError):
        return exc
    text = _messages(exc)
    if is_remote(url):
        code = _HTTP_CODE.search(text)
        if (code and is_transient_status(int(code.group(1)))) or (not code and _TRANSIENT_TEXT.search(text)):
            return StorageUnavailable(f"{url}: cannot {action} (storage error, worth a retry): {text}")
    return InputUnreadable(f"{url}: cannot {action}: {text}")


def loaded_gdal():
    """ctypes handle on the GDAL library rasterio loaded (Linux), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libgdal" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if path.startswith("/"):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def forget_remote_files() -> None:
    """Clear GDAL's /vsicurl/ and /vsigs/ caches of file properties and data.

    GDAL remembers that a remote file could not be opened ("does not exist") for the rest of
    the process; a retried message on the same instance would then fail permanently on what
    was a passing network error. Best effort: a no-op where the library cannot be reached.
    """
    lib = loaded_gdal()
    if lib is not None and hasattr(lib, "VSICurlClearCache"):
        lib.VSICurlClearCache()


def forget_remote_files_on_transient(function):
    """Decorator: clear GDAL's remote caches when ``function`` fails transiently, once its reads are over."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StorageUnavailable:
            forget_remote_files()
            raise

    return wrapper
