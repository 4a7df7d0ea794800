"""Areas over several tiles and UTM zones: the output grid, each window's scenes, fusion per acquisition, the oracle."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pytest
import rasterio
from area_support import BBOX, PASSES, oracle, warp_exact, warp_reproject, write_area_series
from rasterio.transform import Affine

from temporal_median.base.errors import InputMismatch, InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.compute.area import check_observations, compute_area_tile, fuse_observations
from temporal_median.job.area import Area
from temporal_median.job.layout import plan_layout, solar_day
from temporal_median.raster.warp import area_grid, parse_crs, utm_crs
from temporal_median.scenes.scene import Scene
from temporal_median.scenes.stac import StacInput

#: At least this share of the oracle's pixels must be identical (nearest neighbour can pick
#: another source pixel where a centre falls on a pixel edge: the warper of a window and of the
#: whole grid compute those centres with different rounding).
IDENTICAL = 0.999


@pytest.fixture(scope="module")
def area_items(tmp_path_factory):
    path = write_area_series(tmp_path_factory.mktemp("area"))
    return path, json.loads(path.read_text())["features"]


def scenes_of(path):
    return StacInput.from_request({"inputs": str(path)}, allow_local=True).scenes()


def compose(layout, method, tmp_path):
    """Every window of ``layout`` through compute_area_tile, assembled into (rgb, count)."""
    raster = layout.raster
    out = np.zeros((4, raster.height, raster.width), np.uint8)
    for tile, window in layout.grid.windows():
        chosen = layout.windows[tile]
        position = {index: i for i, index in enumerate(chosen)}
        groups = [tuple(position[i] for i in g if i in position) for g in layout.observations]
        path = tmp_path / f"{tile}.tif"
        compute_area_tile([layout.scenes[i].url for i in chosen], [g for g in groups if g], raster, window,
                          str(path), method=method)
        with rasterio.open(path) as ds:
            assert ds.crs.to_string() == raster.crs
            assert tuple(ds.transform)[:6] == pytest.approx(raster.window_transform(window)[:6])
            out[:, window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width] = ds.read()
    return out[:3], out[3]


@pytest.mark.parametrize("method", ["luminance", "per-band"])
def test_an_area_over_two_zones_equals_the_oracle(area_items, tmp_path, method):
    path, items = area_items
    layout = plan_layout(scenes_of(path), Area(bbox=tuple(BBOX)), 256, max_windows=100)
    raster = layout.raster
    assert raster.crs == "EPSG:32631"  # the UTM zone of the area's centre (0.0 E)
    rgb, count = compose(layout, method, tmp_path)
    grid = (raster.crs, Affine(*raster.transform), raster.width, raster.height)
    shares = {}
    for name, warp in (("exact", warp_exact), ("reproject", warp_reproject)):
        lum, per_band, expected_count = oracle(items, *grid, warp=warp)
        expected = lum if method == "luminance" else per_band
        same = np.all(rgb == expected, axis=0) & (count == np.minimum(expected_count, 255))
        shares[name] = same.mean()
        print(f"{method}, oracle warped {name}: {np.count_nonzero(~same)} of {same.size} pixels differ")
    assert shares["exact"] >= IDENTICAL
    # reproject's 1/8-pixel approximation moves some centres across source pixel edges.
    assert shares["reproject"] >= 0.99
    # The count band counts observations: never more than the passes, reached where both tiles overlap.
    assert count.max() <= len(PASSES) and expected_count.max() == count.max()


def test_each_window_reads_only_the_scenes_touching_it(area_items):
    path, _ = area_items
    layout = plan_layout(scenes_of(path), Area(bbox=(-0.058, 44.99, 0.055, 45.02)), 256, max_windows=100)
    tiles_of = [{("30TYQ" in layout.scenes[i].url) for i in layout.windows[tile]} for tile in layout.grid.tile_ids()]
    # The westernmost windows lie in tile 30TYQ only, the easternmost in 31TBK only.
    assert tiles_of[0] == {True} and tiles_of[layout.grid.cols - 1] == {False}
    # One pass over both tiles is one observation; a pass over one tile is one too.
    assert sorted(len(g) for g in layout.observations) == [1, 1, 2, 2, 2, 2, 2]
    assert [len(g) for g in layout.observations] == [len(p[2]) for p in PASSES]


def test_without_an_area_the_union_of_footprints_on_a_utm_grid(area_items):
    path, _ = area_items
    layout = plan_layout(scenes_of(path), None, 512, max_windows=100)
    assert layout.raster.crs == "EPSG:32631" and layout.raster.transform[0] == 10.0
    assert layout.outside == () and len(layout.scenes) == 12
    # Edges on multiples of the resolution.
    assert layout.raster.transform[2] % 10 == 0 and layout.raster.transform[5] % 10 == 0


def test_scenes_outside_the_area_are_left_out(area_items):
    path, _ = area_items
    layout = plan_layout(scenes_of(path), Area(bbox=(-0.055, 44.99, -0.04, 45.0)), 256, max_windows=100)
    assert {s.url.split("/")[-1][:6] for s in layout.scenes} == {"T30TYQ"}
    assert len(layout.outside) == 6


@pytest.mark.parametrize(
    "area, field",
    [
        (Area(bbox=(10.0, 50.0, 10.1, 50.1)), "'bbox': the area touches no scene"),
        (Area(bbox=tuple(BBOX), crs="EPSG:99999"), "'crs': unknown CRS"),
        (Area(bbox=tuple(BBOX), resolution=50000.0), "'resolution' 50000.0 is coarser than the area"),
        (Area(bbox=tuple(BBOX), resolution=0.5), "'bbox': the output grid is .* at most 100"),
    ],
)
def test_bad_grids_are_refused_naming_the_field(area_items, area, field):
    path, _ = area_items
    with pytest.raises(InvalidRequest, match=field):
        plan_layout(scenes_of(path), area, 256, max_windows=100)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"bbox": [1, 2, 3]}, "'bbox' must be"),
        ({"bbox": [1, 2, 0, 3]}, "west 1.0 must be less than east"),
        ({"bbox": [1, 2, 3, 100]}, "latitudes in -90..90"),
        ({"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}}, "not both"),
        ({"intersects": {"type": "Point", "coordinates": [0, 0]}}, "Polygon or MultiPolygon"),
        ({"crs": "UTM31"}, "'crs' must be an EPSG code"),
        ({"resolution": 0}, "'resolution' must be a positive number"),
        ({"resolution": -10}, "'resolution' must be a positive number"),
    ],
)
def test_bad_area_fields_are_refused_naming_the_field(body, message):
    with pytest.raises(InvalidRequest, match=message):
        Area.from_request(body)


def test_intersects_gives_its_bounds():
    square = {"type": "Polygon", "coordinates": [[[0, 45], [0.1, 45], [0.1, 45.1], [0, 45.1], [0, 45]]]}
    assert Area.from_request({"intersects": square}).bbox == (0.0, 45.0, 0.1, 45.1)
    assert Area.from_request({"tile_size": 512}) is None


def test_the_grid_is_aligned_to_multiples_of_the_resolution():
    grid = area_grid((300003.0, 4899991.0, 300987.0, 4900500.0), parse_crs("EPSG:32631"), 20.0)
    assert grid.transform == (20.0, 0.0, 300000.0, 0.0, -20.0, 4900500.0)
    assert (grid.width, grid.height) == (50, 26)
    assert utm_crs(-0.01, 45).to_epsg() == 32630 and utm_crs(0.0, -10).to_epsg() == 32731


def test_solar_day_follows_the_longitude():
    moment = datetime(2023, 5, 3, 23, 30, tzinfo=UTC)
    assert solar_day(moment, 0.0) == date(2023, 5, 3)
    assert solar_day(moment, 10.0) == date(2023, 5, 4)  # 40 minutes later in local solar time


def test_fusion_takes_the_first_valid_sample_in_order():
    stack = np.zeros((3, 3, 1, 3), np.uint8)
    stack[0, :, 0] = [[0, 10, 255], [0, 10, 255], [0, 10, 255]]  # nodata, valid, cloud
    stack[1, :, 0] = [[20, 30, 40]] * 3
    stack[2, :, 0] = [[50, 60, 70]] * 3
    fused = fuse_observations(stack, ((0, 1), (2,)))
    assert fused.shape[0] == 2
    assert fused[0, 0, 0].tolist() == [20, 10, 40] and fused[1, 0, 0].tolist() == [50, 60, 70]


def test_observations_must_be_consecutive_runs():
    assert check_observations([[0, 1], [2]], 3) == ((0, 1), (2,))
    for bad in ([[0, 2], [1]], [[0], [1]], [[0, 1, 2], []]):
        with pytest.raises(InvalidRequest, match="consecutive runs"):
            check_observations(bad, 3)


def test_a_window_touching_no_scene_is_nodata(tmp_path):
    grid = RasterGrid(256, 256, "EPSG:32631", (10.0, 0.0, 300000.0, 0.0, -10.0, 4900000.0), (512, 512))
    stats = compute_area_tile([], [], grid, Window(0, 0, 256, 256), str(tmp_path / "empty.tif"))
    with rasterio.open(tmp_path / "empty.tif") as ds:
        assert not ds.read().any() and stats.valid_fraction == 0.0


def test_a_scene_of_another_type_is_named(area_items, tmp_path):
    path, _ = area_items
    bad = tmp_path / "T31TBK_20230709T105000_TCI.tif"
    with rasterio.open(bad, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint16", crs="EPSG:32631",
                       transform=Affine(10, 0, 262000, 0, -10, 4989000)) as dst:
        dst.write(np.ones((3, 64, 64), np.uint16))
    scenes = scenes_of(path)
    with pytest.raises(InputMismatch, match=f"{bad.name}: has data type uint16"):
        plan_layout((*scenes, Scene.from_url(str(bad))), Area(bbox=tuple(BBOX)), 256, max_windows=100)
