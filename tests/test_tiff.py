"""TIFF directories by hand (temporal_median.raster.tiff): GDAL's COGs read, rewritten from their own blocks."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from temporal_median.raster import tiff
from temporal_median.raster.profiles import profile
from temporal_median.raster.tiff import (
    Level,
    Tag,
    TiffFormatError,
    read_file_images,
    read_images,
    tile_blocks,
    write_cog,
)


@pytest.fixture(scope="module")
def gdal_cog(tmp_path_factory):
    """A COG written by GDAL with the mosaic profile: 1300 x 1100, two overviews, a nodata band."""
    rng = np.random.default_rng(3)
    data = rng.integers(1, 256, (4, 1100, 1300), dtype=np.uint8)
    data[:, :100] = 0
    path = str(tmp_path_factory.mktemp("cog") / "gdal.tif")
    with rasterio.open(path, "w", width=1300, height=1100, crs="EPSG:32631",
                       transform=Affine(10, 0, 3e5, 0, -10, 5e6), **profile("mosaic")) as dst:
        dst.write(data)
    return path, data


def _levels_of(path: str) -> list[Level]:
    return [Level(image.tags, tuple(tile_blocks(image, path))) for image in read_file_images(path)]


def _pixels(path: str) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        out = [src.read()]
        count = len(src.overviews(1))
    for level in range(count):
        with rasterio.open(path, OVERVIEW_LEVEL=level) as ovr:
            out.append(ovr.read())
    return out


def test_gdal_cog_is_read_as_its_main_image_and_overviews(gdal_cog):
    path, _ = gdal_cog
    images = read_file_images(path)
    assert [(i.width, i.height) for i in images] == [(1300, 1100), (650, 550), (325, 275)]
    assert [len(i.offsets) for i in images] == [3 * 3, 2 * 2, 1]
    assert images[0].block_shape == (512, 512) and images[0].blocks_across() == 3
    # GDAL gives overviews exactly the tags overview_tags keeps.
    assert set(images[1].tags) == tiff.OVERVIEW_TAGS - {tiff.TILE_OFFSETS, tiff.TILE_BYTE_COUNTS}
    assert images[1].value(tiff.NEW_SUBFILE_TYPE) == 1 and images[0].value(tiff.NEW_SUBFILE_TYPE) is None


def test_rewritten_from_its_own_blocks_it_is_the_same_cog(gdal_cog, tmp_path):
    path, data = gdal_cog
    out = str(tmp_path / "copy.tif")
    size = write_cog(out, _levels_of(path))
    with open(path, "rb") as f:
        original = f.read()
    # The same size and ghost header as GDAL's own; only the order of tag values differs.
    assert size == len(original)
    with open(out, "rb") as f:
        assert f.read(len(tiff.GHOST_HEADER) + 8)[8:] == original[8 : 8 + len(tiff.GHOST_HEADER)]
    valid, errors, warnings = cog_validate(out)
    assert valid and not warnings, (errors, warnings)
    for ours, theirs in zip(_pixels(out), _pixels(path)):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(_pixels(out)[0], data)
    with rasterio.open(out) as a, rasterio.open(path) as b:
        assert a.profile == b.profile and a.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_past_the_threshold_it_is_written_as_bigtiff(gdal_cog, tmp_path, monkeypatch):
    path, data = gdal_cog
    monkeypatch.setattr(tiff, "BIGTIFF_THRESHOLD", 1000)
    out = str(tmp_path / "big.tif")
    write_cog(out, _levels_of(path))
    with open(out, "rb") as f:
        assert f.read(4) == b"II+\x00"
    assert cog_validate(out)[0]
    for ours, theirs in zip(_pixels(out), _pixels(path)):
        np.testing.assert_array_equal(ours, theirs)
    # And read back by this module: offsets as LONG8.
    assert [len(i.offsets) for i in read_file_images(out)] == [9, 4, 1]


def test_sparse_blocks_stay_sparse_and_read_as_nodata(gdal_cog, tmp_path):
    path, data = gdal_cog
    levels = _levels_of(path)
    blocks = list(levels[0].blocks)
    blocks[4] = (None, 0, 0)  # the middle block
    out = str(tmp_path / "sparse.tif")
    write_cog(out, [Level(levels[0].tags, tuple(blocks))] + levels[1:])
    expected = data.copy()
    expected[:, 512:1024, 512:1024] = 0
    np.testing.assert_array_equal(_pixels(out)[0], expected)
    assert read_file_images(out)[0].byte_counts[4] == 0


def test_what_it_cannot_read_is_a_clear_error(gdal_cog, tmp_path):
    with pytest.raises(TiffFormatError, match="little-endian"):
        read_images(io.BytesIO(b"MM\x00*\x00\x00\x00\x08"))
    with pytest.raises(TiffFormatError, match="magic number 41"):
        read_images(io.BytesIO(b"II)\x00\x08\x00\x00\x00"))
    with pytest.raises(TiffFormatError, match="no image directory"):
        read_images(io.BytesIO(b"II*\x00\x00\x00\x00\x00"))
    with pytest.raises(TiffFormatError, match="cut short"):
        read_images(io.BytesIO(b"II*\x00\x08\x00\x00\x00\x05\x00\x00\x01"))  # 5 entries promised, none there
    with pytest.raises(TiffFormatError, match="65535 entries"):
        read_images(io.BytesIO(b"II*\x00\x08\x00\x00\x00\xff\xff"))
    # One entry: TileOffsets, LONG, 2**30 values at offset 26.
    huge = b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", 324, 4, 2**30, 26) + b"\x00" * 4
    with pytest.raises(TiffFormatError, match="claims 4294967296 bytes"):
        read_images(io.BytesIO(huge))
    short = b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", 324, 4, 3, 26) + b"\x00" * 6
    with pytest.raises(TiffFormatError, match="values are cut short"):
        read_images(io.BytesIO(short))
    path, _ = gdal_cog
    levels = _levels_of(path)
    source, offset, count = levels[0].blocks[0]
    cut = str(tmp_path / "cut.tif")
    with open(path, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(offset + count // 2))  # the first block cut short
    broken = Level(levels[0].tags, ((cut, offset, count),) + levels[0].blocks[1:])
    with pytest.raises(TiffFormatError, match="cut short"):
        write_cog(str(tmp_path / "never.tif"), [broken])


def test_tag_values_round_trip():
    assert Tag.of(tiff.DOUBLE, [1.5, -2.0]).values() == (1.5, -2.0)
    assert Tag.of(tiff.LONG8, [2**40]).values() == (2**40,)
    assert Tag(2, 3, b"ab\x00").values() == (97, 98, 0)
    assert struct.calcsize("<HHI") + 4 == 12  # a classic entry: the layout read_images assumes


def test_without_copy_file_range_blocks_are_copied_through_python(gdal_cog, tmp_path, monkeypatch):
    path, data = gdal_cog
    monkeypatch.delattr(tiff.os, "copy_file_range")
    out = str(tmp_path / "plain.tif")
    write_cog(out, _levels_of(path))
    np.testing.assert_array_equal(_pixels(out)[0], data)
    assert cog_validate(out)[0]
