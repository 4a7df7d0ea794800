"""Opening and checking input scenes: every scene 3-band uint8 on one grid, and that grid."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import rasterio
from rasterio.crs import CRS
from rasterio.enums import Interleaving
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window as RioWindow

from temporal_median.base.errors import GridMismatch, InputMismatch, InvalidRequest, NoInputs
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster.direct import GDT_BYTE, GdalCallError, Raster, open_raster, read_head
from temporal_median.raster.gdal import (
    forget_remote_files_on_transient,
    gdal_env,
    gdal_error,
    read_threads,
    to_gdal_path,
)
from temporal_median.raster.geotiff import geotiff_keys


@dataclass(frozen=True)
class SceneFacts:
    """What the checks need to know about one scene, read at open time (the dataset is closed)."""

    count: int
    dtypes: tuple
    width: int
    height: int
    crs: object  # rasterio CRS or None
    transform: Affine
    grid: RasterGrid
    window_bytes: int


def open_scene(url: str):
    """``rasterio.open`` of ``url``'s GDAL path, failures mapped to our errors (caller closes)."""
    try:
        return rasterio.open(to_gdal_path(url))
    except (RasterioError, OSError) as exc:
        raise gdal_error(exc, url, "open raster") from exc


def scene_facts(ds, window: Window | None) -> SceneFacts:
    """The facts the checks need about an open dataset; with ``window``, its compressed bytes too."""
    return SceneFacts(
        count=ds.count,
        dtypes=tuple(ds.dtypes),
        width=ds.width,
        height=ds.height,
        crs=ds.crs,
        transform=ds.transform,
        grid=RasterGrid.from_dataset(ds),
        window_bytes=window_block_bytes(ds, window) if window is not None else 0,
    )


def probe(url: str, window: Window | None) -> SceneFacts:
    """Open ``url``, take its facts and close it again (see :func:`scene_facts`)."""
    # A bare Env in the worker thread: rasterio.open would otherwise create and tear down a
    # default Env here, which sets and clears GDAL options process-wide while other threads read.
    with rasterio.Env():
        with open_scene(url) as ds:
            return scene_facts(ds, window)


@dataclass(frozen=True)
class Reference:
    """The grid every scene must be on, and how error messages name it."""

    grid: RasterGrid
    name: str
    crs: object = None  # the grid's rasterio CRS, or None

    @classmethod
    def of(cls, grid: RasterGrid, name: str) -> "Reference":
        return cls(grid, name, CRS.from_user_input(grid.crs) if grid.crs else None)

    def check(self, scene: SceneFacts, url: str) -> None:
        """Raise InputMismatch naming ``url`` if ``scene`` is not a 3-band uint8 scene on this grid."""
        ref, ref_crs, ref_name = self.grid, self.crs, self.name
        if scene.count != 3:
            raise InputMismatch(f"{url}: has {scene.count} band(s), expected 3 (R, G, B)")
        if any(dtype != "uint8" for dtype in scene.dtypes):
            raise InputMismatch(f"{url}: has data type {', '.join(scene.dtypes)}, expected uint8")
        if (scene.width, scene.height) != (ref.width, ref.height):
            raise GridMismatch(
                f"{url}: is {scene.width} x {scene.height} pixels, but {ref_name} is {ref.width} x {ref.height}"
            )
        if scene.crs is None or ref_crs is None:
            if not (scene.crs is None and ref_crs is None):
                raise GridMismatch(f"{url}: CRS {scene.crs} differs from {ref_name}'s {ref.crs or 'none'}")
        elif scene.crs != ref_crs:
            raise GridMismatch(f"{url}: CRS {scene.crs.to_string()} differs from {ref_name}'s {ref.crs}")
        # Scenes of one granule share their transform exactly; allow only float noise.
        if not scene.transform.almost_equals(ref.affine, precision=1e-6):
            raise GridMismatch(
                f"{url}: transform {tuple(scene.transform)[:6]} differs from {ref_name}'s {ref.transform}"
            )


def check_urls(urls) -> list[str]:
    """The inputs as a list; NoInputs if empty, InvalidRequest on a value GDAL cannot read."""
    if isinstance(urls, str) or not isinstance(urls, Sequence):
        raise InvalidRequest(f"inputs must be a list of URLs, got {type(urls).__name__}")
    if not urls:
        raise NoInputs("no input scenes given")
    for url in urls:
        to_gdal_path(url)
    return list(urls)


