"""Writing a uint8 array as a Cloud Optimized GeoTIFF, whole or not at all."""

from __future__ import annotations

import os
import tempfile

import numpy as np


def write_cog(path: str, data: np.ndarray, transform: tuple, crs: str, colorinterp=None) -> None:
    """Write ``data`` as a COG at ``path``, atomically (a temporary file beside it, then renamed).

    512-pixel blocks, lossless DEFLATE with the horizontal predictor (0 and 255 stay exact),
    no overviews, no nodata, no .aux.xml sidecar.

    Parameters
    ----------
    path : str
        Destination; its directory must exist.
    data : (bands, rows, cols) uint8 ndarray
        The pixels.
    transform : tuple
        Affine coefficients (a, b, c, d, e, f).
    crs : str
        The CRS, e.g. ``"EPSG:32631"``.
    colorinterp : sequence of rasterio.enums.ColorInterp, optional
        One per band; default red, green, blue (grey for one band).
    """
    import rasterio
    from rasterio.enums import ColorInterp

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp.tif", dir=directory)
    os.close(fd)
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
            tmp, "w", driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
            dtype="uint8", crs=crs, transform=rasterio.Affine(*transform), compress="DEFLATE",
            predictor=2, level=1, blocksize=512, overviews="NONE", bigtiff="IF_SAFER",
        ) as dst:
            dst.write(data)
            rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            dst.colorinterp = colorinterp or (rgb if data.shape[0] == 3 else (ColorInterp.gray,) * data.shape[0])
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is an ordinary output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
