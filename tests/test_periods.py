"""Periods (months, quarters, seasons, ranges) from one read, and cloud masks from a classification raster."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import rasterio
from area_support import median_oracle
from rasterio.transform import Affine

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.compute.tile import compute_tile
from temporal_median.job.masks import Mask, is_mask_name
from temporal_median.job.periods import Period, check_periods, period_runs, periods_between
from temporal_median.scenes.scene import Scene

TRANSFORM = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0)


def names(periods):
    return [p.name for p in periods]


def test_months_quarters_and_seasons_cover_the_range_in_order():
    first, last = date(2022, 12, 20), date(2023, 4, 2)
    assert names(periods_between("month", first, last)) == ["2022-12", "2023-01", "2023-02", "2023-03", "2023-04"]
    assert names(periods_between("quarter", first, last)) == ["2022-Q4", "2023-Q1", "2023-Q2"]
    seasons = periods_between("season", first, last)
    assert names(seasons) == ["2023-DJF", "2023-MAM"]
    assert (seasons[0].start, seasons[0].end) == (date(2022, 12, 1), date(2023, 2, 28))
    assert periods_between("month", date(2024, 2, 3), date(2024, 2, 3))[0].end == date(2024, 2, 29)
    assert periods_between("year", first, last) == ()
    ranges = check_periods("2023-03-01/2023-05-31,2023-01-01/2023-01-31")
    assert names(periods_between(ranges, first, last)) == ["2023-01-01_2023-01-31", "2023-03-01_2023-05-31"]


@pytest.mark.parametrize(
    "value, message",
    [
        ("fortnight", "is neither one of year, month, quarter, season"),
        ("2023-05-31/2023-03-01", "runs backwards"),
        ("2023-01-01/2023-03-31,2023-03-01/2023-05-31", "overlap"),
        ("2023-02-30/2023-03-01", "invalid date"),
        (42, "'periods' must be one of"),
        ([], "'periods' must be one of"),
    ],
)
def test_bad_periods_are_refused_naming_the_field(value, message):
    with pytest.raises(InvalidRequest, match=message):
        check_periods(value)


def test_each_period_is_a_run_of_the_ordered_scenes():
    periods = periods_between("month", date(2023, 1, 5), date(2023, 3, 9))
    days = [date(2023, 1, 5), date(2023, 1, 20), date(2023, 3, 1), date(2023, 3, 9)]
    assert period_runs(periods, days) == (("2023-01", 0, 2), ("2023-02", 2, 2), ("2023-03", 2, 4))
    with pytest.raises(InvalidRequest, match="acquisition time"):
        period_runs(periods, [None])


def test_masks_are_found_by_asset_key_in_any_case_or_beside_the_file(tmp_path):
    scene = Scene("/d/s.tif", item_id="S2A_1", assets=(("SCL", "/d/s_scl.tif"), ("thumbnail", "/d/t.png")))
    assert Mask.from_request({"asset": "scl"}).url_of(scene, lambda url: False) == "/d/s_scl.tif"
    with pytest.raises(InvalidRequest, match="item S2A_1 has no 'cloud' asset"):
        Mask.from_request({"asset": "cloud"}).url_of(scene, lambda url: True)
    (tmp_path / "scl").mkdir()
    (tmp_path / "scl" / "T31TCJ_20230709T104629_SCL.tif").write_bytes(b"x")
    plain = Scene.from_url(str(tmp_path / "T31TCJ_20230709T104629_TCI.tif"))
    found = Mask().url_of(plain, lambda url: (tmp_path / url[len(str(tmp_path)) + 1:]).exists())
    assert found == str(tmp_path / "scl" / "T31TCJ_20230709T104629_SCL.tif")
    lonely = Scene.from_url(str(tmp_path / "T31TCJ_20230714T104629_TCI.tif"))
    with pytest.raises(InvalidRequest, match=r"'mask': .*T31TCJ_20230714T104629_TCI.tif has no SCL mask"):
        Mask().url_of(lonely, lambda url: False)
    assert is_mask_name("/d/T31TCJ_20230709T104629_SCL.tif") and not is_mask_name("/d/T31TCJ_20230709T104629_TCI.tif")


@pytest.mark.parametrize("value, message", [({"exclude": [12]}, "unknown class"), ({"exclude": "8"}, "list of class"),
                                            ({"asset": ""}, "asset key"), ({"bands": 1}, "'mask' must be")])
def test_bad_masks_are_refused_naming_the_field(value, message):
    with pytest.raises(InvalidRequest, match=message):
        Mask.from_request(value)


@pytest.fixture
def masked_series(tmp_path):
    """Six 300 x 260 scenes and their 20 m SCLs (150 x 130), classes drawn at random."""
    rng = np.random.default_rng(5)
    scenes, masks, data, classes = [], [], [], []
    for i in range(6):
        pixels = rng.integers(1, 255, (3, 260, 300), dtype=np.uint8)
        pixels[:, rng.uniform(size=(260, 300)) < 0.05] = 255
        scl = rng.choice(np.array([0, 3, 4, 5, 8, 9, 10], np.uint8), size=(130, 150), p=[.05, .1, .35, .3, .1, .05, .05])
        scene, mask = tmp_path / f"T31TCJ_2023010{i + 1}T104629_TCI.tif", tmp_path / f"T31TCJ_2023010{i + 1}T104629_SCL.tif"
        for path, array, transform in ((scene, pixels, TRANSFORM), (mask, scl[None], TRANSFORM @ Affine.scale(2))):
            with rasterio.open(path, "w", driver="COG", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                               dtype="uint8", crs="EPSG:32631", transform=transform, compress="DEFLATE", blocksize=256) as dst:
                dst.write(array)
        scenes.append(str(scene)), masks.append(str(mask)), data.append(pixels), classes.append(scl)
    return scenes, masks, np.stack(data), np.stack(classes)


def test_every_period_and_the_whole_range_from_one_read_with_masked_samples_dropped(masked_series, tmp_path):
    scenes, masks, data, classes = masked_series
    window = Window(37, 11, 201, 173)  # odd offsets: a 10 m pixel takes the 20 m class holding its centre
    periods = [("a", 0, 2, str(tmp_path / "a.tif")), ("b", 2, 6, str(tmp_path / "b.tif")), ("none", 6, 6, str(tmp_path / "n.tif"))]
    exclude = Mask().exclude
    stats = compute_tile(scenes, window, str(tmp_path / "all.tif"), periods=periods, masks=masks, exclude=exclude)
    # Brute force: each 10 m pixel's class is the 20 m pixel holding its centre, row // 2, col // 2.
    rows = np.arange(window.row_off, window.row_off + window.height) // 2
    cols = np.arange(window.col_off, window.col_off + window.width) // 2
    expected = data[:, :, window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width].copy()
    dropped = np.isin(classes[:, rows][:, :, cols], exclude)
    expected[np.repeat(dropped[:, None], 3, axis=1)] = 0
    for path, first, stop in ((tmp_path / "all.tif", 0, 6), (tmp_path / "a.tif", 0, 2), (tmp_path / "b.tif", 2, 6)):
        lum, _, count = median_oracle(expected[first:stop])
        with rasterio.open(path) as ds:
            got = ds.read()
        np.testing.assert_array_equal(got[:3], lum)
        np.testing.assert_array_equal(got[3], np.minimum(count, 255))
    with rasterio.open(tmp_path / "n.tif") as ds:
        assert not ds.read().any()  # a period without scenes: all nodata
    assert stats.bytes_read > 0 and 0 < stats.valid_fraction < 1
    assert Period(date(2023, 1, 1), date(2023, 1, 31), "x").holds(date(2023, 1, 31))


def test_the_area_path_takes_periods_and_masks_too(masked_series, tmp_path):
    from temporal_median.compute.area import compute_area_tile

    scenes, masks, data, classes = masked_series
    grid = RasterGrid(300, 260, "EPSG:32631", tuple(TRANSFORM)[:6], (512, 512))
    window = Window(0, 0, 300, 260)
    periods = [("b", 1, 3, str(tmp_path / "b.tif"))]
    compute_area_tile(scenes[:3] + scenes[3:], [(0,), (1, 2), (3,), (4,), (5,)], grid, window, str(tmp_path / "all.tif"),
                      periods=periods, masks=masks, exclude=Mask().exclude)
    with rasterio.open(tmp_path / "b.tif") as ds:
        b = ds.read()
    rows, cols = np.arange(260) // 2, np.arange(300) // 2
    expected = data.copy()
    expected[np.repeat(np.isin(classes[:, rows][:, :, cols], Mask().exclude)[:, None], 3, axis=1)] = 0
    fused = expected[1].copy()  # observation 1 fuses scenes 1 and 2: first valid sample
    take = ~np.all((fused > 0) & (fused < 255), axis=0) & np.all((expected[2] > 0) & (expected[2] < 255), axis=0)
    fused[:, take] = expected[2][:, take]
    lum, _, count = median_oracle(np.stack([fused, expected[3]]))
    np.testing.assert_array_equal(b[:3], lum)
    np.testing.assert_array_equal(b[3], count)
