"""SCL masks read onto a window: the aligned read (a plain window, indexed) gives the warper's classes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from temporal_median.base.errors import InputMismatch
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.raster import mask as mask_module
from temporal_median.raster.mask import read_mask
from temporal_median.raster.warp import aligned_steps

#: The scenes' grid: 10 m, 300 x 200 pixels.
GRID = RasterGrid(300, 200, "EPSG:32631", (10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0), (256, 256))
WINDOWS = [Window(0, 0, 300, 200), Window(0, 0, 128, 64), Window(37, 51, 101, 77), Window(250, 150, 50, 50),
           Window(1, 1, 1, 1), Window(299, 0, 1, 200)]


def write_mask(path, width: int, height: int, transform: tuple, crs: str = "EPSG:32631", seed: int = 0,
               dtype: str = "uint8") -> str:
    classes = np.random.default_rng(seed).integers(0, 12, (height, width)).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype=dtype, crs=crs,
                       transform=Affine(*transform), tiled=True, blockxsize=64, blockysize=64,
                       compress="deflate") as ds:
        ds.write(classes, 1)
    return str(path)


# (name, width, height, transform, crs, aligned?)
CASES = [
    ("20 m, same origin", 150, 100, (20.0, 0.0, 300000.0, 0.0, -20.0, 4900020.0), "EPSG:32631", True),
    ("20 m, odd size", 151, 101, (20.0, 0.0, 300000.0, 0.0, -20.0, 4900020.0), "EPSG:32631", True),
    ("20 m, origin 1 pixel west and north", 151, 101, (20.0, 0.0, 299990.0, 0.0, -20.0, 4900030.0), "EPSG:32631", True),
    ("20 m, smaller, inside", 60, 40, (20.0, 0.0, 300530.0, 0.0, -20.0, 4899510.0), "EPSG:32631", True),
    ("10 m, shifted 7 pixels", 300, 200, (10.0, 0.0, 300070.0, 0.0, -10.0, 4899990.0), "EPSG:32631", True),
    ("30 m", 100, 67, (30.0, 0.0, 300000.0, 0.0, -30.0, 4900020.0), "EPSG:32631", True),
    ("20 m, half a pixel off", 150, 100, (20.0, 0.0, 300005.0, 0.0, -20.0, 4900020.0), "EPSG:32631", False),
    ("15 m", 200, 134, (15.0, 0.0, 300000.0, 0.0, -15.0, 4900020.0), "EPSG:32631", False),
    ("5 m", 600, 400, (5.0, 0.0, 300000.0, 0.0, -5.0, 4900020.0), "EPSG:32631", False),
    ("20 m, rotated", 150, 100, (20.0, 0.5, 300000.0, 0.5, -20.0, 4900020.0), "EPSG:32631", False),
    ("20 m, UTM 30", 200, 150, (20.0, 0.0, 780000.0, 0.0, -20.0, 4902000.0), "EPSG:32630", False),
]


@pytest.mark.parametrize("name, width, height, transform, crs, aligned", CASES, ids=[c[0] for c in CASES])
def test_aligned_read_gives_the_warpers_classes(tmp_path, monkeypatch, name, width, height, transform, crs, aligned):
    path = write_mask(tmp_path / "scl.tif", width, height, transform, crs, seed=len(name))
    c, a, b, f, d, e = Affine(*transform).to_gdal()
    if crs == GRID.crs:  # (another CRS is never aligned, whatever its numbers)
        assert (aligned_steps((c, a, b, f, d, e), GRID) is not None) == aligned
    warped = {w: read_mask(path, GRID, w, warp=True) for w in WINDOWS}
    assert any(v.any() for v in warped.values())
    if aligned:  # then the warper is never asked
        monkeypatch.setattr(mask_module, "WarpedVRT", None)
    for w in WINDOWS:
        np.testing.assert_array_equal(read_mask(path, GRID, w), warped[w], err_msg=f"{name}, {w}")
    # Without the direct reader: rasterio's windowed read, the same classes.
    monkeypatch.setattr(mask_module, "open_raster", lambda path: None)
    for w in WINDOWS:
        np.testing.assert_array_equal(read_mask(path, GRID, w), warped[w], err_msg=f"{name}, {w} (rasterio)")


def test_aligned_classes_are_the_20m_pixel_holding_each_centre(tmp_path):
    path = write_mask(tmp_path / "scl.tif", 150, 100, (20.0, 0.0, 300000.0, 0.0, -20.0, 4900020.0), seed=3)
    with rasterio.open(path) as ds:
        classes = ds.read(1)
    np.testing.assert_array_equal(read_mask(path, GRID, Window(0, 0, 300, 200)),
                                  np.repeat(np.repeat(classes, 2, axis=0), 2, axis=1))
    assert aligned_steps((299990.0, 20.0, 0.0, 4900030.0, 0.0, -20.0), GRID) == (2, 1, 1)
    assert aligned_steps((300000.0, 20.0, 0.0, 4900020.0, 0.0, -20.0), GRID) == (2, 0, 0)


def test_a_mask_beyond_the_window_is_no_data(tmp_path):
    path = write_mask(tmp_path / "scl.tif", 10, 10, (20.0, 0.0, 310000.0, 0.0, -20.0, 4900020.0))
    assert not read_mask(path, GRID, Window(0, 0, 300, 200)).any()


def test_a_mask_of_other_values_is_refused_on_either_path(tmp_path, monkeypatch):
    path = write_mask(tmp_path / "scl.tif", 150, 100, (20.0, 0.0, 300000.0, 0.0, -20.0, 4900020.0), dtype="uint16")
    with pytest.raises(InputMismatch):
        read_mask(path, GRID, Window(0, 0, 10, 10))
    monkeypatch.setattr(mask_module, "open_raster", lambda path: None)
    with pytest.raises(InputMismatch):
        read_mask(path, GRID, Window(0, 0, 10, 10))


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "warped"])
def test_read_masked_drops_the_excluded_classes_only(tmp_path, aligned):
    from temporal_median.raster.mask import drop_excluded, read_masked, warp_masked

    origin = 300000.0 if aligned else 300005.0
    path = write_mask(tmp_path / "scl.tif", 151, 101, (20.0, 0.0, origin, 0.0, -20.0, 4900020.0), seed=5)
    scene = tmp_path / "scene.tif"
    pixels = np.random.default_rng(1).integers(1, 255, (3, 200, 300)).astype(np.uint8)
    with rasterio.open(scene, "w", driver="GTiff", width=300, height=200, count=3, dtype="uint8", crs=GRID.crs,
                       transform=Affine(*GRID.transform), tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(pixels)
    exclude = (0, 1, 3, 8, 9, 10)
    for window in WINDOWS:
        classes = read_mask(path, GRID, window, warp=True)
        expected = pixels[:, window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width].copy()
        expected[:, np.isin(classes, exclude)] = 0
        out = np.empty_like(expected)
        read_masked(str(scene), path, exclude, GRID, (window.col_off, window.row_off, window.width, window.height), out)
        np.testing.assert_array_equal(out, expected)
        warp_masked(str(scene), path, exclude, out, GRID, window)
        np.testing.assert_array_equal(out, expected)
        dropped = pixels[:, window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width].copy()
        drop_excluded(dropped, classes, exclude)
        np.testing.assert_array_equal(dropped, expected)
