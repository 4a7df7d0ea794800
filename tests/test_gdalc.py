"""The direct reader: GDAL's C API through ctypes (temporal_median.raster.direct), against rasterio."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import Affine

from temporal_median.base.grid import Window
from temporal_median.raster.direct import open_raster
from temporal_median.raster.gdal import to_gdal_path
from temporal_median.raster.read import Reference, _matches, inspect_inputs


def test_the_direct_reader_is_used_and_reads_like_rasterio(series):
    raster = open_raster(series[2])
    assert raster is not None, "rasterio's libgdal should be reachable through ctypes on Linux"
    with raster, rasterio.open(series[2]) as ds:
        assert (raster.width, raster.height, raster.count) == (ds.width, ds.height, ds.count)
        assert raster.block_shape(1) == ds.block_shapes[0]
        assert Affine.from_gdal(*raster.gdal_transform()) == ds.transform
        out = np.zeros((3, 311, 300), np.uint8)
        raster.read(300, 200, 300, 311, out)
        np.testing.assert_array_equal(out, ds.read(window=Window(300, 200, 300, 311).to_rasterio()))


def test_scene_checks_without_rasterio_agree_with_it(series, odd_scenes):
    reference = Reference.of(inspect_inputs(series[:1]), "the first scene")
    for path in series + [odd_scenes[c] for c in ("two_bands", "uint16", "smaller", "shifted", "other_crs")]:
        with open_raster(to_gdal_path(path)) as raster:
            assert _matches(raster, path, reference) == (path in series), path


def test_copy_file_copies_through_gdal_byte_for_byte_and_names_a_missing_file(series, tmp_path):
    import pytest

    from temporal_median.raster.direct import GdalCallError, copy_file

    copied = tmp_path / "copy.tif"
    # A chunk smaller than the file: the copy takes several reads.
    assert copy_file(series[0], str(copied), chunk=4096) is True
    with open(series[0], "rb") as original:
        assert copied.read_bytes() == original.read()
    with pytest.raises(GdalCallError, match="nowhere.tif"):
        copy_file(str(tmp_path / "nowhere.tif"), str(tmp_path / "never.tif"))