def check_window_type(window) -> Window:
    """``window`` if it is our Window type, else InvalidRequest."""
    if not isinstance(window, Window):
        raise InvalidRequest(f"window must be a temporal_median.base.grid.Window, got {type(window).__name__}")
    return window


def check_window(window: Window, grid: RasterGrid, first_url: str) -> None:
    """InputMismatch unless ``window`` lies inside ``grid``."""
    if not grid.contains(window):
        raise InputMismatch(
            f"window {window.as_list()} is outside the {grid.width} x {grid.height} raster of {first_url}"
        )


def shutdown(pool: ThreadPoolExecutor) -> None:
    """Stop a reading pool: queued reads are cancelled, running ones awaited."""
    # Queued reads are cancelled and running ones awaited, so no thread writes into a buffer
    # after we return.
    pool.shutdown(wait=True, cancel_futures=True)


@forget_remote_files_on_transient
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
    urls = check_urls(urls)
    with gdal_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-open")
        stack.callback(shutdown, pool)
        # The first scene through rasterio (its grid is the reference, CRS named as rasterio
        # names it); the others checked against it by the direct reader, PROJ once per CRS.
        first = probe(urls[0], None)
        reference = Reference.of(first.grid, f"the first scene {urls[0]}")
        # The reference is checked too: a uint16 or 4-band first scene is as wrong as any other.
        reference.check(first, urls[0])
        wait_all([pool.submit(check_scene, url, reference) for url in urls[1:]])
        return reference.grid


