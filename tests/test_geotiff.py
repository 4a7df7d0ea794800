"""GeoTIFF keys read from a TIFF's first bytes (temporal_median.raster.geotiff)."""

from __future__ import annotations

import numpy as np
import rasterio
from raster_support import TRANSFORM, random_scene

from temporal_median.raster.geotiff import geotiff_keys


def test_geotiff_keys_are_found_in_classic_and_big_tiffs(tmp_path):
    rng = np.random.default_rng(3)
    data = random_scene(rng, 64, 64)
    keys = {}
    for name, crs, big in (("a", "EPSG:32631", "NO"), ("b", "EPSG:32631", "YES"), ("c", "EPSG:32630", "NO")):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs=crs,
                           transform=TRANSFORM, BIGTIFF=big) as dst:
            dst.write(data)
        keys[name] = geotiff_keys(path.read_bytes()[:16384])
    assert keys["a"] and keys["a"] == keys["b"] != keys["c"]
    assert geotiff_keys(b"II*\x00") is None and geotiff_keys(b"not a tiff") is None
