"""Assemble the final mosaic from grid tiles: one whole-granule COG, its VRT, a quicklook PNG."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine

from temporal_median.assembly.blockcopy import copy_obstacle, copy_tile_blocks, half_average
from temporal_median.assembly.vrt import TileSource, georeferencing, tile_error, validate_tiles, vrt_xml
from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import Window
from temporal_median.raster.direct import GdalCallError, copy_file, open_raster
from temporal_median.raster.gdal import gdal_env
from temporal_median.raster.profiles import (
    BAND_COUNT,
    BAND_DESCRIPTIONS,
    NODATA,
    OVERVIEW_RESAMPLING,
    color_interp,
    creation_options,
    profile,
)

#: Compression of the scratch GTiff the COG is copied from. The COG driver reads it twice (once for
#: the overviews, once for the copy): at full size, DEFLATE level 1 made the build ~1.7x slower
#: (41 s vs 24 s) to save 342 MB of scratch (165 MB vs 507 MB). The scratch lives in /tmp, which
#: on Cloud Functions is RAM: the whole build then needs ~0.9 GB (RSS + files), well within the
#: mosaic function's memory, so speed wins.
_SCRATCH_COMPRESS = "none"


@dataclass(frozen=True)
class MosaicResult:
    """Paths written by :func:`build_mosaic` and its figures."""

    cog_path: str
    vrt_path: str
    quicklook_path: str
    width: int
    height: int
    bytes_written: int
    seconds: float
    #: Why the full resolution was compressed anew; None when the tiles' blocks were copied.
    recompressed: str | None = None


def _local_out_dir(out_dir: str) -> str:
    if out_dir.startswith(("gs://", "http://", "https://", "/vsi")):
        raise InvalidRequest(f"out_dir must be a local directory (upload afterwards), got {out_dir!r}")
    os.makedirs(out_dir, exist_ok=True)
    return out_dir


#: Tiles read ahead while the scratch file is written (a 1024 tile is 4 MB, a 4096 one 64 MB).
_PREFETCH = 4


def _local_copy(tile: TileSource, local_dir: str) -> TileSource:
    """The tile as a local file (downloaded into ``local_dir`` if remote), so that its compressed
    blocks can be copied into the COG; the tile itself where it cannot be downloaded here."""
    if not tile.gdal_path.startswith("/vsi"):
        return tile
    local = os.path.join(local_dir, f"{tile.tile_id}.tif")
    try:
        if not copy_file(tile.gdal_path, local):
            return tile
    except GdalCallError as exc:
        raise tile_error(exc, tile.tile_id, tile.gdal_path, "read tile") from exc
    return replace(tile, gdal_path=local)


def _read_tile(tile: TileSource, local_dir: str, halve: bool) -> tuple[TileSource, np.ndarray]:
    tile, data = _decode_tile(_local_copy(tile, local_dir))
    # In the reading thread: the averages run on every core, alongside other tiles' decoding.
    return tile, half_average(data) if halve else data


def _decode_tile(tile: TileSource) -> tuple[TileSource, np.ndarray]:
    window = tile.window
    # GDAL's C API directly where it can (no GIL, no rasterio open overhead), else rasterio.
    try:
        raster = open_raster(tile.gdal_path)
        if raster is not None:
            with raster:
                data = np.empty((BAND_COUNT, window.height, window.width), np.uint8)
                raster.read(0, 0, window.width, window.height, data, bands=range(1, BAND_COUNT + 1))
                return tile, data
    except GdalCallError as exc:
        raise tile_error(exc, tile.tile_id, tile.gdal_path, "read tile") from exc
    # A bare Env in the worker thread, as the readers do: no process-wide option churn.
    with rasterio.Env():
        try:
            with rasterio.open(tile.gdal_path) as src:
                return tile, src.read()
        except (RasterioError, OSError) as exc:
            raise tile_error(exc, tile.tile_id, tile.gdal_path, "read tile") from exc


def _write_scratch(tiles: list[TileSource], path: str, *, width, height, transform, crs, blocksize,
                   halve: bool = False) -> list[TileSource]:
    """Stream the tiles, one window at a time, into a tiled GTiff laid out like the COG (with
    ``halve``, into the first overview: half the size, each tile 2x2-averaged); returns the
    tiles as local files (remote ones downloaded beside ``path``)."""
    if halve:
        width, height = -(-width // 2), -(-height // 2)
        transform = transform @ Affine.scale(2)
    scratch = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": BAND_COUNT,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "interleave": "pixel",
        "compress": _SCRATCH_COMPRESS,
        "bigtiff": "if_safer",
        # Band 4 is the valid-sample count, not transparency: without this GTiff marks it as
        # alpha (ExtraSamples=2), which the COG copy kept, so viewers made thin pixels see-through.
        "photometric": "RGB",
        "alpha": "UNSPECIFIED",
    }
    with rasterio.open(path, "w", **scratch) as dst, ThreadPoolExecutor(_PREFETCH, thread_name_prefix="tm-tile") as pool:
        # Tiles are read ahead (from GCS, each read is a round trip) while earlier ones are
        # written; at most _PREFETCH tiles are in memory.
        local_dir = os.path.dirname(path)
        upcoming = iter(tiles)
        pending = deque(pool.submit(_read_tile, tile, local_dir, halve) for tile in islice(upcoming, _PREFETCH))
        local = []
        while pending:
            tile, data = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(_read_tile, following, local_dir, halve))
            window = tile.window
            if halve:
                window = Window(window.col_off // 2, window.row_off // 2, data.shape[2], data.shape[1])
            dst.write(data, window=window.to_rasterio())
            local.append(tile)
        dst.descriptions = BAND_DESCRIPTIONS
        dst.colorinterp = color_interp()
    return local


def build_mosaic(
    tile_paths: list[str],
    out_dir: str,
    *,
    width: int,
    height: int,
    transform,
    crs,
    name: str = "median",
    tile_size: int | None = None,
    quicklook_size: int = 1024,
) -> MosaicResult:
    """Build ``<name>.vrt``, ``<name>.tif`` (COG) and ``<name>.png`` (quicklook) from the tiles.

    The COG is streamed, each tile read once. Where the tiles sit on the COG's block grid (the
    median function's tiles do), the COG's full resolution is their compressed blocks, copied
    as they are, and only the averaged, nodata-aware overviews are computed and compressed:
    the first from each tile as it is read, the others by GDAL. Otherwise every tile goes into
    a full-size scratch GTiff that GDAL's COG driver compresses with its overviews
    (``recompressed`` in the result says why). Memory stays at a few tiles plus GDAL's capped
    block cache, whatever the raster's size.

    Parameters
    ----------
    tile_paths : list of str
        Every tile of the grid, named ``<tile_id>.tif`` (local paths, ``gs://`` URLs or GDAL paths).
    out_dir : str
        Local directory to write into (created if needed); upload from there.
    width, height : int
        Size of the whole raster (10980 x 10980 for a granule).
    transform : affine.Affine or sequence of 6 floats
        Transform of the whole raster.
    crs : rasterio.crs.CRS or str
        CRS of the raster (a CRS, ``"EPSG:32631"``, WKT, or ``""`` for none).
    name : str
        Base name of the outputs.
    tile_size : int, optional
        The grid's tile size; inferred from the tiles when omitted.
    quicklook_size : int
        Long side of the quicklook in pixels.

    Returns
    -------
    MosaicResult
        Paths written, size, bytes written (all three files) and seconds taken.

    Raises
    ------
    InputUnreadable, InputMismatch, StorageUnavailable
        As :func:`build_vrt`, naming the tile at fault; nothing is left in ``out_dir``.
    """
    started = time.monotonic()
    transform, crs = georeferencing(transform, crs)
    if not name or "/" in name or name.startswith("."):
        raise InvalidRequest(f"name must be a plain file stem, got {name!r}")
    out_dir = _local_out_dir(out_dir)
    cog_path = os.path.join(out_dir, f"{name}.tif")
    vrt_path = os.path.join(out_dir, f"{name}.vrt")
    png_path = os.path.join(out_dir, f"{name}.png")
    blocksize = int(profile("mosaic")["blocksize"])

    work = tempfile.mkdtemp(prefix=".assemble-", dir=out_dir)
    try:
        # gdal_env caps GDAL's block cache: with one tile in hand at a time, that cache, not the
        # raster's size, bounds our memory.
        with gdal_env(GDAL_PAM_ENABLED="NO"):
            tiles = validate_tiles(
                tile_paths, width=width, height=height, transform=transform, crs=crs, tile_size=tile_size
            )
            tmp_vrt = os.path.join(work, "mosaic.vrt")
            with open(tmp_vrt, "wb") as f:
                f.write(vrt_xml(tiles, grid_transform=transform, crs=crs, width=width, height=height))

            tmp_cog = os.path.join(work, "mosaic.tif")
            tmp_png = os.path.join(work, "quicklook.png")
            geometry = dict(width=width, height=height, transform=transform, crs=crs, blocksize=blocksize)
            recompressed = copy_obstacle(tiles, width, height, blocksize)
            if recompressed is None:
                # Only the overviews are computed and compressed here; the full resolution is
                # the tiles' blocks (cogcopy.py). The first overview comes from each tile as it
                # is read, so no full-size scratch is written or read back.
                reduced = os.path.join(work, "reduced.tif")
                tiles = _write_scratch(tiles, reduced, **geometry, halve=True)
                _build_overviews(reduced)
                recompressed = copy_tile_blocks(tiles, reduced, tmp_cog, width=width, height=height, blocksize=blocksize)
                os.remove(reduced)
                if recompressed is None:
                    # From the COG's own overviews: a few MB to decode.
                    quicklook(tmp_cog, tmp_png, max_size=quicklook_size)
            if recompressed is not None:
                _compress_whole(tiles, work, tmp_cog, tmp_png, quicklook_size, geometry)

        os.replace(tmp_cog, cog_path)
        os.replace(tmp_vrt, vrt_path)
        os.replace(tmp_png, png_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    written = sum(os.path.getsize(p) for p in (cog_path, vrt_path, png_path))
    return MosaicResult(cog_path, vrt_path, png_path, width, height, written, time.monotonic() - started, recompressed)


def _compress_whole(tiles: list[TileSource], work: str, tmp_cog: str, tmp_png: str, quicklook_size: int, geometry: dict) -> None:
    """The COG compressed anew from a full-size scratch (where the tiles' blocks cannot be copied)."""
    scratch = os.path.join(work, "scratch.tif")
    _write_scratch(tiles, scratch, **geometry)
    # The overviews are computed once, uncompressed, into the scratch itself, then the COG
    # driver copies them (FORCE_USE_EXISTING) with everything else: 0.39 s instead of
    # 0.68 s for the demo's 2600 x 2200 mosaic, which the COG driver makes by writing its
    # overviews compressed to a temporary file and reading them back. Same file, byte
    # for byte, where the sides divide by the factors; GTiff rounds an odd overview side up.
    _build_overviews(scratch)
    # The quicklook reads the scratch's uncompressed overviews (the same pixels as the
    # COG's), alongside the COG copy.
    with ThreadPoolExecutor(1, thread_name_prefix="tm-quicklook") as side:
        looking = side.submit(_quicklook_in_env, scratch, tmp_png, quicklook_size)
        rasterio.shutil.copy(scratch, tmp_cog, driver="COG", overviews="FORCE_USE_EXISTING",
                             **{k: v for k, v in creation_options("mosaic").items() if k.lower() != "overviews"})
        looking.result()
    os.remove(scratch)


def overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """The overview factors of the COG driver's OVERVIEWS=AUTO: halve until both sides fit one
    block (2600 x 2200 -> [2, 4, 8]; 1024 -> [2]; 512 -> [])."""
    factors, factor = [], 1
    while -(-max(width, height) // factor) > blocksize:
        factor *= 2
        factors.append(factor)
    return factors


def _build_overviews(path: str) -> None:
    """Internal, uncompressed, nodata-aware averaged overviews of the scratch GTiff at ``path``,
    down to one block (its size and block size are the file's)."""
    # GDAL_NUM_THREADS: GDAL computes the overview blocks on all cores.
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(path, "r+") as dst:
        factors = overview_factors(dst.width, dst.height, dst.block_shapes[0][1])
        if factors:
            dst.build_overviews(factors, Resampling[OVERVIEW_RESAMPLING.lower()])


def _quicklook_in_env(src_path: str, png_path: str, max_size: int) -> None:
    # A bare Env in the worker thread, as the readers do: no process-wide option churn.
    with rasterio.Env():
        quicklook(src_path, png_path, max_size=max_size)


def quicklook(src_path: str, png_path: str, *, max_size: int = 1024) -> None:
    """Write an RGBA PNG of a mosaic, its long side at most ``max_size``; nodata is transparent.

    Reads bands 1-3 and the count band at the reduced size (GDAL serves that from the COG's
    overviews) with nodata-aware averaging; alpha is 255 where the count is > 0, else 0, and the
    RGB of a transparent pixel is black, so viewers without alpha show nodata as black.
    The image is never upsampled.

    Parameters
    ----------
    src_path : str
        A 4-band mosaic (R, G, B, count) with nodata 0.
    png_path : str
        Local path of the PNG (written to a temp file, then moved into place).
    max_size : int
        Long side of the quicklook in pixels.
    """
    if not isinstance(max_size, int) or max_size <= 0:
        raise InvalidRequest(f"max_size must be a positive integer, got {max_size!r}")
    tmp = None
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(src_path) as src:
            if src.count < BAND_COUNT:
                raise InputMismatch(f"{src_path} has {src.count} bands, a mosaic has {BAND_COUNT}")
            scale = min(1.0, max_size / max(src.width, src.height))
            out_w = max(1, round(src.width * scale))
            out_h = max(1, round(src.height * scale))
            data = src.read(
                indexes=[1, 2, 3, 4], out_shape=(4, out_h, out_w), resampling=Resampling.average
            )
        rgba = np.empty((4, out_h, out_w), dtype=np.uint8)
        valid = data[3] > 0
        rgba[:3] = np.where(valid, data[:3], 0)
        rgba[3] = np.where(valid, 255, 0)
        directory = os.path.dirname(os.path.abspath(png_path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=directory)
        os.close(fd)
        with warnings.catch_warnings():
            # A quicklook is a picture, deliberately without georeferencing. zlevel 1: a sixth of
            # level 6's time (0.06 s vs 0.36 s at 1024 px) for a preview a little bigger.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
                tmp, "w", driver="PNG", width=out_w, height=out_h, count=4, dtype="uint8", zlevel=1
            ) as dst:
                dst.write(rgba)
        os.replace(tmp, png_path)
        tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
