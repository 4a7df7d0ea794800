"""Tile COGs and output profiles (temporal_median.raster.write, temporal_median.raster.profiles)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from raster_support import TRANSFORM
from rio_cogeo.cogeo import cog_validate

from temporal_median.base.errors import (
    InvalidRequest,
)
from temporal_median.raster.profiles import profile
from temporal_median.raster.write import write_tile


def test_write_tile_saturates_count_and_is_atomic(tmp_path):
    rgb = np.full((3, 20, 30), 7, np.uint8)
    count = np.full((20, 30), 300, np.uint16)
    rgb[:, :5] = 0
    count[:5] = 0
    count[5:10] = 12
    dest = tmp_path / "out" / "tile.tif"
    write_tile(str(dest), rgb, count, TRANSFORM, "EPSG:32631")
    with rasterio.open(dest) as ds:
        band4 = ds.read(4)
    assert (band4[:5] == 0).all() and (band4[5:10] == 12).all() and (band4[10:] == 255).all()
    assert os.stat(dest).st_mode & 0o777 == 0o644
    # A write that fails half-way leaves neither a file nor a temporary.
    with pytest.raises(Exception):
        write_tile(str(tmp_path / "out" / "bad.tif"), rgb, count, TRANSFORM, "EPSG:999999")
    assert os.listdir(tmp_path / "out") == ["tile.tif"]


@pytest.mark.parametrize("case", ["colour_without_count", "zero_band_with_count", "shape", "dtype", "remote_dest", "profile"])
def test_write_tile_rejects_bad_arguments(tmp_path, case):
    rgb = np.full((3, 4, 4), 9, np.uint8)
    count = np.full((4, 4), 2, np.uint16)
    dest, name = str(tmp_path / "t.tif"), "tile"
    if case == "colour_without_count":
        count[0, 0] = 0
    elif case == "zero_band_with_count":
        rgb[1, 0, 0] = 0
    elif case == "shape":
        count = count[:3]
    elif case == "dtype":
        rgb = rgb.astype(np.uint16)
    elif case == "remote_dest":
        dest = "gs://bucket/t.tif"
    else:
        name = "jpeg"
    with pytest.raises(InvalidRequest):
        write_tile(dest, rgb, count, TRANSFORM, "EPSG:32631", profile=name)
    assert os.listdir(tmp_path) == []


def test_profiles_are_copies():
    tile = profile("tile")
    tile["blocksize"] = 1
    assert profile("tile")["blocksize"] in (256, 512)
    mosaic = profile("mosaic")
    assert mosaic["blocksize"] == 512 and mosaic["count"] == 4 and mosaic["nodata"] == 0
    assert mosaic["compress"] == tile["compress"] == "DEFLATE"


@pytest.mark.parametrize("name, has_overviews", [("mosaic", True), ("tile", False)])
def test_each_profile_writes_a_valid_cog(tmp_path, name, has_overviews):
    # Tiles are read whole by the mosaic, which makes the overviews: a tile's own would be waste.
    rgb = np.full((3, 1100, 900), 40, np.uint8)
    count = np.full((1100, 900), 3, np.uint16)
    dest = tmp_path / f"{name}.tif"
    write_tile(str(dest), rgb, count, TRANSFORM, "EPSG:32631", profile=name)
    assert cog_validate(str(dest))[0]
    with rasterio.open(dest) as ds:
        assert ds.block_shapes[0] == (512, 512) and bool(ds.overviews(1)) == has_overviews
