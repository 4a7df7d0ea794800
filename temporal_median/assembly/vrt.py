"""The mosaic's VRT: every tile checked against its grid slot, then one virtual raster over them."""

from __future__ import annotations

import math
import os
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import Affine

from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import MAX_TILE_SIZE, MIN_TILE_SIZE, Grid, TileId, Window
from temporal_median.raster.gdal import gdal_env, gdal_error, to_gdal_path
from temporal_median.raster.profiles import BAND_COUNT, COLOR_INTERP, NODATA


@dataclass(frozen=True)
class TileSource:
    """A validated tile: its slot in the grid and the path GDAL reads it from."""

    tile_id: TileId
    window: Window
    gdal_path: str
    block_shape: tuple[int, int]


def _tile_id_of(path: str) -> TileId:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    stem = name[:-4] if name.lower().endswith(".tif") else name
    try:
        return TileId.parse(stem)
    except InvalidRequest:
        raise InputMismatch(f"tile file {path!r} is not named like 'r003_c007.tif'") from None


def tile_error(exc: BaseException, tile_id: TileId, gdal_path: str, action: str):
    """InputUnreadable naming the tile, or StorageUnavailable when a remote read may succeed on retry."""
    error = gdal_error(exc, gdal_path, action)
    return type(error)(f"tile {tile_id}: {error}")


def _absolute(path: str) -> str:
    """The GDAL path of a tile, absolute so the VRT does not depend on where it is read from."""
    gdal_path = to_gdal_path(path)
    if gdal_path.startswith("/vsi"):
        return gdal_path
    return os.path.abspath(gdal_path)


def _infer_tile_size(sizes: dict[TileId, tuple[int, int]]) -> int:
    """The grid's tile size from the tiles: a full tile is as wide and tall as the grid's step."""
    largest = max(max(w, h) for w, h in sizes.values())
    return min(max(largest, MIN_TILE_SIZE), MAX_TILE_SIZE)


def _same_transform(got: Affine, want: Affine) -> bool:
    """Equal up to float noise: scale terms to 1e-9 relative, origin to 1e-3 of a pixel."""
    pixel = max(abs(want.a), abs(want.e), abs(want.b), abs(want.d))
    scale_ok = all(
        math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12 * pixel)
        for g, w in ((got.a, want.a), (got.b, want.b), (got.d, want.d), (got.e, want.e))
    )
    return scale_ok and abs(got.c - want.c) <= 1e-3 * pixel and abs(got.f - want.f) <= 1e-3 * pixel


#: Tile headers read at once (each a small ranged read).
_HEADER_THREADS = 16


def _header(tile_id: TileId, path: str) -> tuple[str, rasterio.profiles.Profile, Affine, object, tuple]:
    gdal_path = _absolute(path)
    # Its own Env in each thread (rasterio's are per thread); no .aux.xml lookups, as the caller.
    with gdal_env(GDAL_PAM_ENABLED="NO"):
        try:
            with rasterio.open(gdal_path) as src:
                return gdal_path, src.profile, src.transform, src.crs, src.block_shapes[0]
        except (RasterioError, OSError) as exc:
            raise tile_error(exc, tile_id, gdal_path, "open tile") from exc


def validate_tiles(tile_paths, *, width, height, transform, crs, tile_size) -> list[TileSource]:
    """Open every tile's header and check it fills exactly its grid slot; raise naming the tile."""
    if not tile_paths:
        raise InvalidRequest("no tiles given to assemble")
    by_id: dict[TileId, str] = {}
    for path in tile_paths:
        tile_id = _tile_id_of(path)
        if tile_id in by_id:
            raise InputMismatch(f"tile {tile_id} given twice: {by_id[tile_id]!r} and {path!r}")
        by_id[tile_id] = path

    # Opened side by side: from GCS each open is a round trip or two, and a granule has 121 tiles.
    ordered = sorted(by_id.items())
    with ThreadPoolExecutor(min(_HEADER_THREADS, len(ordered)), thread_name_prefix="tm-header") as pool:
        headers = dict(zip((t for t, _ in ordered), pool.map(lambda item: _header(*item), ordered)))

    if tile_size is None:
        tile_size = _infer_tile_size({t: (h[1]["width"], h[1]["height"]) for t, h in headers.items()})
    grid = Grid(width, height, tile_size)
    missing = [str(t) for t in grid.tile_ids() if t not in headers]
    outside = [str(t) for t in headers if not (t.row < grid.rows and t.col < grid.cols)]
    if outside:
        raise InputMismatch(f"tiles outside a grid of {grid.rows} x {grid.cols}: {', '.join(outside)}")
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise InputMismatch(f"{len(missing)} of {len(grid)} tiles are missing: {shown}")

    tiles = []
    for tile_id, (gdal_path, prof, tile_transform, tile_crs, block_shape) in sorted(headers.items()):
        window = grid.window(tile_id)
        where = f"tile {tile_id} ({gdal_path})"
        if prof["count"] != BAND_COUNT or prof["dtype"] != "uint8":
            raise InputMismatch(
                f"{where} has {prof['count']} bands of {prof['dtype']}, expected {BAND_COUNT} of uint8"
            )
        if prof.get("nodata") != NODATA:
            raise InputMismatch(f"{where} has nodata {prof.get('nodata')!r}, expected {NODATA}")
        if (prof["width"], prof["height"]) != (window.width, window.height):
            raise InputMismatch(
                f"{where} is {prof['width']} x {prof['height']} px, its grid slot "
                f"{window.as_list()} is {window.width} x {window.height}"
            )
        if tile_crs != crs:
            raise InputMismatch(f"{where} has CRS {tile_crs}, the mosaic has {crs}")
        expected = transform @ Affine.translation(window.col_off, window.row_off)
        if not _same_transform(tile_transform, expected):
            raise InputMismatch(
                f"{where} is georeferenced at {tuple(tile_transform)[:6]}, "
                f"its grid slot {window.as_list()} is at {tuple(expected)[:6]}"
            )
        tiles.append(TileSource(tile_id, window, gdal_path, tuple(block_shape)))
    return tiles


