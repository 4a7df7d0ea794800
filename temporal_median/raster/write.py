"""Writing tile COGs: R, G, B and the valid-sample count, whole or not at all."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import rasterio
from rasterio.transform import Affine

from temporal_median.base.errors import InvalidRequest
from temporal_median.raster.gdal import gdal_env
from temporal_median.raster.profiles import BAND_DESCRIPTIONS, color_interp
from temporal_median.raster.profiles import profile as get_profile


def check_dest(dest_path: str) -> None:
    """Raise InvalidRequest unless ``dest_path`` is a local path (tiles are uploaded afterwards)."""
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
    check_dest(dest_path)
    options = get_profile(profile)
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
    if any(not np.array_equal(data[band] == 0, empty) for band in range(3)):
        raise InvalidRequest("rgb must be 0 in all bands exactly where count is 0 (0 is nodata)")
    write_bands(dest_path, data, transform, crs, options)


def write_bands(dest_path, data: np.ndarray, transform, crs, options: dict | str = "tile") -> None:
    """Write ``data``, (4, h, w) uint8 already in tile form (R, G, B, count <= 255, 0 = nodata
    in every band at once), as a COG, atomically; :func:`write_tile` checks that and calls it.

    ``options`` is a profile name or a profile dict (see :func:`temporal_median.raster.profiles.profile`).
    """
    check_dest(dest_path)
    if isinstance(options, str):
        options = get_profile(options)
    _, height, width = data.shape
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
                dst.colorinterp = color_interp()
                dst.descriptions = BAND_DESCRIPTIONS
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is an ordinary output
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

