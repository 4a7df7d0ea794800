"""Tile computation: the chunk plan, compute_tile, reused buffers (temporal_median.compute.tile)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from raster_support import (
    HEIGHT,
    TRANSFORM,
    WIDTH,
    random_scene,
    read_direct,
    write_scene,
)
from rasterio.enums import ColorInterp
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from temporal_median.base.errors import (
    InputMismatch,
    InputUnreadable,
    InvalidRequest,
)
from temporal_median.base.grid import Grid, RasterGrid, Window
from temporal_median.compute import tile as tiles_module
from temporal_median.compute.median import compute_median
from temporal_median.compute.tile import CHUNK_BYTES, compute_tile, plan_chunks
from temporal_median.raster.read import inspect_inputs


@pytest.mark.parametrize(
    "window, block, n, budget",
    [
        (Window(0, 0, 1024, 1024), (512, 512), 216, 192 << 20),
        (Window(1024, 2048, 1024, 1024), (256, 256), 216, 192 << 20),
        (Window(10240, 10240, 740, 740), (512, 512), 216, 192 << 20),
        (Window(100, 37, 900, 700), (256, 256), 5, 1 << 20),
        (Window(100, 37, 900, 700), (256, 512), 50, 1 << 10),
        (Window(0, 0, 64, 64), (1024, 1024), 3, 1 << 30),
    ],
)
def test_chunks_tile_the_window_on_block_edges(window, block, n, budget):
    chunks = plan_chunks(window, block, n, budget)
    covered = np.zeros((window.height, window.width), np.int32)
    for r0, r1, c0, c1 in chunks:
        covered[r0:r1, c0:c1] += 1
        # Every cut is a window edge or a source block edge: no block is read by two chunks.
        for rel, off, step, edge in ((r0, window.row_off, block[0], 0), (r1, window.row_off, block[0], window.height),
                                     (c0, window.col_off, block[1], 0), (c1, window.col_off, block[1], window.width)):
            assert rel in (0, edge) or (rel + off) % step == 0
        # Within budget unless a single block already exceeds it.
        assert n * 3 * (r1 - r0) * (c1 - c0) <= max(budget, n * 3 * block[0] * block[1])
    assert (covered == 1).all()


def test_a_course_tile_is_one_chunk_whatever_the_block_size():
    # A year of scenes over a 1024 window: 648 MiB, what 1024-pixel blocks need anyway.
    for block in ((512, 512), (1024, 1024), (256, 256)):
        assert plan_chunks(Window(1024, 1024, 1024, 1024), block, 216) == [(0, 1024, 0, 1024)]
    assert CHUNK_BYTES == 216 * 3 * 1024 * 1024
    # More scenes: whole-width strips of whole block rows, as long as blocks allow.
    assert plan_chunks(Window(1024, 1024, 1024, 1024), (512, 512), 300) == [(0, 512, 0, 1024), (512, 1024, 0, 1024)]
    assert plan_chunks(Window(1024, 1024, 1024, 1024), (1024, 1024), 300) == [(0, 1024, 0, 1024)]


# --------------------------------------------------------------------------------------------
# compute_tile and the tile COG
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["luminance", "per-band"])
def test_compute_tile_writes_the_median_as_a_valid_cog(series, tmp_path, method):
    window = Window(256, 128, 444, 472)  # an edge window, offsets not on block edges
    dest = tmp_path / "tiles" / "r000_c000.tif"
    stats = compute_tile(series, window, str(dest), method=method, max_workers=4)

    expected = compute_median(read_direct(series, window), method)
    assert cog_validate(str(dest)) == (True, [], [])
    with rasterio.open(dest) as ds:
        assert ds.count == 4 and ds.dtypes == ("uint8",) * 4
        assert (ds.width, ds.height) == (window.width, window.height)
        assert ds.crs.to_string() == "EPSG:32631"
        assert ds.transform == TRANSFORM @ Affine.translation(256, 128)
        assert ds.nodatavals == (0, 0, 0, 0)
        assert ds.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined)
        assert "count" in ds.descriptions[3] and "255" in ds.descriptions[3]
        assert ds.compression.name == "deflate"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert ds.block_shapes[0] in ((256, 256), (512, 512))
        data = ds.read()
    np.testing.assert_array_equal(data[:3], expected.rgb)
    np.testing.assert_array_equal(data[3], np.minimum(expected.count, 255))
    # nodata 0 means exactly "no valid sample".
    assert ((data == 0).any(axis=0) == (expected.count == 0)).all()
    assert stats.window == window
    assert stats.valid_fraction == pytest.approx(np.count_nonzero(expected.count) / expected.count.size)
    assert 0 < stats.valid_fraction < 1
    assert min(stats.seconds_read, stats.seconds_median, stats.seconds_write) >= 0
    assert json.loads(json.dumps(stats.to_dict()))["window"] == window.as_list()
    assert os.listdir(dest.parent) == [dest.name]


def test_compute_tile_bytes_read_sums_the_blocks_touched(series, tmp_path):
    window = Window(200, 0, 100, 300)  # blocks (0,0), (1,0), (0,1), (1,1)
    stats = compute_tile(series, window, str(tmp_path / "t.tif"))
    total = 0
    for path in series:
        with rasterio.open(path) as ds:
            total += sum(int(ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1)) for x in (0, 1) for y in (0, 1))
    assert stats.bytes_read == total


@pytest.mark.parametrize("budget", [1 << 30, 7 * 3 * 256 * 700, 7 * 3 * 256 * 256, 1])
def test_compute_tile_chunking_does_not_change_the_result(series, tmp_path, monkeypatch, budget):
    window = Window(0, 0, WIDTH, HEIGHT)
    monkeypatch.setattr(tiles_module, "CHUNK_BYTES", budget)
    # From one chunk (1 GiB) to one block per chunk (1 byte, then a single buffer, no overlap).
    assert len(plan_chunks(window, (256, 256), len(series))) == {1 << 30: 1, 7 * 3 * 256 * 700: 3}.get(budget, 9)
    compute_tile(series, window, str(tmp_path / "t.tif"), max_workers=2)
    expected = compute_median(read_direct(series, window))
    with rasterio.open(tmp_path / "t.tif") as ds:
        np.testing.assert_array_equal(ds.read(indexes=[1, 2, 3]), expected.rgb)


def test_compute_tile_checks_the_expected_grid(series, tmp_path):
    grid = inspect_inputs(series)
    other = RasterGrid.from_dict({**grid.to_dict(), "crs": "EPSG:32630"})
    with pytest.raises(InputMismatch) as info:
        compute_tile(series, Window(0, 0, 10, 10), str(tmp_path / "t.tif"), expected=other)
    assert series[0] in str(info.value)
    assert not (tmp_path / "t.tif").exists()


def test_compute_tile_rejects_unknown_method_before_reading(tmp_path):
    with pytest.raises(InvalidRequest):
        compute_tile([str(tmp_path / "nothing.tif")], Window(0, 0, 1, 1), str(tmp_path / "t.tif"), method="mean")


def test_failed_tile_leaves_previous_file_and_no_temp(series, tmp_path):
    dest = tmp_path / "t.tif"
    dest.write_bytes(b"previous")
    with pytest.raises(InputUnreadable):
        compute_tile(series + [str(tmp_path / "missing.tif")], Window(0, 0, 64, 64), str(dest))
    assert dest.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["scenes", "t.tif"]




def test_compute_tile_on_the_course_grid_edge_window(tmp_path):
    """A 1100 x 1100 series: the grid's bottom-right window is 76 x 76 at offset 1024."""
    rng = np.random.default_rng(3)
    paths = [write_scene(tmp_path / f"e{i}.tif", random_scene(rng, 1100, 1100), blocksize=512) for i in range(3)]
    window = Grid(1100, 1100).window("r001_c001")
    compute_tile(paths, window, str(tmp_path / "edge.tif"))
    with rasterio.open(tmp_path / "edge.tif") as ds:
        assert (ds.width, ds.height) == (76, 76)
        assert ds.transform == TRANSFORM @ Affine.translation(1024, 1024)
        np.testing.assert_array_equal(ds.read(indexes=[1, 2, 3]), compute_median(read_direct(paths, window)).rgb)




def test_read_buffers_are_reused_across_tiles_of_different_sizes(series, tmp_path):
    pool = tiles_module._BUFFERS
    for window in (Window(0, 0, 512, 512), Window(512, 512, 188, 88), Window(0, 512, 512, 88)):
        compute_tile(series, window, str(tmp_path / "t.tif"))
        with rasterio.open(tmp_path / "t.tif") as ds:
            expected = compute_median(read_direct(series, window))
            assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)
    assert 0 < sum(b.size for b in pool._free) <= CHUNK_BYTES