def vrt_xml(tiles: list[TileSource], *, grid_transform, crs, width, height) -> bytes:
    """The VRT document over validated tiles, sources declared so GDAL need not open them."""
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in grid_transform.to_gdal())
    for band in range(1, BAND_COUNT + 1):
        band_el = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(band))
        ET.SubElement(band_el, "NoDataValue").text = str(NODATA)
        ET.SubElement(band_el, "ColorInterp").text = COLOR_INTERP[band - 1]
        for tile in tiles:
            w = tile.window
            # Tiles never overlap, so a SimpleSource (no per-pixel nodata compositing) is exact.
            source = ET.SubElement(band_el, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = tile.gdal_path
            ET.SubElement(source, "SourceBand").text = str(band)
            # Declaring the sources' properties lets GDAL open the VRT without opening 121 tiles.
            ET.SubElement(
                source,
                "SourceProperties",
                RasterXSize=str(w.width),
                RasterYSize=str(w.height),
                DataType="Byte",
                BlockXSize=str(tile.block_shape[1]),
                BlockYSize=str(tile.block_shape[0]),
            )
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w.width), ySize=str(w.height))
            ET.SubElement(
                source, "DstRect", xOff=str(w.col_off), yOff=str(w.row_off), xSize=str(w.width), ySize=str(w.height)
            )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def georeferencing(transform, crs) -> tuple[Affine, CRS | None]:
    """Accept an Affine or its 6 coefficients, and a CRS, "EPSG:xxxx", WKT or "" (none)."""
    try:
        affine = transform if isinstance(transform, Affine) else Affine(*tuple(float(v) for v in transform)[:6])
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"transform must be an Affine or 6 numbers, got {transform!r}") from exc
    if affine.is_degenerate:
        raise InvalidRequest(f"transform is degenerate: {tuple(affine)[:6]}")
    if crs is None or crs == "":
        return affine, None
    try:
        return affine, CRS.from_user_input(crs)
    except CRSError as exc:
        raise InvalidRequest(f"crs is not a CRS: {crs!r}") from exc


def _write_atomically(data: bytes, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".vrt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build_vrt(tile_paths: list[str], vrt_path: str, *, grid_transform, crs, width, height, tile_size=None) -> None:
    """Write a VRT mosaic of the tiles, with absolute source paths.

    Parameters
    ----------
    tile_paths : list of str
        Tiles named ``<tile_id>.tif``: local paths, ``gs://`` or ``https://`` URLs, or GDAL paths.
    vrt_path : str
        Local path of the VRT to write (written to a temp file, then moved into place).
    grid_transform : affine.Affine or sequence of 6 floats
        Transform of the whole raster (the tile ``r000_c000``'s transform).
    crs : rasterio.crs.CRS or str
        CRS of the raster (a CRS, ``"EPSG:32631"``, WKT, or ``""`` for none); every tile must have it.
    width, height : int
        Size of the whole raster in pixels.
    tile_size : int, optional
        The grid's tile size; inferred from the tiles when omitted.

    Raises
    ------
    InputUnreadable
        A tile cannot be opened (missing, not a raster).
    StorageUnavailable
        A remote tile failed with an error worth retrying (HTTP 5xx, 429, network).
    InputMismatch
        A tile is missing from the grid, duplicated, or does not match its grid slot
        (size, transform, CRS, bands, dtype, nodata).
    """
    grid_transform, crs = georeferencing(grid_transform, crs)
    with gdal_env():
        tiles = validate_tiles(
            tile_paths, width=width, height=height, transform=grid_transform, crs=crs, tile_size=tile_size
        )
    xml = vrt_xml(tiles, grid_transform=grid_transform, crs=crs, width=width, height=height)
    _write_atomically(xml, vrt_path)


