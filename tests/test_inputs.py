"""Opening and checking input scenes, and windowed reads (temporal_median.raster.read, read_window)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from raster_support import (
    HEIGHT,
    TRANSFORM,
    WIDTH,
    read_direct,
)
from rasterio.transform import Affine

from temporal_median.base.errors import (
    InputMismatch,
    InputUnreadable,
    InvalidRequest,
    NoInputs,
    PermanentError,
)
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.compute.tile import read_window
from temporal_median.raster.read import inspect_inputs


def test_raster_grid_round_trips_through_json(series):
    grid = inspect_inputs(series)
    assert grid == RasterGrid(WIDTH, HEIGHT, "EPSG:32631", tuple(TRANSFORM)[:6], (256, 256))
    assert RasterGrid.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    window = Window(512, 256, 188, 256)
    assert grid.window_transform(window) == Affine(10.0, 0.0, 300000.0 + 5120.0, 0.0, -10.0, 4900020.0 - 2560.0)


@pytest.mark.parametrize("bad", [{}, {"width": 1}, {"width": 1, "height": 1, "crs": 5, "transform": [1] * 6, "block": [1, 1]},
                                 {"width": 1, "height": 1, "crs": "", "transform": [1] * 5, "block": [1, 1]},
                                 {"width": 0, "height": 1, "crs": "", "transform": [1] * 6, "block": [1, 1]}])
def test_raster_grid_from_dict_rejects_malformed(bad):
    with pytest.raises(InvalidRequest):
        RasterGrid.from_dict(bad)




def test_inspect_inputs_rejects_empty_list():
    with pytest.raises(NoInputs):
        inspect_inputs([])


#: Both ways of opening scenes, inspecting them all and reading a window (through the direct
#: reader), must word a bad scene the same way.
READERS = {
    "inspect_inputs": lambda urls: inspect_inputs(urls),
    "read_window": lambda urls: read_window(urls, Window(0, 0, 64, 64), max_workers=2),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    "case, error, words",
    [
        ("two_bands", InputMismatch, "2 band"),
        ("uint16", InputMismatch, "uint16"),
        ("smaller", InputMismatch, "700 x 500"),
        ("shifted", InputMismatch, "transform"),
        ("other_crs", InputMismatch, "CRS"),
        ("missing", InputUnreadable, "No such file"),
        ("not_a_raster", InputUnreadable, "not recognized"),
    ],
)
def test_each_reader_names_the_offending_file(series, odd_scenes, reader, case, error, words):
    urls = series[:3] + [odd_scenes[case]] + series[3:]
    with pytest.raises(error) as info:
        READERS[reader](urls)
    assert isinstance(info.value, PermanentError)
    assert odd_scenes[case] in str(info.value) and words in str(info.value)
    assert words in str(info.value)


def test_inputs_are_checked_against_the_first_scene(series, odd_scenes):
    # The odd scene first: the others are reported as differing from it.
    with pytest.raises(InputMismatch) as info:
        inspect_inputs([odd_scenes["other_crs"]] + series)
    assert series[0] in str(info.value)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [Window(0, 0, WIDTH, HEIGHT), Window(300, 200, 300, 311), Window(699, 599, 1, 1)])
def test_read_window_matches_direct_reads(series, window):
    stack = read_window(series, window, max_workers=3)
    assert stack.shape == (len(series), 3, window.height, window.width) and stack.dtype == np.uint8
    np.testing.assert_array_equal(stack, read_direct(series, window))


def test_read_window_fills_out(series):
    window = Window(10, 20, 30, 40)
    out = np.zeros((len(series), 3, 40, 30), np.uint8)
    assert read_window(series, window, out=out) is out
    np.testing.assert_array_equal(out, read_direct(series, window))
    with pytest.raises(InvalidRequest):
        read_window(series, window, out=np.zeros((len(series), 3, 40, 31), np.uint8))


@pytest.mark.parametrize("window", [Window(600, 0, 101, 10), Window(0, 590, 10, 11), Window(700, 0, 1, 1)])
def test_window_outside_the_raster_is_a_mismatch(series, window):
    with pytest.raises(InputMismatch) as info:
        read_window(series, window)
    assert series[0] in str(info.value)


def test_an_unreadable_scene_is_an_error_never_skipped(series, tmp_path):
    missing = str(tmp_path / "gone.tif")
    with pytest.raises(InputUnreadable) as info:
        read_window(series + [missing], Window(0, 0, 10, 10))
    assert missing in str(info.value)


def test_corrupt_block_is_unreadable(series, tmp_path):
    path = tmp_path / "corrupt.tif"
    data = bytearray(open(series[1], "rb").read())
    with rasterio.open(series[1]) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(InputUnreadable) as info:
        read_window(series[:1] + [str(path)], Window(256, 256, 10, 10))
    assert str(path) in str(info.value)