def wait_all(futures: list[Future]) -> None:
    """Wait for every future, then raise the first error in input order (if any)."""
    wait_futures(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def _block_bytes(block_shape, size, band_interleaved: bool, window: Window, size_of) -> int:
    """Compressed bytes of the blocks ``window`` touches in a raster of ``size`` (width, height)
    with blocks of ``block_shape`` (rows, columns); ``size_of(bx, by, band)`` gives one block's
    byte count as GDAL's TIFF metadata tells it (None if unknown: then the total is 0)."""
    block_h, block_w = block_shape
    width, height = size
    row_end = min(window.row_off + window.height, height)
    col_end = min(window.col_off + window.width, width)
    if row_end <= window.row_off or col_end <= window.col_off:
        return 0
    # Pixel-interleaved blocks hold all bands; band-interleaved files have a block per band.
    bands = [1, 2, 3] if band_interleaved else [1]
    total = 0
    for by in range(window.row_off // block_h, (row_end - 1) // block_h + 1):
        for bx in range(window.col_off // block_w, (col_end - 1) // block_w + 1):
            for band in bands:
                size_text = size_of(bx, by, band)
                if size_text is None:
                    return 0
                total += int(size_text)
    return total


def window_block_bytes(ds, window: Window) -> int:
    """:func:`_block_bytes` of an open rasterio dataset."""

    def size_of(bx: int, by: int, band: int) -> str | None:
        try:
            return ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=band)
        except Exception:  # not a TIFF, or GDAL does not tell: the estimate is best effort
            return None

    return _block_bytes(ds.block_shapes[0], (ds.width, ds.height), ds.interleaving == Interleaving.band, window,
                        size_of)


# --------------------------------------------------------------------------------------------
# Reading windows: one open per scene read, checked against the reference by that same open.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadCheck:
    """What a first read of a scene checks it against, and the tile's window (for its byte count)."""

    reference: Reference
    window: Window | None


#: (GeoTIFF keys or WKT, CRS text) -> same CRS? GDAL builds a scene's CRS through PROJ (about
#: 1 ms of CPU per scene, 0.2 s of a 216-scene window); scenes of a series carry the same GeoTIFF
#: keys, byte for byte, so PROJ compares them once, not once per scene.
_SAME_CRS: dict[tuple, bool] = {}
_SAME_CRS_LOCK = threading.Lock()
#: Bytes of a scene's head searched for its GeoTIFF keys (a COG's header holds them).
_HEAD_BYTES = 16384


def same_crs(raster: Raster, path: str, crs: str | None) -> bool:
    """Whether the open ``raster`` (at GDAL ``path``) is in ``crs`` (its text; None: no CRS).

    Compared by PROJ once per distinct (GeoTIFF keys, or WKT where the file has none, ``crs``):
    the scenes, masks and areas of a job share a few CRSs. Thread-safe.
    """
    keys = geotiff_keys(read_head(path, _HEAD_BYTES) or b"")
    wkt = raster.projection() if keys is None else None
    key = (keys if keys is not None else wkt, crs)
    same = _SAME_CRS.get(key)
    if same is None:
        wkt = raster.projection() if wkt is None else wkt
        try:
            same = not wkt and not crs if not wkt or not crs else CRS.from_wkt(wkt) == CRS.from_user_input(crs)
        except CRSError:  # a CRS PROJ cannot read is not ``crs`` (rasterio's open says what is wrong)
            same = False
        with _SAME_CRS_LOCK:
            if len(_SAME_CRS) > 256:
                _SAME_CRS.clear()
            _SAME_CRS[key] = same
    return same


def _matches(raster: Raster, path: str, reference: Reference) -> bool:
    """True when the scene passes every check of :meth:`Reference.check` (PROJ once per distinct CRS)."""
    grid = reference.grid
    if raster.count != 3 or (raster.width, raster.height) != (grid.width, grid.height):
        return False
    if any(raster.data_type(band) != GDT_BYTE for band in (1, 2, 3)):
        return False
    if not Affine.from_gdal(*raster.gdal_transform()).almost_equals(grid.affine, precision=1e-6):
        return False
    return same_crs(raster, path, grid.crs or None)


def raster_block_bytes(raster: Raster, window: Window) -> int:
    """:func:`_block_bytes` through the direct reader."""
    band_interleaved = (raster.metadata_item("INTERLEAVE", "IMAGE_STRUCTURE") or "").upper() == "BAND"
    return _block_bytes(raster.block_shape(1), (raster.width, raster.height), band_interleaved, window,
                        lambda bx, by, band: raster.metadata_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", band))


def _read_with_rasterio(url: str, window: tuple, out, check: ReadCheck | None) -> int:
    """:func:`read_scene` through rasterio (where the direct reader is unavailable)."""
    col_off, row_off, width, height = window
    # A bare Env in the worker thread: no process-wide option churn (see probe).
    with rasterio.Env():
        with open_scene(url) as ds:
            window_bytes = 0
            if check is not None:
                scene = scene_facts(ds, check.window)
                check.reference.check(scene, url)
                window_bytes = scene.window_bytes
            try:
                ds.read(indexes=[1, 2, 3], window=RioWindow(col_off, row_off, width, height), out=out)
            except (RasterioError, OSError) as exc:
                raise gdal_error(exc, url, f"read window {window}") from exc
            return window_bytes


def _open_direct(url: str) -> tuple[str, Raster | None]:
    """``url``'s GDAL path and its dataset opened by the direct reader (None where unavailable);
    a failure to open is mapped by :func:`temporal_median.raster.gdal.gdal_error`."""
    path = to_gdal_path(url)
    try:
        return path, open_raster(path)
    except GdalCallError as exc:
        raise gdal_error(exc, url, "open raster") from exc


def _check_open(raster: Raster, path: str, url: str, reference: Reference) -> None:
    """Check an open scene against ``reference``; on a mismatch, rasterio words it exactly as
    inspect_inputs does (the rare path: one more open)."""
    if not _matches(raster, path, reference):
        reference.check(probe(url, None), url)


def check_scene(url: str, reference: Reference) -> None:
    """Open ``url`` and check it against ``reference`` (InputMismatch as :meth:`Reference.check`
    words it; InputUnreadable or StorageUnavailable if it cannot be opened)."""
    path, raster = _open_direct(url)
    if raster is None:
        reference.check(probe(url, None), url)
        return
    with raster:
        _check_open(raster, path, url, reference)


def read_scene(url: str, window: tuple, out, check: ReadCheck | None = None) -> int:
    """Read bands 1-3 of ``window`` = (col_off, row_off, width, height) of ``url`` into ``out``.

    ``out`` is a C-contiguous (3, height, width) uint8 array. With ``check``, the scene is first
    checked against ``check.reference`` by the same open (InputMismatch naming it, as
    :meth:`Reference.check` words it), and the compressed bytes of the blocks ``check.window``
    touches are returned (else 0). Reads go through GDAL's C API directly when possible
    (:func:`temporal_median.raster.direct.open_raster`), else through rasterio; failures are mapped by
    :func:`temporal_median.raster.gdal.gdal_error` either way.
    """
    window = tuple(int(v) for v in window)
    path, raster = _open_direct(url)
    if raster is None:
        return _read_with_rasterio(url, window, out, check)
    with raster:
        window_bytes = 0
        if check is not None:
            _check_open(raster, path, url, check.reference)
            if check.window is not None:
                window_bytes = raster_block_bytes(raster, check.window)
        try:
            raster.read(*window, out)
        except GdalCallError as exc:
            raise gdal_error(exc, url, f"read window {window}") from exc
    return window_bytes
