"""The window grid: exact cover, stable tile ids, and the way back from an id to its window."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import Grid, TileId, Window


def test_sentinel2_granule_has_121_windows_with_740_px_edges():
    grid = Grid(10980, 10980, 1024)
    assert (grid.rows, grid.cols, len(grid)) == (11, 11, 121)
    assert grid.window(TileId(10, 10)) == Window(10240, 10240, 740, 740)
    assert grid.window(TileId(0, 10)) == Window(10240, 0, 740, 1024)
    assert grid.window("r003_c007") == Window(7168, 3072, 1024, 1024)


@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    tile_size=st.sampled_from([256, 300, 512, 1000, 1024, 4096]),
)
def test_windows_cover_the_raster_exactly_once(width, height, tile_size):
    grid = Grid(width, height, tile_size)
    # Count coverage on a coarse proxy: every window's edges lie on the grid and areas add up.
    covered = np.zeros((grid.rows, grid.cols), dtype=int)
    area = 0
    for tile, window in grid.windows():
        covered[tile.row, tile.col] += 1
        assert 0 < window.width <= tile_size and 0 < window.height <= tile_size
        assert window.col_off + window.width <= width and window.row_off + window.height <= height
        assert grid.tile_id(window) == tile
        assert TileId.parse(str(tile)) == tile
        area += window.width * window.height
    assert area == width * height
    assert (covered == 1).all()


def test_small_raster_exact_cover_pixel_by_pixel():
    grid = Grid(700, 500, 256)
    hits = np.zeros((500, 700), dtype=int)
    for _, w in grid.windows():
        hits[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (hits == 1).all()


def test_tile_ids_are_stable_text_and_sort_row_major():
    ids = [str(t) for t in Grid(3000, 2100, 1024).tile_ids()]
    assert ids == ["r000_c000", "r000_c001", "r000_c002", "r001_c000", "r001_c001", "r001_c002",
                   "r002_c000", "r002_c001", "r002_c002"]
    assert ids == sorted(ids)


@pytest.mark.parametrize("tile_size", [255, 4097, 0, -1])
def test_tile_size_out_of_range_is_refused(tile_size):
    with pytest.raises(InvalidRequest, match="tile_size"):
        Grid(1000, 1000, tile_size)


@pytest.mark.parametrize("text", ["r1_c2", "x000_c000", "r000c000", "", None, "r000_c000.tif"])
def test_bad_tile_ids_are_refused(text):
    with pytest.raises(InvalidRequest):
        TileId.parse(text)


def test_tile_outside_grid_and_foreign_windows_are_refused():
    grid = Grid(2000, 2000, 1024)
    with pytest.raises(InvalidRequest, match="outside"):
        grid.window(TileId(2, 0))
    with pytest.raises(InvalidRequest):
        grid.tile_id(Window(1, 0, 1024, 1024))
    with pytest.raises(InvalidRequest):
        grid.tile_id(Window(1024, 0, 1024, 1024))  # the edge window is 976 wide


@pytest.mark.parametrize("values", [[0, 0, 10], [0, 0, 0, 10], [-1, 0, 1, 1], [0, 0, 1.5, 1], "0,0,1,1", [True, 0, 1, 1]])
def test_window_from_bad_lists_is_refused(values):
    with pytest.raises(InvalidRequest):
        Window.from_list(values)


def test_grid_round_trips_through_dict():
    grid = Grid(10980, 10980, 512)
    assert Grid.from_dict(grid.to_dict()) == grid
