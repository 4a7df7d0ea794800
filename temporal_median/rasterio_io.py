"""Windowed reading of co-registered RGB COGs (local, gs://, https://) and writing of tile COGs."""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Interleaving
from rasterio.env import get_gdal_config
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window as RioWindow

from .errors import (
    InputMismatch,
    InputUnreadable,
    InvalidRequest,
    NoInputs,
    StorageUnavailable,
    TemporalMedianError,
)
from .grid import Window
from .methods import DEFAULT_METHOD, check_method

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
    # Bytes (rasterio passes an int to GDALSetCacheMax64). GDAL's default is 5% of RAM (1.2 GB
    # on a 24 GB box): far too much for a 2 GiB worker, and blocks are never decoded twice here.
    "GDAL_CACHEMAX": 64 << 20,
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "120",
}

class _BufferPool:
    """Read buffers kept between compute_tile calls of one process, at most CHUNK_BYTES in all.

    A warm instance computes tile after tile; a fresh 340 MB buffer per tile costs about 0.2 s
    of page faults here, a reused one nothing. Each call takes its own buffers, so concurrent
    calls never share one.
    """

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            fitting = [i for i, b in enumerate(self._free) if b.size >= nbytes]
            if fitting:
                # By index: list.remove would compare arrays element by element.
                return self._free.pop(min(fitting, key=lambda i: self._free[i].size))
        return np.empty(nbytes, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        with self._lock:
            self._free.append(buffer)
            self._free.sort(key=lambda b: b.size, reverse=True)
            while sum(b.size for b in self._free) > CHUNK_BYTES:
                self._free.pop()


#: Bytes of the read buffers (T, 3, rows, cols) of compute_tile: chunks are cut to fit it, and
#: a second buffer, reading the next chunk while the median of the current one runs, is used
#: only when two fit. 216 scenes x 512 rows x 1024 columns (340 MB) is one chunk.
CHUNK_BYTES = 384 << 20

_BUFFERS = _BufferPool()

_TILE_BAND_DESCRIPTIONS = ("red", "green", "blue", "valid sample count (saturates at 255)")

# Tiles are intermediate files of one job: DEFLATE level 1 writes 3x faster than level 6
# (0.07 s vs 0.19 s for 1024 x 1024) for files about 5% bigger.
_TILE_PROFILE = {
    "driver": "COG",
    "dtype": "uint8",
    "count": 4,
    "nodata": 0,
    "compress": "DEFLATE",
    "predictor": 2,
    "level": 1,
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "AVERAGE",
    "bigtiff": "IF_SAFER",
}

_PROFILES = {
    "tile": _TILE_PROFILE,
    # The whole-granule composite: what people download and view. Level 3 writes it about twice
    # as fast as level 6 (0.22 s vs 0.49 s for 2600 x 2200) for a file about 3% bigger.
    "mosaic": {**_TILE_PROFILE, "level": 3, "num_threads": "ALL_CPUS"},
}

# Messages of GDAL/curl failures that retrying can cure (checked on remote inputs only).
# A block read that comes back short ("got 0 bytes, expected N") is how GDAL reports an HTTP
# error on a range request after its own retries: the 5xx itself only goes to the log.
_TRANSIENT = re.compile(
    r"HTTP response code: (5\d\d|429|408|403)\b|got \d+ bytes, expected \d+"
    r"|curl error|timed out|timeout|could not connect|couldn't connect|could not resolve"
    r"|couldn't resolve|connection (reset|refused|aborted|closed)|recv failure|send failure"
    r"|empty reply|ssl|server returned nothing|operation too slow|transfer closed",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------------------------
# Value objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterGrid:
    """The grid every scene of a series shares.

    Attributes
    ----------
    width, height : int
        Size in pixels.
    crs : str
        ``"EPSG:xxxx"`` when the CRS has a code, else WKT; ``""`` if the raster has none.
    transform : tuple of float
        Affine coefficients ``(a, b, c, d, e, f)``.
    block : tuple of int
        Internal block ``(height, width)`` of the first band.
    """

    width: int
    height: int
    crs: str
    transform: tuple
    block: tuple

    @classmethod
    def from_dataset(cls, ds) -> "RasterGrid":
        """The grid of an open rasterio dataset."""
        block_h, block_w = ds.block_shapes[0]
        return cls(
            width=int(ds.width),
            height=int(ds.height),
            crs=ds.crs.to_string() if ds.crs else "",
            transform=tuple(float(v) for v in tuple(ds.transform)[:6]),
            block=(int(block_h), int(block_w)),
        )

    def to_dict(self) -> dict:
        """A JSON-safe dict, for job manifests."""
        return {
            "width": self.width,
            "height": self.height,
            "crs": self.crs,
            "transform": list(self.transform),
            "block": list(self.block),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RasterGrid":
        """Inverse of :meth:`to_dict`; raises InvalidRequest on a malformed dict."""
        try:
            width, height = int(data["width"]), int(data["height"])
            crs = data["crs"]
            transform = tuple(float(v) for v in data["transform"])
            block = tuple(int(v) for v in data["block"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"raster grid must have width, height, crs, transform, block: {exc!r}") from None
        if not isinstance(crs, str) or len(transform) != 6 or len(block) != 2:
            raise InvalidRequest(f"raster grid has a bad crs, transform or block: {data!r}")
        if width <= 0 or height <= 0 or min(block) <= 0:
            raise InvalidRequest(f"raster grid sizes must be positive: {data!r}")
        return cls(width, height, crs, transform, block)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    def window_transform(self, window: Window) -> Affine:
        """The transform of ``window``: this grid's transform shifted by the window's offset."""
        a, b, c, d, e, f = self.transform
        col, row = window.col_off, window.row_off
        return Affine(a, b, c + a * col + b * row, d, e, f + d * col + e * row)

    def contains(self, window: Window) -> bool:
        return (
            window.col_off >= 0
            and window.row_off >= 0
            and window.width > 0
            and window.height > 0
            and window.col_off + window.width <= self.width
            and window.row_off + window.height <= self.height
        )


@dataclass(frozen=True)
class TileStats:
    """What computing one tile cost.

    Attributes
    ----------
    window : Window
        The tile's window in the scenes.
    valid_fraction : float
        Fraction of the tile's pixels with at least one valid sample.
    bytes_read : int
        Estimate of the bytes fetched: compressed sizes of the source blocks intersecting the
        window, summed over scenes (0 where the format does not tell).
    seconds_read, seconds_median, seconds_write : float
        Wall time the calling thread spent opening and waiting for reads, in the median
        kernel, and writing the COG. Reads overlap the median, so reading time hidden behind
        the median is not counted in ``seconds_read``.
    """

    window: Window
    valid_fraction: float
    bytes_read: int
    seconds_read: float
    seconds_median: float
    seconds_write: float

    def to_dict(self) -> dict:
        """A JSON-safe dict, for logs and tile records."""
        return {
            "window": self.window.as_list(),
            "valid_fraction": self.valid_fraction,
            "bytes_read": self.bytes_read,
            "seconds_read": round(self.seconds_read, 4),
            "seconds_median": round(self.seconds_median, 4),
            "seconds_write": round(self.seconds_write, 4),
        }


# --------------------------------------------------------------------------------------------
# Paths, environment, errors
# --------------------------------------------------------------------------------------------


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


#: Reading threads for remote inputs: enough requests in flight to hide storage latency.
REMOTE_READ_THREADS = 16


def read_threads(urls: Sequence[str], requested: int | None = None) -> int:
    """Threads to read ``urls`` with: ``requested``, or by default one per core for local files
    (decoding is CPU-bound: more threads only contend) and REMOTE_READ_THREADS when any input
    is remote (latency-bound); never more than there are inputs."""
    if requested is None or requested <= 0:
        remote = any(_is_remote(str(url)) for url in urls)
        requested = REMOTE_READ_THREADS if remote else (os.cpu_count() or 1)
    return max(1, min(requested, len(urls)))


def _is_remote(url: str) -> bool:
    return url.startswith(("gs://", "https://"))


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

    The rule: on a gs:// or https:// input, an HTTP 5xx, 429, 408 or 403 (as in storage.py:
    IAM grants take time to propagate), a curl-level failure (connect, resolve, timeout,
    reset, TLS) or a short block read is StorageUnavailable; anything else (404, not a
    raster, undecodable data), and every failure of a local file, is InputUnreadable. GDAL
    reports HTTP codes at open as ``HTTP response code: NNN``, curl failures as
    ``CURL error: ...``, and a failed range request as a short read ``got 0 bytes, expected
    N``, which is what this looks at.
    """
    if isinstance(exc, TemporalMedianError):
        return exc
    text = _messages(exc)
    if _is_remote(url) and _TRANSIENT.search(text):
        return StorageUnavailable(f"{url}: cannot {action} (storage error, worth a retry): {text}")
    return InputUnreadable(f"{url}: cannot {action}: {text}")


def _loaded_gdal():
    """ctypes handle on the GDAL library rasterio loaded (Linux), or None."""
    import ctypes

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


def _forget_remote_files_on_transient(function):
    """Clear GDAL's remote caches when ``function`` fails transiently, once its reads are over."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StorageUnavailable:
            forget_remote_files()
            raise

    return wrapper


def forget_remote_files() -> None:
    """Clear GDAL's /vsicurl/ and /vsigs/ caches of file properties and data.

    GDAL remembers that a remote file could not be opened ("does not exist") for the rest of
    the process; a retried message on the same instance would then fail permanently on what
    was a passing network error. Best effort: a no-op where the library cannot be reached.
    """
    lib = _loaded_gdal()
    if lib is not None and hasattr(lib, "VSICurlClearCache"):
        lib.VSICurlClearCache()


# --------------------------------------------------------------------------------------------
# Opening and checking scenes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """What the checks need to know about one scene, read at open time (the dataset is closed)."""

    count: int
    dtypes: tuple
    width: int
    height: int
    crs: object  # rasterio CRS or None
    transform: Affine
    grid: RasterGrid
    window_bytes: int


def _open(url: str):
    """``rasterio.open`` of ``url``'s GDAL path, failures mapped to our errors (caller closes)."""
    try:
        return rasterio.open(to_gdal_path(url))
    except (RasterioError, OSError) as exc:
        raise gdal_error(exc, url, "open raster") from exc


def _scene_of(ds, window: Window | None) -> _Scene:
    return _Scene(
        count=ds.count,
        dtypes=tuple(ds.dtypes),
        width=ds.width,
        height=ds.height,
        crs=ds.crs,
        transform=ds.transform,
        grid=RasterGrid.from_dataset(ds),
        window_bytes=_window_block_bytes(ds, window) if window is not None else 0,
    )


def _probe(url: str, window: Window | None) -> _Scene:
    # A bare Env in the worker thread: rasterio.open would otherwise create and tear down a
    # default Env here, which sets and clears GDAL options process-wide while other threads read.
    with rasterio.Env():
        with _open(url) as ds:
            return _scene_of(ds, window)


def _check_scene(scene: _Scene, url: str, ref: RasterGrid, ref_crs, ref_name: str) -> None:
    """Raise InputMismatch naming ``url`` if ``scene`` is not a 3-band uint8 scene on ``ref``."""
    if scene.count != 3:
        raise InputMismatch(f"{url}: has {scene.count} band(s), expected 3 (R, G, B)")
    if any(dtype != "uint8" for dtype in scene.dtypes):
        raise InputMismatch(f"{url}: has data type {', '.join(scene.dtypes)}, expected uint8")
    if (scene.width, scene.height) != (ref.width, ref.height):
        raise InputMismatch(
            f"{url}: is {scene.width} x {scene.height} pixels, but {ref_name} is {ref.width} x {ref.height}"
        )
    if scene.crs is None or ref_crs is None:
        if not (scene.crs is None and ref_crs is None):
            raise InputMismatch(f"{url}: CRS {scene.crs} differs from {ref_name}'s {ref.crs or 'none'}")
    elif scene.crs != ref_crs:
        raise InputMismatch(f"{url}: CRS {scene.crs.to_string()} differs from {ref_name}'s {ref.crs}")
    # Scenes of one granule share their transform exactly; allow only float noise.
    if not scene.transform.almost_equals(ref.affine, precision=1e-6):
        raise InputMismatch(
            f"{url}: transform {tuple(scene.transform)[:6]} differs from {ref_name}'s {ref.transform}"
        )


def _probe_all(
    urls: Sequence[str], pool: ThreadPoolExecutor, expected: RasterGrid | None, window: Window | None = None
) -> tuple[RasterGrid, list[_Scene]]:
    """Open every url concurrently, check it, close it; the reference grid and each scene's facts.

    The reference is ``expected`` if given, else the first scene's grid. Datasets are not kept
    open: GDAL keeps about a decoded block and a compressed one per open dataset (~1.5 MB for
    512 x 512 RGB), which for 216 scenes is more than the read buffers themselves.
    """
    futures = [pool.submit(_probe, url, window) for url in urls]
    _wait_all(futures)
    scenes = [future.result() for future in futures]
    if expected is not None:
        ref, ref_name = expected, "the expected grid"
    else:
        ref, ref_name = scenes[0].grid, f"the first scene {urls[0]}"
    ref_crs = CRS.from_user_input(ref.crs) if ref.crs else None
    for scene, url in zip(scenes, urls):
        _check_scene(scene, url, ref, ref_crs, ref_name)
    return ref, scenes


def _check_urls(urls) -> list[str]:
    if isinstance(urls, str) or not isinstance(urls, Sequence):
        raise InvalidRequest(f"inputs must be a list of URLs, got {type(urls).__name__}")
    if not urls:
        raise NoInputs("no input scenes given")
    for url in urls:
        to_gdal_path(url)
    return list(urls)


def _check_window_type(window) -> Window:
    if not isinstance(window, Window):
        raise InvalidRequest(f"window must be a temporal_median.grid.Window, got {type(window).__name__}")
    return window


def _check_window(window: Window, grid: RasterGrid, first_url: str) -> None:
    if not grid.contains(window):
        raise InputMismatch(
            f"window {window.as_list()} is outside the {grid.width} x {grid.height} raster of {first_url}"
        )


def _shutdown(pool: ThreadPoolExecutor) -> None:
    # Queued reads are cancelled and running ones awaited, so no thread writes into a buffer
    # after we return.
    pool.shutdown(wait=True, cancel_futures=True)


@_forget_remote_files_on_transient
def inspect_inputs(urls: Sequence[str], *, max_workers: int | None = None) -> RasterGrid:
    """Open every scene concurrently and return the grid they share.

    Parameters
    ----------
    urls : sequence of str
        Scenes (gs://, https:// or local paths).
    max_workers : int, optional
        Threads opening scenes; default :func:`read_threads`.

    Returns
    -------
    RasterGrid
        The first scene's grid.

    Raises
    ------
    NoInputs
        If ``urls`` is empty.
    InputMismatch
        If a scene is not 3-band uint8 or differs from the first in size, transform or CRS.
    InputUnreadable, StorageUnavailable
        If a scene cannot be opened (permanent), or storage failed (transient).
    """
    urls = _check_urls(urls)
    with gdal_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-open")
        stack.callback(_shutdown, pool)
        return _probe_all(urls, pool, None)[0]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """What a first read checks a scene against: the reference grid, and the tile's window."""

    ref: RasterGrid
    ref_crs: object
    ref_name: str
    window: Window | None


def _read_into(url: str, window, out: np.ndarray, check: _Check | None = None) -> _Scene | None:
    """Read ``window`` of ``url`` into ``out`` (3, h, w); the dataset lives only for this read.

    With ``check``, the scene is checked against the reference before anything is read (one
    open serves both), and its facts are returned.
    """
    with rasterio.Env():
        with _open(url) as ds:
            scene = None
            if check is not None:
                scene = _scene_of(ds, check.window)
                _check_scene(scene, url, check.ref, check.ref_crs, check.ref_name)
            try:
                ds.read(indexes=[1, 2, 3], window=window, out=out)
            except (RasterioError, OSError) as exc:
                raise gdal_error(exc, url, f"read window {window.flatten()}") from exc
            return scene


def _wait_all(futures: list[Future]) -> None:
    """Wait for every future, then raise the first error in input order (if any)."""
    wait_futures(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


@_forget_remote_files_on_transient
def read_window(
    urls: Sequence[str], window: Window, *, max_workers: int | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Read ``window`` of every scene into a (T, 3, h, w) uint8 stack.

    Parameters
    ----------
    urls : sequence of str
        Scenes in acquisition order.
    window : Window
        Must lie inside the scenes.
    max_workers : int, optional
        Reading threads (GDAL decodes without the GIL); default :func:`read_threads`.
    out : numpy.ndarray, optional
        C-contiguous (T, 3, h, w) uint8 array to fill.

    Returns
    -------
    numpy.ndarray
        ``out`` if given, else a new array.

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable, NoInputs, InvalidRequest
        As in :func:`inspect_inputs`; InputMismatch also when the window is outside.
    """
    urls = _check_urls(urls)
    _check_window_type(window)
    shape = (len(urls), 3, window.height, window.width)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidRequest(f"out must be a writeable C-contiguous uint8 array of shape {shape}")
    with gdal_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-read")
        stack.callback(_shutdown, pool)
        grid = _probe(urls[0], None).grid
        _check_window(window, grid, urls[0])
        check = _Check(grid, CRS.from_user_input(grid.crs) if grid.crs else None, f"the first scene {urls[0]}", None)
        rio_window = window.to_rasterio()
        _wait_all([pool.submit(_read_into, url, rio_window, out[t], check) for t, url in enumerate(urls)])
    return out


def _spans(offset: int, length: int, step: int) -> list[tuple[int, int]]:
    """Cut [offset, offset + length) at absolute multiples of ``step``; relative (start, stop) pairs."""
    spans, start = [], offset
    while start < offset + length:
        stop = min(offset + length, (start // step + 1) * step)
        spans.append((start - offset, stop - offset))
        start = stop
    return spans


def plan_chunks(window: Window, block: tuple, n_scenes: int, budget: int | None = None) -> list[tuple]:
    """Block-aligned chunks ``(r0, r1, c0, c1)`` (window-relative) that compute_tile reads at once.

    Chunks are whole-width row strips of as many source block rows as fit ``budget`` bytes of
    (T, 3, rows, width); when even one block row does not fit, the strip is cut into runs of
    whole blocks. Every cut falls on a block edge, so no block is decoded twice. ``budget``
    defaults to :data:`CHUNK_BYTES`.
    """
    budget = CHUNK_BYTES if budget is None else budget
    block_h, block_w = block
    row_bytes = n_scenes * 3 * window.width
    rows_fit = budget // max(1, row_bytes)
    if rows_fit >= block_h:
        step_h, step_w = block_h * (rows_fit // block_h), window.col_off + window.width + block_w
    else:
        cols_fit = budget // max(1, n_scenes * 3 * block_h)
        step_h, step_w = block_h, block_w * max(1, cols_fit // block_w)
    # Offsets are absolute so that cuts land on the source's block grid.
    row_spans = _spans(window.row_off, window.height, step_h)
    col_spans = _spans(window.col_off, window.width, step_w)
    return [(r0, r1, c0, c1) for r0, r1 in row_spans for c0, c1 in col_spans]


def _window_block_bytes(ds, window: Window) -> int:
    """Compressed bytes of the blocks of ``ds`` that ``window`` touches (0 if unknown)."""
    block_h, block_w = ds.block_shapes[0]
    row_end = min(window.row_off + window.height, ds.height)
    col_end = min(window.col_off + window.width, ds.width)
    if row_end <= window.row_off or col_end <= window.col_off:
        return 0
    # Pixel-interleaved blocks hold all bands; band-interleaved files have a block per band.
    bands = [1, 2, 3] if ds.interleaving == Interleaving.band else [1]
    total = 0
    for by in range(window.row_off // block_h, (row_end - 1) // block_h + 1):
        for bx in range(window.col_off // block_w, (col_end - 1) // block_w + 1):
            for band in bands:
                try:
                    size = ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=band)
                except Exception:  # not a TIFF, or GDAL does not tell: the estimate is best effort
                    return 0
                if size is None:
                    return 0
                total += int(size)
    return total


@_forget_remote_files_on_transient
def compute_tile(
    urls: Sequence[str],
    window: Window,
    dest_path: str,
    *,
    method: str = DEFAULT_METHOD,
    max_workers: int | None = None,
    expected: RasterGrid | None = None,
) -> TileStats:
    """Read ``window`` of every scene, take the temporal median and write it as a tile COG.

    Scenes are read in block-aligned chunks (see :func:`plan_chunks`) into preallocated
    buffers; the next chunk is read while the median of the current one runs, so memory stays
    bounded (about 2 x ``CHUNK_BYTES``) whatever the number of scenes.

    Parameters
    ----------
    urls : sequence of str
        Scenes in acquisition order (ties in the median go to the earlier scene).
    window : Window
        The tile's window in the scenes.
    dest_path : str
        Local path of the tile COG; written to a temporary file and renamed into place.
    method : str
        ``"luminance"`` or ``"per-band"``.
    max_workers : int, optional
        Reading threads; default :func:`read_threads`.
    expected : RasterGrid, optional
        The grid every scene must have (e.g. from the job manifest); default: the first scene's.

    Returns
    -------
    TileStats

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable, NoInputs, InvalidRequest
        As in :func:`read_window`, plus InvalidRequest on an unknown method.
    """
    check_method(method)
    urls = _check_urls(urls)
    _check_window_type(window)
    _check_dest(dest_path)
    from .median import compute_median  # numba: imported only by the function that needs it

    n = len(urls)
    seconds_read = seconds_median = 0.0
    t_start = time.perf_counter()
    with gdal_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-read")
        stack.callback(_shutdown, pool)
        # The reference grid comes from the manifest or the first scene; every other scene is
        # checked against it by the same open that reads its first chunk.
        if expected is not None:
            grid, ref_name = expected, "the expected grid"
        else:
            grid, ref_name = _probe(urls[0], window).grid, f"the first scene {urls[0]}"
        _check_window(window, grid, urls[0])
        check = _Check(grid, CRS.from_user_input(grid.crs) if grid.crs else None, ref_name, window)

        chunks = plan_chunks(window, grid.block, n, CHUNK_BYTES)
        largest = max(n * 3 * (r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in chunks)
        # Read ahead into a second buffer only when both fit the budget: on a CPU-bound reader
        # the overlap buys little, and a 216-scene strip is 340 MB.
        double = len(chunks) > 1 and 2 * largest <= CHUNK_BYTES
        buffers = [_BUFFERS.take(largest) for _ in range(2 if double else 1)]
        for buffer in buffers:
            stack.callback(_BUFFERS.give, buffer)
        rgb = np.zeros((3, window.height, window.width), np.uint8)
        count = np.zeros((window.height, window.width), np.uint16)

        def submit(index: int) -> tuple[np.ndarray, list[Future]]:
            r0, r1, c0, c1 = chunks[index]
            flat = buffers[index % len(buffers)]
            chunk_stack = flat[: n * 3 * (r1 - r0) * (c1 - c0)].reshape(n, 3, r1 - r0, c1 - c0)
            rio_window = RioWindow(window.col_off + c0, window.row_off + r0, c1 - c0, r1 - r0)
            first = check if index == 0 else None
            futures = [pool.submit(_read_into, url, rio_window, chunk_stack[t], first) for t, url in enumerate(urls)]
            return chunk_stack, futures

        pending = submit(0)
        first_futures = pending[1]
        seconds_read += time.perf_counter() - t_start
        for index, (r0, r1, c0, c1) in enumerate(chunks):
            t0 = time.perf_counter()
            chunk_stack, futures = pending
            _wait_all(futures)
            if len(buffers) > 1 and index + 1 < len(chunks):
                pending = submit(index + 1)
            t1 = time.perf_counter()
            compute_median(chunk_stack, method, out=(rgb[:, r0:r1, c0:c1], count[r0:r1, c0:c1]))
            t2 = time.perf_counter()
            if len(buffers) == 1 and index + 1 < len(chunks):
                pending = submit(index + 1)
            seconds_read += t1 - t0
            seconds_median += t2 - t1
        bytes_read = sum(future.result().window_bytes for future in first_futures)

    t0 = time.perf_counter()
    write_tile(dest_path, rgb, count, grid.window_transform(window), grid.crs, profile="tile")
    seconds_write = time.perf_counter() - t0
    return TileStats(
        window=window,
        valid_fraction=float(np.count_nonzero(count)) / count.size,
        bytes_read=bytes_read,
        seconds_read=seconds_read,
        seconds_median=seconds_median,
        seconds_write=seconds_write,
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def profile(name: str) -> dict:
    """A copy of the output profile ``name`` ("tile" or "mosaic"): rasterio creation options.

    Both are 4-band uint8 COGs with 512-pixel blocks and overviews, nodata 0, lossless DEFLATE
    with the horizontal predictor; "tile" favours write speed (level 1), "mosaic" is a little
    smaller (level 3, all CPUs).
    """
    return _profile_options(name)


def _profile_options(name: str) -> dict:
    try:
        return dict(_PROFILES[name])
    except (KeyError, TypeError):
        raise InvalidRequest(f"unknown output profile {name!r}; known: {', '.join(_PROFILES)}") from None


def _check_dest(dest_path: str) -> None:
    if not isinstance(dest_path, (str, os.PathLike)) or not str(dest_path).strip():
        raise InvalidRequest(f"destination must be a local path, got {dest_path!r}")
    if "://" in str(dest_path):
        raise InvalidRequest(f"destination must be a local path, got {dest_path!r}")


def write_tile(dest_path, rgb: np.ndarray, count: np.ndarray, transform, crs, profile: str = "tile") -> None:
    """Write a 4-band COG: R, G, B and the valid-sample count (saturating at 255).

    The file appears at ``dest_path`` whole or not at all: it is written to a temporary file in
    the same directory and renamed into place.

    Parameters
    ----------
    dest_path : str or os.PathLike
        Local destination.
    rgb : numpy.ndarray
        (3, h, w) uint8; 0 in every band exactly where ``count`` is 0.
    count : numpy.ndarray
        (h, w) unsigned integers: valid samples per pixel.
    transform : affine.Affine or sequence of 6 floats
        Georeferencing of the tile's upper-left pixel.
    crs : str or rasterio.crs.CRS
        The scenes' CRS.
    profile : str
        Output profile name, see :func:`profile`.

    Raises
    ------
    InvalidRequest
        On a bad destination, profile, shapes or dtypes, or pixels that would read as nodata.
    """
    _check_dest(dest_path)
    options = _profile_options(profile)
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] != 3:
        raise InvalidRequest(f"rgb must be a (3, h, w) uint8 array, got {getattr(rgb, 'shape', rgb)!r}")
    if (
        not isinstance(count, np.ndarray)
        or count.shape != rgb.shape[1:]
        or not np.issubdtype(count.dtype, np.unsignedinteger)
    ):
        raise InvalidRequest(f"count must be an unsigned (h, w) array matching rgb {rgb.shape[1:]}")
    height, width = count.shape
    data = np.empty((4, height, width), np.uint8)
    data[:3] = rgb
    np.minimum(count, 255, out=data[3], casting="unsafe")
    # nodata=0 must mean "no valid sample" in every band, and only that.
    empty = data[3] == 0
    if np.any(data[:3][:, empty]) or np.any(data[:3][:, ~empty] == 0):
        raise InvalidRequest("rgb must be 0 in all bands exactly where count is 0 (0 is nodata)")
    if not isinstance(transform, Affine):
        transform = Affine(*tuple(transform)[:6])

    dest = os.fspath(dest_path)
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp.tif", dir=directory)
    os.close(fd)
    try:
        # No .aux.xml side files: everything lives in the TIFF.
        with gdal_env(GDAL_PAM_ENABLED="NO"):
            with rasterio.open(tmp, "w", width=width, height=height, crs=crs or None, transform=transform, **options) as dst:
                dst.write(data)
                dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined)
                dst.descriptions = _TILE_BAND_DESCRIPTIONS
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is an ordinary output
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
