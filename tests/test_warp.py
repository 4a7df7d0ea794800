"""The direct paths of warp_scene (aligned windows, pixel maps) against the GDAL warper, pixel for pixel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from area_support import BBOX, TILE_HEIGHT, TILE_WIDTH, TILES, scene_pixels, write_area_series
from rasterio.transform import Affine

from temporal_median.base.grid import Grid, RasterGrid, Window
from temporal_median.job.area import Area
from temporal_median.job.layout import plan_layout
from temporal_median.raster import warp
from temporal_median.scenes.stac import StacInput


@pytest.fixture(scope="module")
def area_items(tmp_path_factory):
    path = write_area_series(tmp_path_factory.mktemp("warp"))
    return path, json.loads(path.read_text())["features"]


def warped_both_ways(monkeypatch, url, grid, window):
    """(direct, warper) pixels and byte counts of one scene on one window."""
    direct = np.full((3, window.height, window.width), 77, np.uint8)  # not 0: every pixel must be written
    direct_bytes = warp.warp_scene(url, direct, grid, window)
    with monkeypatch.context() as patch:
        patch.setattr(warp, "read_direct", lambda *args: None)
        warper = np.full_like(direct, 77)
        warper_bytes = warp.warp_scene(url, warper, grid, window)
    return direct, warper, direct_bytes, warper_bytes


def test_every_scene_and_window_equals_the_warper(area_items, monkeypatch):
    path, _ = area_items
    scenes = StacInput.from_request({"inputs": str(path)}, allow_local=True).scenes()
    layout = plan_layout(scenes, None, 256, max_windows=400)
    raster = layout.raster
    paths = {"aligned": 0, "mapped": 0}
    for tile, window in layout.grid.windows():
        for i in layout.windows[tile]:
            url = layout.scenes[i].url
            with rasterio.open(url) as ds:
                aligned = warp.aligned_offset(ds.transform.to_gdal(), raster) is not None and ds.crs == raster.crs
            paths["aligned" if aligned else "mapped"] += 1
            direct, warper, direct_bytes, warper_bytes = warped_both_ways(monkeypatch, url, raster, window)
            assert np.array_equal(direct, warper), (url, tile, np.count_nonzero(direct != warper))
            assert direct_bytes == warper_bytes > 0
    # Zone 31's tile is on the output grid (EPSG:32631, edges on multiples of 10 m), zone 30's is not.
    assert paths["aligned"] > 0 and paths["mapped"] > 0


@pytest.mark.parametrize(
    "shift, resolution",
    [((5.0, 0.0), 10.0), ((0.0, -3.0), 10.0), ((0.0, 0.0), 20.0), ((0.0, 0.0), 7.0)],
    ids=["half-pixel-x", "part-pixel-y", "coarser-scene", "finer-scene"],
)
def test_scenes_off_the_grid_are_mapped_as_the_warper_would(tmp_path, monkeypatch, shift, resolution):
    crs, transform = TILES["31TBK"]
    moved = Affine(resolution, 0.0, transform.c + shift[0], 0.0, -resolution, transform.f + shift[1])
    url = str(tmp_path / "scene.tif")
    with rasterio.open(url, "w", driver="GTiff", width=TILE_WIDTH, height=TILE_HEIGHT, count=3, dtype="uint8",
                       crs=crs, transform=moved, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(scene_pixels(np.random.default_rng(5)))
    grid = RasterGrid(700, 520, crs, (10.0, 0.0, transform.c - 300.0, 0.0, -10.0, transform.f + 200.0), (512, 512))
    assert warp.aligned_offset(moved.to_gdal(), grid) is None
    for _, window in Grid(grid.width, grid.height, 256).windows():
        direct, warper, direct_bytes, warper_bytes = warped_both_ways(monkeypatch, url, grid, window)
        assert np.array_equal(direct, warper), (window, np.count_nonzero(direct != warper))
        assert direct_bytes == warper_bytes


def test_an_aligned_scene_is_read_without_the_warper(area_items, monkeypatch):
    path, items = area_items
    url = next(i["assets"]["visual"]["href"] for i in items if "T31TBK" in i["assets"]["visual"]["href"])
    crs, transform = TILES["31TBK"]
    # A grid reaching past the scene on every side: the window is partly outside it.
    grid = RasterGrid(TILE_WIDTH + 40, TILE_HEIGHT + 40, crs,
                      (10.0, 0.0, transform.c - 200.0, 0.0, -10.0, transform.f + 200.0), (512, 512))
    window = Window(0, 0, grid.width, grid.height)
    monkeypatch.setattr(warp, "_build_map", lambda *args: pytest.fail("an aligned scene needs no pixel map"))
    direct, warper, direct_bytes, warper_bytes = warped_both_ways(monkeypatch, url, grid, window)
    assert np.array_equal(direct, warper) and direct_bytes == warper_bytes
    assert not direct[:, :20].any() and not direct[:, :, :20].any() and direct[:, 20:-20, 20:-20].any()


def test_a_map_too_large_falls_back_to_the_warper(area_items, monkeypatch):
    path, items = area_items
    url = next(i["assets"]["visual"]["href"] for i in items if "T30TYQ" in i["assets"]["visual"]["href"])
    scenes = StacInput.from_request({"inputs": str(path)}, allow_local=True).scenes()
    layout = plan_layout(scenes, Area(bbox=tuple(BBOX)), 256, max_windows=100)
    window = next(w for _, w in layout.grid.windows())
    expected = np.zeros((3, window.height, window.width), np.uint8)
    with monkeypatch.context() as patch:
        patch.setattr(warp, "read_direct", lambda *args: None)
        warp.warp_scene(url, expected, layout.raster, window)
    monkeypatch.setattr(warp, "_MAP_PIXELS", 100)
    monkeypatch.setattr(warp, "_maps", {})
    out = np.full_like(expected, 77)
    assert warp.read_direct(url, out, layout.raster, window) is None
    warp.warp_scene(url, out, layout.raster, window)
    assert np.array_equal(out, expected)


def test_windows_skip_scenes_whose_outline_misses_them(area_items, monkeypatch):
    """A zone-30 scene's box on the zone-31 grid holds corners it does not cover: no window reads it there."""
    path, _ = area_items
    scenes = StacInput.from_request({"inputs": str(path)}, allow_local=True).scenes()
    layout = plan_layout(scenes, None, 256, max_windows=1000)
    raster = layout.raster
    skipped = 0
    for tile, window in layout.grid.windows():
        box = warp.window_bounds(raster, window)
        chosen = set(layout.windows[tile])
        for i, scene in enumerate(layout.scenes):
            if i in chosen:
                continue
            with rasterio.open(scene.url) as ds:
                in_box = warp.bounds_in(warp.grid_bounds(RasterGrid.from_dataset(ds)), ds.crs, raster.crs)
            if not (in_box[0] < box[2] and box[0] < in_box[2] and in_box[1] < box[3] and box[1] < in_box[3]):
                continue  # the box misses the window too
            skipped += 1
            out = np.full((3, window.height, window.width), 77, np.uint8)
            with monkeypatch.context() as patch:
                patch.setattr(warp, "read_direct", lambda *args: None)
                warp.warp_scene(scene.url, out, raster, window)
            assert not out.any(), (scene.url, tile)
    assert skipped > 0


def test_a_map_unlike_the_warper_is_dropped(area_items, monkeypatch):
    """The scene a map is built for is also warped: a map that disagrees (here: numbering too
    small a part of the scene) is dropped, and that grid's scenes go through the warper."""
    path, items = area_items
    urls = [i["assets"]["visual"]["href"] for i in items if "T30TYQ" in i["assets"]["visual"]["href"]]
    scenes = StacInput.from_request({"inputs": str(path)}, allow_local=True).scenes()
    layout = plan_layout(scenes, Area(bbox=tuple(BBOX)), 256, max_windows=100)
    window = next(w for _, w in layout.grid.windows())
    monkeypatch.setattr(warp, "_MAP_MARGIN", -20)
    monkeypatch.setattr(warp, "_maps", {})
    for url in urls[:2]:
        direct, warper, direct_bytes, warper_bytes = warped_both_ways(monkeypatch, url, layout.raster, window)
        assert np.array_equal(direct, warper) and direct_bytes == warper_bytes
        assert warp.read_direct(url, direct, layout.raster, window) is None
