"""Assembling the mosaic: VRT, whole-raster COG and quicklook from grid tiles, and bad tiles refused."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from temporal_median.assembly import cog as assemble
from temporal_median.assembly.blockcopy import copy_obstacle, half_average
from temporal_median.assembly.cog import MosaicResult, build_mosaic, quicklook
from temporal_median.assembly.vrt import build_vrt
from temporal_median.base.errors import InputMismatch, InputUnreadable
from temporal_median.base.grid import Grid
from temporal_median.raster.tiff import read_file_images
from temporal_median.raster.write import write_bands

WIDTH, HEIGHT, TILE = 700, 500, 256  # neither side a multiple of the tile size
CRS_32631 = CRS.from_epsg(32631)
TRANSFORM = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0)


def _expected_raster(seed: int = 7, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A 4-band mosaic like the median writes: RGB 1..255, a count, and nodata patches (all zeros)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 256, size=(4, height, width), dtype=np.uint8)
    data[:, 40:130, 0:301] = 0  # nodata crossing a tile edge, odd right edge
    data[:, 300:500, 600:700] = 0  # nodata in the corner edge tile
    return data


def _write_tiles(directory, data, *, grid=Grid(WIDTH, HEIGHT, TILE), transform=TRANSFORM, crs=CRS_32631):
    os.makedirs(directory, exist_ok=True)
    paths = []
    for tile_id, w in grid.windows():
        path = os.path.join(directory, f"{tile_id}.tif")
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=w.width,
            height=w.height,
            count=4,
            dtype="uint8",
            crs=crs,
            transform=transform @ Affine.translation(w.col_off, w.row_off),
            nodata=0,
            compress="deflate",
        ) as dst:
            dst.write(data[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width])
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def uneven_grid_tiles(tmp_path_factory):
    """Tiles of a 700 x 500 raster on a 256 grid (edge tiles 188 wide, 244 tall) and the raster."""
    data = _expected_raster()
    paths = _write_tiles(str(tmp_path_factory.mktemp("tiles")), data)
    return paths, data


@pytest.fixture(scope="module")
def assembled(uneven_grid_tiles, tmp_path_factory) -> MosaicResult:
    paths, _ = uneven_grid_tiles
    out = str(tmp_path_factory.mktemp("out"))
    return build_mosaic(paths, out, width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)


def test_cog_equals_tiles_placed_on_grid(assembled, uneven_grid_tiles):
    _, data = uneven_grid_tiles
    with rasterio.open(assembled.cog_path) as src:
        assert (src.width, src.height, src.count) == (WIDTH, HEIGHT, 4)
        assert src.dtypes == ("uint8",) * 4
        assert src.crs == CRS_32631
        assert src.transform.almost_equals(TRANSFORM)
        assert src.nodatavals == (0, 0, 0, 0)
        assert src.overviews(1), "the COG has internal overviews"
        assert src.compression.name.lower() == "deflate"
        np.testing.assert_array_equal(src.read(), data)
    valid, errors, _ = cog_validate(assembled.cog_path)
    assert valid, errors
    assert (assembled.width, assembled.height) == (WIDTH, HEIGHT)
    assert assembled.bytes_written == sum(
        os.path.getsize(p) for p in (assembled.cog_path, assembled.vrt_path, assembled.quicklook_path)
    )


def test_out_dir_holds_only_the_three_outputs(assembled):
    out = os.path.dirname(assembled.cog_path)
    assert sorted(os.listdir(out)) == ["median.png", "median.tif", "median.vrt"]


def test_vrt_reads_back_the_same_pixels(assembled, uneven_grid_tiles):
    _, data = uneven_grid_tiles
    with rasterio.open(assembled.vrt_path) as src:
        assert src.crs == CRS_32631
        assert src.transform.almost_equals(TRANSFORM)
        assert src.nodatavals == (0, 0, 0, 0)
        assert [c.name for c in src.colorinterp] == ["red", "green", "blue", "undefined"]
        np.testing.assert_array_equal(src.read(), data)
    sources = [e.text for e in ET.parse(assembled.vrt_path).iter("SourceFilename")]
    assert len(sources) == 4 * len(Grid(WIDTH, HEIGHT, TILE))
    assert all(os.path.isabs(s) for s in sources)


def test_vrt_from_relative_tile_paths_is_absolute(uneven_grid_tiles, tmp_path, monkeypatch):
    paths, data = uneven_grid_tiles
    monkeypatch.chdir(os.path.dirname(paths[0]))
    vrt = str(tmp_path / "m.vrt")
    build_vrt([os.path.basename(p) for p in paths], vrt, grid_transform=TRANSFORM, crs=CRS_32631, width=WIDTH, height=HEIGHT)
    monkeypatch.chdir(tmp_path)
    with rasterio.open(vrt) as src:
        np.testing.assert_array_equal(src.read(), data)


def test_overviews_average_without_darkening_nodata_edges(tmp_path):
    # Uniform colour with a nodata strip ending at an odd column: the 2x2 overview pixel that
    # straddles the edge must keep the colour (nodata skipped), not halve it.
    data = np.empty((4, HEIGHT, WIDTH), dtype=np.uint8)
    data[:] = np.array([200, 150, 100, 7], dtype=np.uint8)[:, None, None]
    data[:, :, :301] = 0
    paths = _write_tiles(str(tmp_path / "tiles"), data)
    result = build_mosaic(paths, str(tmp_path / "out"), width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)
    with rasterio.open(result.cog_path, OVERVIEW_LEVEL=0) as ovr:
        level = ovr.read()
    assert level.shape == (4, HEIGHT // 2, WIDTH // 2)
    np.testing.assert_array_equal(level[:, :, 150], np.array([200, 150, 100, 7])[:, None].repeat(HEIGHT // 2, 1))
    assert not level[:, :, :150].any()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_quicklook_is_a_png_of_the_expected_size(assembled, uneven_grid_tiles, tmp_path):
    _, data = uneven_grid_tiles
    with rasterio.open(assembled.quicklook_path) as png:
        assert png.driver == "PNG"
        assert (png.width, png.height, png.count) == (WIDTH, HEIGHT, 4)  # never upsampled
        full = png.read()
    # At full size the quicklook is the mosaic's RGB, alpha 0 exactly on nodata.
    np.testing.assert_array_equal(full[:3], data[:3])
    np.testing.assert_array_equal(full[3], np.where(data[3] > 0, 255, 0))

    small = str(tmp_path / "small.png")
    quicklook(assembled.cog_path, small, max_size=256)
    with rasterio.open(small) as png:
        assert (png.width, png.height, png.count) == (256, round(HEIGHT * 256 / WIDTH), 4)
        alpha = png.read(4)
    assert alpha[30, 200] == 255  # inside valid data
    assert alpha[30, 40] == 0  # inside the nodata patch at rows 40..130, cols 0..301


def test_missing_tile_file_names_the_tile(uneven_grid_tiles, tmp_path):
    paths, _ = uneven_grid_tiles
    # The list names r001_c002 but points at a file that does not exist.
    bad = [p if not p.endswith("r001_c002.tif") else str(tmp_path / "r001_c002.tif") for p in paths]
    out = tmp_path / "out"
    with pytest.raises(InputUnreadable, match="r001_c002"):
        build_mosaic(bad, str(out), width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)
    assert os.listdir(out) == []


def test_tile_left_out_of_the_list_is_named(uneven_grid_tiles, tmp_path):
    paths, _ = uneven_grid_tiles
    fewer = [p for p in paths if not p.endswith("r000_c001.tif")]
    with pytest.raises(InputMismatch, match="r000_c001"):
        build_mosaic(fewer, str(tmp_path), width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)


def test_tile_with_wrong_transform_names_the_tile(uneven_grid_tiles, tmp_path):
    paths, data = uneven_grid_tiles
    shifted = str(tmp_path / "tiles")
    _write_tiles(shifted, data)
    victim = os.path.join(shifted, "r001_c001.tif")
    with rasterio.open(victim, "r+") as dst:
        dst.transform = dst.transform @ Affine.translation(1, 0)  # one pixel east of its slot
    tiles = sorted(os.path.join(shifted, n) for n in os.listdir(shifted))
    out = tmp_path / "out"
    with pytest.raises(InputMismatch, match="r001_c001.*grid slot"):
        build_mosaic(tiles, str(out), width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)
    assert os.listdir(out) == []
    with pytest.raises(InputMismatch, match="r001_c001"):
        build_vrt(tiles, str(tmp_path / "m.vrt"), grid_transform=TRANSFORM, crs=CRS_32631, width=WIDTH, height=HEIGHT)
    assert not (tmp_path / "m.vrt").exists()


def test_tile_with_wrong_crs_names_the_tile(uneven_grid_tiles, tmp_path):
    paths, data = uneven_grid_tiles
    tiles = _write_tiles(str(tmp_path / "tiles"), data)
    with rasterio.open(tiles[0], "r+") as dst:
        dst.crs = CRS.from_epsg(32632)
    with pytest.raises(InputMismatch, match="r000_c000.*CRS"):
        build_mosaic(tiles, str(tmp_path / "out"), width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)


def test_manifest_style_georeferencing_is_accepted(uneven_grid_tiles, tmp_path):
    # The mosaic function passes the job manifest's grid: 6 floats and "EPSG:xxxx", no tile size.
    paths, data = uneven_grid_tiles
    result = build_mosaic(
        paths, str(tmp_path), width=WIDTH, height=HEIGHT, transform=tuple(TRANSFORM)[:6], crs="EPSG:32631"
    )
    with rasterio.open(result.cog_path) as src:
        assert src.crs == CRS_32631
        assert src.transform.almost_equals(TRANSFORM)
        np.testing.assert_array_equal(src.read(), data)


def test_tile_given_twice_is_refused(uneven_grid_tiles, tmp_path):
    paths, _ = uneven_grid_tiles
    with pytest.raises(InputMismatch, match="r000_c000 given twice"):
        build_mosaic(paths + paths[:1], str(tmp_path), width=WIDTH, height=HEIGHT, transform=TRANSFORM, crs=CRS_32631)


# -- tiles as the median function writes them: the tile profile, on a grid of whole blocks --------

PROFILE_WIDTH, PROFILE_HEIGHT, PROFILE_TILE = 1300, 1100, 512  # edge tiles 276 wide, 76 tall


@pytest.fixture(scope="module")
def profile_tiles(tmp_path_factory):
    """Tiles written by write_bands (the tile profile) on a 512 grid of a 1300 x 1100 raster."""
    data = _expected_raster(seed=11, width=PROFILE_WIDTH, height=PROFILE_HEIGHT)
    directory = tmp_path_factory.mktemp("profile_tiles")
    paths = []
    for tile_id, w in Grid(PROFILE_WIDTH, PROFILE_HEIGHT, PROFILE_TILE).windows():
        path = str(directory / f"{tile_id}.tif")
        window_data = np.ascontiguousarray(data[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width])
        write_bands(path, window_data, TRANSFORM @ Affine.translation(w.col_off, w.row_off), CRS_32631)
        paths.append(path)
    return paths, data


def _levels(path: str) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        count = len(src.overviews(1))
        levels = [src.read()]
    for level in range(count):
        with rasterio.open(path, OVERVIEW_LEVEL=level) as ovr:
            levels.append(ovr.read())
    return levels


def test_count_band_is_data_not_alpha(profile_tiles, tmp_path):
    # As alpha (ExtraSamples=2, GTiff's default for a 4-band RGB), viewers made pixels with few
    # valid samples see-through.
    paths, _ = profile_tiles
    result = build_mosaic(paths, str(tmp_path), width=PROFILE_WIDTH, height=PROFILE_HEIGHT, transform=TRANSFORM, crs=CRS_32631)
    for level in (None, 0):
        with rasterio.open(result.cog_path, **({} if level is None else {"OVERVIEW_LEVEL": level})) as src:
            assert [c.name for c in src.colorinterp] == ["red", "green", "blue", "undefined"]


def test_profile_tiles_blocks_are_copied_into_a_cog_equal_to_the_recompressed_one(profile_tiles, tmp_path, monkeypatch):
    paths, data = profile_tiles
    kwargs = dict(width=PROFILE_WIDTH, height=PROFILE_HEIGHT, transform=TRANSFORM, crs=CRS_32631)
    copied = build_mosaic(paths, str(tmp_path / "copied"), **kwargs)
    assert copied.recompressed is None
    # The same tiles through the other path: GDAL compresses the whole scratch.
    monkeypatch.setattr(assemble, "copy_obstacle", lambda *a, **k: "forced for the test")
    recompressed = build_mosaic(paths, str(tmp_path / "recompressed"), **kwargs)
    assert recompressed.recompressed == "forced for the test"

    valid, errors, warnings = cog_validate(copied.cog_path)
    assert valid and not warnings, (errors, warnings)
    with rasterio.open(copied.cog_path) as a, rasterio.open(recompressed.cog_path) as b:
        assert a.profile == b.profile
        assert a.tags() == b.tags() and a.descriptions == b.descriptions
        assert a.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        # The count band is data, not transparency (as alpha, viewers made thin pixels see-through).
        assert [c.name for c in a.colorinterp] == [c.name for c in b.colorinterp] == ["red", "green", "blue", "undefined"]
    copied_levels, recompressed_levels = _levels(copied.cog_path), _levels(recompressed.cog_path)
    assert [x.shape[1:] for x in copied_levels] == [(1100, 1300), (550, 650), (275, 325)]
    np.testing.assert_array_equal(copied_levels[0], data)
    for x, y in zip(copied_levels, recompressed_levels):
        np.testing.assert_array_equal(x, y)
    # Every full-resolution block is a tile's block, byte for byte.
    tile_blocks = set()
    for path in paths:
        image = read_file_images(path)[0]
        with open(path, "rb") as f:
            for offset, count in zip(image.offsets, image.byte_counts):
                f.seek(offset)
                tile_blocks.add(f.read(count))
    main = read_file_images(copied.cog_path)[0]
    with open(copied.cog_path, "rb") as f:
        for offset, count in zip(main.offsets, main.byte_counts):
            f.seek(offset - 4)
            leader = f.read(4)
            block = f.read(count)
            assert int.from_bytes(leader, "little") == count and f.read(4) == block[-4:]
            assert block in tile_blocks


def test_tiles_off_the_block_grid_are_recompressed_with_the_reason(tmp_path):
    # A 768 grid: the second column of tiles starts mid-block, so their blocks do not line up.
    width, height = 1300, 600
    data = _expected_raster(seed=5, width=width, height=height)
    paths = []
    for tile_id, w in Grid(width, height, 768).windows():
        path = str(tmp_path / "tiles" / f"{tile_id}.tif")
        window_data = np.ascontiguousarray(data[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width])
        write_bands(path, window_data, TRANSFORM @ Affine.translation(w.col_off, w.row_off), CRS_32631)
        paths.append(path)
    result = build_mosaic(paths, str(tmp_path / "out"), width=width, height=height, transform=TRANSFORM, crs=CRS_32631)
    assert "off the 512-px block grid" in result.recompressed
    with rasterio.open(result.cog_path) as src:
        np.testing.assert_array_equal(src.read(), data)


def test_stripped_tiles_are_recompressed_with_the_reason(tmp_path):
    width, height = 1024, 600
    data = _expected_raster(seed=9, width=width, height=height)
    paths = _write_tiles(str(tmp_path / "tiles"), data, grid=Grid(width, height, 512))  # GTiff strips
    result = build_mosaic(paths, str(tmp_path / "out"), width=width, height=height, transform=TRANSFORM, crs=CRS_32631)
    assert "r000_c000: not tiled" in result.recompressed
    assert _levels(result.cog_path)[0].tolist() == data.tolist()


def test_an_odd_side_is_recompressed_with_the_reason(assembled):
    # 700 x 500 on a 256 grid: tiles off the 512 block grid; an odd side says so first.
    assert "off the 512-px block grid" in assembled.recompressed
    assert "odd side (1301 x 600)" in copy_obstacle([], 1301, 600, 512)


def test_half_average_is_gdals_first_average_overview_on_even_sides(tmp_path):
    data = _expected_raster(seed=13, width=1300, height=1100)
    data[1, 7, 9] = 0  # one band's sample alone is nodata: GDAL skips it in that band only
    path = str(tmp_path / "full.tif")
    with rasterio.open(path, "w", driver="GTiff", width=1300, height=1100, count=4, dtype="uint8", nodata=0,
                       tiled=True, blockxsize=512, blockysize=512, crs=CRS_32631, transform=TRANSFORM) as dst:
        dst.write(data)
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2], Resampling.average)
    with rasterio.open(path, OVERVIEW_LEVEL=0) as ovr:
        np.testing.assert_array_equal(half_average(data), ovr.read())
