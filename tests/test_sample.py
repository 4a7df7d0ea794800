"""The synthetic series generator (temporal_median_cli.sample): files, content, SCL, multi-tile areas, determinism, CLI."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import re

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from temporal_median.base.grid import Grid
from temporal_median.compute.median import compute_median
from temporal_median_cli import sample
from temporal_median_cli.sample import (
    PROFILES,
    AreaInfo,
    SeriesInfo,
    acquisition_times,
    generate_area,
    generate_series,
)

NAME = re.compile(r"^T31TCJ_(2023\d{4}T\d{6})_TCI\.tif$")


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def read_stack(series: SeriesInfo) -> np.ndarray:
    out = []
    for path in series.paths:
        with rasterio.open(path) as ds:
            out.append(ds.read())
    return np.stack(out)


@pytest.fixture(scope="module")
def year_series(tmp_path_factory):
    """36 dates of 400 x 300, seed 0: enough dates for a median, small enough to be quick."""
    return generate_series(str(tmp_path_factory.mktemp("year")), scenes=36, width=400, height=300, seed=0)


@pytest.fixture(scope="module")
def year_stack(year_series):
    return read_stack(year_series)


def test_names_are_sorted_in_acquisition_order(year_series):
    names = [s.name for s in year_series.scenes]
    assert all(NAME.match(n) for n in names)
    assert names == sorted(names) and len(set(names)) == 36
    stamps = [dt.datetime.strptime(NAME.match(n).group(1), "%Y%m%dT%H%M%S") for n in names]
    assert [s.acquired for s in year_series.scenes] == [t.isoformat() + "Z" for t in stamps]
    # Spread over the year: one date in each tenth of it at least, and all distinct days.
    assert {(t.timetuple().tm_yday - 1) * 10 // 365 for t in stamps} == set(range(10))
    assert len({t.date() for t in stamps}) == 36
    # Only the scenes are .tif files directly in the folder: a listing for inputs finds them alone.
    assert sorted(os.listdir(year_series.out_dir)) == sorted(names + ["items.json", "scl", "series.json", "truth"])
    assert os.listdir(os.path.join(year_series.out_dir, "truth")) == ["ground_truth.tif"]
    assert sorted(os.listdir(os.path.join(year_series.out_dir, "scl"))) == [n.replace("_TCI", "_SCL") for n in names]


def test_geometry_is_exact(year_series):
    for path in year_series.paths + [year_series.ground_truth_path]:
        with rasterio.open(path) as ds:
            assert (ds.width, ds.height, ds.count) == (400, 300, 3)
            assert ds.dtypes == ("uint8",) * 3
            assert ds.crs.to_string() == "EPSG:32631"
            assert tuple(ds.transform)[:6] == (10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0)
            assert ds.compression.name == "deflate"
            assert ds.block_shapes[0] == (300, 400) or ds.block_shapes[0] == (512, 512)
        assert cog_validate(path)[0]


def test_custom_geometry(tmp_path):
    series = generate_series(str(tmp_path), scenes=2, width=130, height=70, crs="EPSG:2154", pixel_size=20,
                             origin=(500000, 6600000), granule="T30UXV", year=2021, seed=3, ground_truth=False)
    for path in series.paths:
        assert os.path.basename(path).startswith("T30UXV_2021")
        with rasterio.open(path) as ds:
            assert (ds.width, ds.height) == (130, 70)
            assert ds.crs.to_epsg() == 2154
            assert tuple(ds.transform)[:6] == (20.0, 0.0, 500000.0, 0.0, -20.0, 6600000.0)


def test_series_json_describes_the_series(year_series):
    with open(os.path.join(year_series.out_dir, "series.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert data["seed"] == 0 and data["width"] == 400 and data["height"] == 300
    assert data["crs"] == "EPSG:32631" and data["transform"] == [10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0]
    assert [s["name"] for s in data["scenes"]] == [s.name for s in year_series.scenes]
    assert SeriesInfo.load(year_series.out_dir) == year_series


def load_items(series: SeriesInfo) -> list[dict]:
    with open(series.items_path, encoding="utf-8") as f:
        collection = json.load(f)
    assert collection["type"] == "FeatureCollection"
    return collection["features"]


@pytest.fixture(scope="module")
def stac_validator():
    """The STAC 1.1.0 item schema, offline (the copy pystac ships)."""
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource

    cache = get_local_schema_cache()
    registry = Registry().with_resources([(uri, Resource.from_contents(schema)) for uri, schema in cache.items()])
    return Draft7Validator(cache["https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"],
                           registry=registry)


def check_item(data: dict, series: SeriesInfo, index: int, validator) -> None:
    """``data`` is a valid STAC item of scene ``index`` of ``series``: core schema, and the extension
    fields read back through pystac's typed extensions (their schemas would have to be downloaded)."""
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.eo import EOExtension
    from pystac.extensions.grid import GridExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterExtension

    errors = [e.message for e in validator.iter_errors(data)]
    assert not errors, errors
    item = pystac.Item.from_dict(data)
    scene, path, scl_path = series.scenes[index], series.paths[index], series.scl_paths[index]
    assert item.id == scene.name.removesuffix("_TCI.tif")
    assert item.datetime == dt.datetime.fromisoformat(scene.acquired)
    assert item.common_metadata.platform in ("sentinel-2a", "sentinel-2b")
    assert item.common_metadata.constellation == "sentinel-2"
    epsg = int(series.crs.removeprefix("EPSG:"))
    projection = ProjectionExtension.ext(item)
    assert (projection.code, projection.epsg) == (series.crs, epsg)
    assert GridExtension.ext(item).code == "MGRS-" + series.granule.removeprefix("T")
    assert 0 <= EOExtension.ext(item).cloud_cover <= 100
    cog = "image/tiff; application=geotiff; profile=cloud-optimized"
    visual = item.assets["visual"]
    assert visual.href == os.path.abspath(path) and os.path.isabs(visual.href) and os.path.exists(visual.href)
    assert visual.media_type == cog and visual.roles == ["visual"]
    assert ProjectionExtension.ext(visual).shape == [series.height, series.width]
    assert ProjectionExtension.ext(visual).transform == list(series.transform)
    scl = item.assets["scl"]
    assert scl.href == os.path.abspath(scl_path) and os.path.exists(scl.href)
    assert scl.media_type == cog and scl.roles == ["data"]
    assert ProjectionExtension.ext(scl).shape == [math.ceil(series.height / 2), math.ceil(series.width / 2)]
    px, _, x0, _, py, y0 = series.transform
    assert ProjectionExtension.ext(scl).transform == [2 * px, 0.0, x0, 0.0, 2 * py, y0]
    (band,) = RasterExtension.ext(scl).bands
    assert band.data_type == DataType.UINT8 and band.spatial_resolution == 2 * px and band.nodata is None
    classes = {c.value: c.name for c in ClassificationExtension.ext(scl).classes}
    assert {0: "no_data", 3: "cloud_shadows", 8: "cloud_medium_probability", 10: "thin_cirrus"}.items() <= classes.items()


def test_items_json_is_valid_stac(year_series, stac_validator):
    items = load_items(year_series)
    assert len(items) == 36
    for index, data in enumerate(items):
        check_item(data, year_series, index, stac_validator)
    assert {item["properties"]["platform"] for item in items} == {"sentinel-2a", "sentinel-2b"}


def test_items_json_bbox_and_geometry_are_the_scene_in_wgs84(year_series):
    from rasterio.warp import transform, transform_bounds

    expected = transform_bounds("EPSG:32631", "EPSG:4326", 300000, 4900020 - 3000, 300000 + 4000, 4900020)
    corners = [(300000, 4897020), (304000, 4897020), (304000, 4900020), (300000, 4900020)]
    lons, lats = transform("EPSG:32631", "EPSG:4326", *zip(*corners))
    for item in load_items(year_series):
        assert item["bbox"] == pytest.approx(list(expected), abs=1e-6)
        assert_footprint(item, list(zip(lons, lats)))


def assert_footprint(item: dict, corners: list) -> None:
    """The item's geometry is the outline through ``corners`` (SW, SE, NE, NW in degrees), counter-clockwise,
    inside its bbox."""
    assert item["geometry"]["type"] == "Polygon" and len(item["geometry"]["coordinates"]) == 1
    ring = item["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) >= 5
    for corner in corners:
        assert any(p == pytest.approx(list(corner), abs=1e-6) for p in ring)
    west, south, east, north = item["bbox"]
    assert all(west - 1e-7 <= x <= east + 1e-7 and south - 1e-7 <= y <= north + 1e-7 for x, y in ring)
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring)) / 2
    assert area > 0  # counter-clockwise, as GeoJSON's right-hand rule wants


def test_items_json_cloud_cover_is_the_share_of_the_valid_footprint(year_series, year_stack):
    """eo:cloud_cover: pixels at 255 over the pixels not 0 in all bands, in percent; it is what
    temporal_median.scenes.scene.cloud_share measures on the full-resolution scene."""
    from temporal_median.scenes.clouds import cloud_share

    for item, data in zip(load_items(year_series), year_stack):
        cloud = (data == 255).all(axis=0).sum()
        valid = data.any(axis=0).sum()
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(100 * cloud / valid, abs=1e-3)
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(cloud_share(data), abs=1e-3)


def test_items_json_of_a_series_made_before_it_existed_is_written_on_reuse(tmp_path):
    series = generate_series(str(tmp_path), scenes=2, width=40, height=30, seed=2, ground_truth=False)
    first = load_items(series)
    os.unlink(series.items_path)
    again = generate_series(str(tmp_path), scenes=2, width=40, height=30, seed=2, ground_truth=False)
    assert load_items(again) == first


def test_recorded_fractions_match_the_pixels(year_series, year_stack):
    total = 400 * 300
    for scene, data in zip(year_series.scenes, year_stack):
        cloud = (data == 255).all(axis=0)
        nodata = (data == 0).all(axis=0)
        assert scene.cloud_fraction == pytest.approx(cloud.sum() / total, abs=1e-5)
        assert scene.nodata_fraction == pytest.approx(nodata.sum() / total, abs=1e-5)
        # 0 and 255 only ever appear in all bands at once: everything else is valid ground.
        other = ~cloud & ~nodata
        assert ((data[:, other] >= 1) & (data[:, other] <= 254)).all()


def test_weather_comes_in_expected_proportions(year_series, year_stack):
    clouds = np.array([s.cloud_fraction for s in year_series.scenes])
    assert 0.2 <= clouds.mean() <= 0.55
    assert (clouds < 0.03).sum() >= 5  # clear dates
    assert (clouds > 0.5).sum() >= 5  # mostly cloudy dates
    swath = [s for s in year_series.scenes if s.nodata_fraction > 0]
    assert 3 <= len(swath) <= 18 and all(0.1 < s.nodata_fraction < 0.8 for s in swath)
    assert any(s.haze for s in year_series.scenes) and not all(s.haze for s in year_series.scenes)
    assert sum(s.shadow_fraction > 0.01 for s in year_series.scenes) >= 5
    # Every pixel keeps enough clear dates for a median.
    valid = ((year_stack > 0) & (year_stack < 255)).all(axis=1).sum(axis=0)
    assert valid.min() >= 5


def test_shadows_are_darker_than_the_same_ground_in_the_clear(year_series, year_stack):
    truth = read(year_series.ground_truth_path).astype(int).sum(axis=0)
    darker = []
    for scene, data in zip(year_series.scenes, year_stack):
        if scene.shadow_fraction > 0.02 and not scene.haze:
            lum = data.astype(int).sum(axis=0)
            valid = ((data > 0) & (data < 255)).all(axis=0)
            # Darkest tenth of the valid pixels, relative to the clean ground.
            ratio = lum[valid] / truth[valid]
            darker.append(np.mean(ratio < 0.7))
    assert len(darker) >= 5 and np.median(darker) > 0.05


def test_ground_is_structured_not_noise(year_series):
    truth = read(year_series.ground_truth_path).astype(float)
    lum = truth.sum(axis=0)
    # Neighbouring pixels are alike (parcels), unlike white noise where they differ as much as any pair.
    neighbour = np.abs(np.diff(lum, axis=1)).mean()
    shuffled = np.random.default_rng(0).permutation(lum.ravel()).reshape(lum.shape)
    assert neighbour < 0.3 * np.abs(np.diff(shuffled, axis=1)).mean()
    # And it changes with the seasons.
    first, mid = (read(year_series.paths[i]).astype(int) for i in (0, 18))
    clear = ((first > 0) & (first < 255) & (mid > 0) & (mid < 255)).all(axis=0)
    assert np.abs(first - mid).sum(axis=0)[clear].mean() > 20


def test_median_of_the_series_is_close_to_the_ground_truth(year_series, year_stack):
    truth = read(year_series.ground_truth_path).astype(int)
    result = compute_median(year_stack, "luminance")
    error = np.abs(result.rgb.astype(int) - truth).max(axis=0)
    assert np.mean(error <= 10) >= 0.75
    assert np.mean(error <= 20) >= 0.88
    # The check has teeth: a median that keeps clouds and gaps is much further off.
    naive = np.abs(np.median(year_stack, axis=0) - truth).max(axis=0)
    assert np.mean(naive <= 10) < 0.65


def test_same_seed_same_series_other_seed_other_series(tmp_path):
    kwargs = {"scenes": 5, "width": 150, "height": 90}
    a = generate_series(str(tmp_path / "a"), seed=7, **kwargs)
    b = generate_series(str(tmp_path / "b"), seed=7, **kwargs)
    c = generate_series(str(tmp_path / "c"), seed=8, **kwargs)
    assert [s for s in a.scenes] == [s for s in b.scenes]
    np.testing.assert_array_equal(read_stack(a), read_stack(b))
    assert [s.name for s in a.scenes] != [s.name for s in c.scenes]
    assert not np.array_equal(read_stack(a), read_stack(c))


def test_acquisition_times_are_distinct_sorted_days():
    times = acquisition_times(365, 2023, 0)
    assert len({t.date() for t in times}) == 365 and times == sorted(times)
    with pytest.raises(ValueError):
        acquisition_times(366, 2023, 0)


def test_demo_profile_exercises_edge_windows():
    demo = PROFILES["demo"]
    assert demo["width"] % 1024 and demo["height"] % 1024
    grid = Grid(demo["width"], demo["height"])
    assert len(grid) >= 4
    full = PROFILES["full"]
    assert (full["scenes"], full["width"], full["height"]) == (216, 10980, 10980)


# --------------------------------------------------------------------------------------------
# Scene classification (SCL)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def year_scl(year_series):
    out = []
    for path in year_series.scl_paths:
        with rasterio.open(path) as ds:
            out.append(ds.read(1))
    return np.stack(out)


def cloud_rim(data: np.ndarray) -> np.ndarray:
    """(h, w) bool: cloud pixels (255 in all bands) with a 4-neighbour in the image that is not cloud."""
    cloud = (data == 255).all(axis=0)
    padded = np.pad(cloud, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return cloud & ~inner


def test_every_scene_has_its_scl_on_the_grid_at_half_resolution(year_series):
    for path, scl_path in zip(year_series.paths, year_series.scl_paths):
        assert scl_path == os.path.join(year_series.out_dir, "scl", os.path.basename(path).replace("_TCI", "_SCL"))
        with rasterio.open(path) as scene, rasterio.open(scl_path) as scl:
            assert (scl.count, scl.dtypes, scl.nodata) == (1, ("uint8",), None)
            assert (scl.width, scl.height) == (200, 150)
            assert scl.crs == scene.crs and scl.transform == scene.transform @ rasterio.Affine.scale(2)
            assert scl.bounds == scene.bounds
            assert scl.compression.name == "deflate"
        assert cog_validate(scl_path)[0]


def test_scl_of_an_odd_size_covers_the_last_row_and_column(tmp_path):
    series = generate_series(str(tmp_path), scenes=2, width=41, height=27, seed=1, ground_truth=False)
    for path, scl_path in zip(series.paths, series.scl_paths):
        with rasterio.open(path) as scene, rasterio.open(scl_path) as scl:
            assert (scl.width, scl.height) == (21, 14)
            assert scl.transform == scene.transform @ rasterio.Affine.scale(2)
            np.testing.assert_array_equal(scl.read(1) == 0, (scene.read()[:, ::2, ::2] == 0).all(axis=0))


def test_scl_clouds_and_gaps_match_the_scene_but_for_misses_at_cloud_edges(year_series, year_stack, year_scl):
    clouds = flagged = missed = high = 0
    for data, scl in zip(year_stack, year_scl):
        half = data[:, ::2, ::2]  # the 10 m pixel at each 20 m pixel's upper-left
        cloud = (half == 255).all(axis=0)
        is_cloud = np.isin(scl, (8, 9))
        np.testing.assert_array_equal(scl == 0, (half == 0).all(axis=0))  # gaps, exactly
        assert not (is_cloud & ~cloud).any()  # no cloud where none was drawn
        miss = cloud & ~is_cloud
        assert not (miss & ~cloud_rim(data)[::2, ::2]).any()  # misses only on a cloud's one-pixel rim
        assert not np.isin(scl[miss], (0, 3, 8, 9)).any()  # a missed rim shows the ground (or haze)
        clouds += int(cloud.sum())
        flagged += int((cloud & is_cloud).sum())
        missed += int(miss.sum())
        high += int((scl == 9).sum())
    assert clouds > 100_000 and 0.95 < flagged / clouds < 0.999 and missed > 100
    # Both cloud probabilities: the densest part high (9), the rest medium (8).
    assert 0.4 < high / flagged < 0.8


def test_scl_shadows_and_haze_are_what_was_drawn(year_series, year_scl):
    from temporal_median_cli.sample.scl import HAZE_FLAGGED
    from temporal_median_cli.sample.sky import Sky, weather

    thin_missed = flagged = 0
    for index, (info, scl) in enumerate(zip(year_series.scenes, year_scl)):
        sky = Sky(weather(0, index, 400, 300, 10.0), 400, 300)
        gap = sky.gap(0, 300) if sky.w.swath else np.zeros((300, 400), bool)
        shadow = sky.shadow if sky.shadow is not None else np.zeros((300, 400), bool)
        np.testing.assert_array_equal(scl == 3, (shadow & ~gap)[::2, ::2])
        if not info.haze:
            assert not (scl == 10).any()
            continue
        veil = sky.haze_strength(0, 300)[::2, ::2]
        under = ~np.isin(scl, (0, 3, 8, 9))  # where haze is not hidden by a gap, a shadow or a cloud
        np.testing.assert_array_equal(scl == 10, under & (veil >= HAZE_FLAGGED))
        flagged += int((scl == 10).sum())
        thin_missed += int((under & (veil < HAZE_FLAGGED)).sum())  # thin haze, classified as the ground
    assert flagged > 1000 and thin_missed > 1000


def test_scl_ground_is_vegetation_bare_soil_and_water(year_series, year_stack, year_scl):
    truth = read(year_series.ground_truth_path)[:, ::2, ::2].astype(int)
    greener = {4: [], 5: [], 6: []}
    for data, scl in zip(year_stack, year_scl):
        half = data[:, ::2, ::2].astype(int)
        for value, found in greener.items():
            found.append((half[1] - half[0])[scl == value])
    veg, bare, water = (np.concatenate(greener[v]) for v in (4, 5, 6))
    assert veg.size > 50_000 and bare.size > 50_000 and water.size > 1_000
    assert veg.mean() > bare.mean() + 10
    # Water: the river, bluer than red in the ground truth.
    river = np.isin(year_scl, 6).mean(axis=0) > 0.5
    assert river.any() and (truth[2][river] > truth[0][river]).mean() > 0.9


# --------------------------------------------------------------------------------------------
# Multi-tile areas (--tiles)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    """Three tiles of 300 x 300 (A in UTM 30, B and C in UTM 31), 8 dates, seed 1."""
    return generate_area(str(tmp_path_factory.mktemp("area")), tiles=3, scenes=8, width=300, height=300, seed=1)


def warped(src_path: str, like_path: str, band_count: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``src_path`` resampled (nearest) onto ``like_path``'s grid, ``like_path``'s pixels, and where ``src`` covers."""
    from rasterio.warp import Resampling, reproject

    with rasterio.open(src_path) as src, rasterio.open(like_path) as like:
        data, ref = src.read(), like.read()
        out = np.zeros_like(ref)
        cover = np.zeros(ref.shape[1:], np.uint8)
        grids = {"src_transform": src.transform, "src_crs": src.crs, "dst_transform": like.transform,
                 "dst_crs": like.crs, "resampling": Resampling.nearest}
        reproject(data, out, **grids)
        reproject(np.ones(data.shape[1:], np.uint8), cover, src_nodata=0, dst_nodata=0, **grids)
    return out, ref, cover == 1


def test_area_tiles_are_in_two_utm_zones_with_shared_dates(area):
    a = area.tiles[0]
    assert [t.crs for t in area.tiles] == ["EPSG:32630", "EPSG:32631", "EPSG:32631"]
    granules = [t.granule for t in area.tiles]
    assert len(set(granules)) == 3 and all(re.fullmatch(r"T3[01]T[A-Z]{2}", g) for g in granules)
    assert granules[0].startswith("T30") and granules[1][:4] == granules[2][:4] == "T31T"
    for tile in area.tiles:
        assert (tile.width, tile.height, tile.pixel_size) == (300, 300, 10.0)
        assert all(v % 10 == 0 for v in tile.origin)
        assert tile.out_dir == os.path.join(area.out_dir, tile.granule) and SeriesInfo.load(tile.out_dir) == tile
        assert all(os.path.exists(p) for p in tile.paths + tile.scl_paths + [tile.ground_truth_path])
        assert [s.acquired for s in tile.scenes] == [s.acquired for s in a.scenes]
        assert [s.name.removeprefix(tile.granule) for s in tile.scenes] == [
            s.name.removeprefix(a.granule) for s in a.scenes]
    assert sorted(os.listdir(area.out_dir)) == sorted(granules + ["area.json", "items.json"])
    assert AreaInfo.load(area.out_dir) == area


def test_area_items_are_valid_stac_one_pass_one_datetime_and_platform(area, stac_validator):
    from rasterio.warp import transform

    with open(area.items_path, encoding="utf-8") as f:
        items = json.load(f)["features"]
    assert len(items) == 3 * 8
    by_tile = {t.granule: t for t in area.tiles}
    passes = {}
    for data in items:
        tile = by_tile[data["id"].split("_")[0]]
        index = [s.name.removesuffix("_TCI.tif") for s in tile.scenes].index(data["id"])
        check_item(data, tile, index, stac_validator)
        props = data["properties"]
        assert props["proj:code"] == tile.crs and props["grid:code"] == "MGRS-" + tile.granule[1:]
        passes.setdefault(index, set()).add((props["datetime"], props["platform"]))
        x0, y0 = tile.origin
        x1, y1 = x0 + 3000, y0 - 3000
        lons, lats = transform(tile.crs, "EPSG:4326", [x0, x1, x1, x0], [y1, y1, y0, y0])
        assert_footprint(data, list(zip(lons, lats)))
    assert all(len(p) == 1 for p in passes.values()) and len(passes) == 8  # every tile of a pass alike
    assert len({data["properties"]["grid:code"] for data in items}) == 3
    # Each tile's own items.json holds its items.
    for tile in area.tiles:
        assert [i["id"] for i in load_items(tile)] == [i["id"] for i in items if i["id"].startswith(tile.granule)]


def test_area_footprints_overlap_by_a_tenth_and_straddle_the_zone_edge(area):
    a, b, c = area.tiles
    _, _, a_on_b = warped(a.paths[0], b.paths[0])
    _, _, c_on_b = warped(c.paths[0], b.paths[0])
    _, _, a_on_c = warped(a.paths[0], c.paths[0])
    assert 0.07 < a_on_b.mean() < 0.13  # A and B: a tenth of the width, give or take the zones' rotation
    assert c_on_b.mean() == pytest.approx(0.1) and c_on_b[-30:].all()  # C: B's last 30 rows, exactly
    assert a_on_c.mean() < 0.05
    bboxes = {t.granule: load_items(t)[0]["bbox"] for t in area.tiles}
    (aw, _, ae, _), (bw, bs, be, bn), (cw, cs, _, cn) = (bboxes[t.granule] for t in area.tiles)
    assert aw < bw < ae < be and aw < 0 < ae and abs(bw) < 0.01  # A west of B, B from 0 deg E (the zones' edge)
    assert cs < bs < cn < bn and abs(cw - bw) < 0.01  # C south of B


def test_area_same_date_overlaps_agree_after_nearest_resampling(area):
    a, b, c = area.tiles
    for i in range(len(a.scenes)):
        out, ref, cover = warped(a.paths[i], b.paths[i])
        assert (out == ref).all(axis=0)[cover].mean() > 0.9
        assert (np.abs(out.astype(int) - ref).max(axis=0) <= 30)[cover].mean() > 0.99
        assert ((out == 255).all(axis=0) == (ref == 255).all(axis=0))[cover].mean() > 0.97
        out, ref, cover = warped(a.scl_paths[i], b.scl_paths[i])
        assert (out == ref)[0][cover].mean() > 0.9
        out, ref, cover = warped(c.paths[i], b.paths[i])  # the same zone and lattice: exact cuts
        assert (out == ref).all(axis=0)[cover].all()
    cloudy = [s.cloud_fraction for t in area.tiles for s in t.scenes]
    assert max(cloudy) > 0.2 and min(cloudy) < 0.05


def test_area_ground_truths_agree_where_tiles_overlap(area):
    a, b, c = area.tiles
    out, ref, cover = warped(a.ground_truth_path, b.ground_truth_path)
    assert cover.mean() > 0.05 and (out == ref).all(axis=0)[cover].mean() > 0.9
    out, ref, cover = warped(c.ground_truth_path, b.ground_truth_path)
    assert (out == ref).all(axis=0)[cover].all()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def test_cli_writes_reuses_and_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "s")
    args = [out, "--scenes", "3", "--width", "90", "--height", "60", "--seed", "4"]
    assert sample.main(args) == 0
    first = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
    assert len(first) == 7  # 3 scenes, items.json, series.json, scl/, truth/
    # Same parameters: the series is reused, not rewritten.
    assert sample.main(args) == 0
    assert {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)} == first
    # Different parameters: refused without --force, replaced with it.
    assert sample.main(args[:-1] + ["5"]) == 1
    assert "--force" in capsys.readouterr().err
    assert sample.main(args[:-1] + ["5", "--force"]) == 0
    assert SeriesInfo.load(out).seed == 5 and len(os.listdir(out)) == 7
    assert len(os.listdir(os.path.join(out, "scl"))) == 3


@pytest.mark.parametrize(
    "bad",
    [["--scenes", "0"], ["--width", "3"], ["--crs", "EPSG:nope"], ["--pixel-size", "-1"], ["--tile-granule", "31TCJ"],
     ["--year", "1800"]],
)
def test_cli_rejects_bad_parameters(tmp_path, capsys, bad):
    assert sample.main([str(tmp_path / "s"), "--scenes", "2", "--width", "40", "--height", "40", *bad]) == 1
    assert "error" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s" / "series.json")


def test_cli_profile_sets_default_size(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(sample, "generate_series", lambda out_dir, **kw: seen.update(kw) or SeriesInfo(
        out_dir, "T31TCJ", 2023, 0, kw["width"], kw["height"], "EPSG:32631", 10.0, (0.0, 0.0)))
    assert sample.main([str(tmp_path), "--profile", "full"]) == 0
    assert (seen["scenes"], seen["width"], seen["height"]) == (216, 10980, 10980)
    assert seen["crs"] == "EPSG:32631" and seen["origin"] == (300000.0, 4900020.0) and seen["pixel_size"] == 10.0
    assert sample.main([str(tmp_path), "--profile", "full", "--width", "2000"]) == 0
    assert seen["width"] == 2000 and seen["height"] == 10980


def test_cli_tiles_writes_an_area_reuses_it_and_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "area")
    args = [out, "--tiles", "2", "--scenes", "2", "--width", "64", "--height", "48", "--seed", "3"]
    assert sample.main(args) == 0
    area = AreaInfo.load(out)
    assert [t.crs for t in area.tiles] == ["EPSG:32630", "EPSG:32631"] and len(area.tiles[0].scenes) == 2
    first = {p: os.stat(p).st_mtime_ns for t in area.tiles for p in t.paths + t.scl_paths}
    assert sample.main(args) == 0
    assert {p: os.stat(p).st_mtime_ns for p in first} == first
    assert sample.main(args[:-1] + ["4"]) == 1 and "--force" in capsys.readouterr().err
    assert sample.main([out, "--scenes", "2", "--width", "40", "--height", "40"]) == 1  # a single tile over it
    assert "multi-tile" in capsys.readouterr().err
    # Nor over a single-tile series.
    single = str(tmp_path / "single")
    assert sample.main([single, "--scenes", "2", "--width", "40", "--height", "40"]) == 0
    assert sample.main([single, "--tiles", "2", "--scenes", "2", "--width", "40", "--height", "40"]) == 1
    assert sample.main([single, "--tiles", "2", "--scenes", "2", "--width", "40", "--height", "40", "--force"]) == 0
    assert not any(n.endswith(".tif") for n in os.listdir(single)) and AreaInfo.load(single) is not None


def test_cli_tiles_refuses_a_single_tile_geometry(tmp_path, capsys):
    assert sample.main([str(tmp_path), "--tiles", "2", "--crs", "EPSG:2154", "--origin", "0", "0"]) == 1
    assert "--crs, --origin" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample.main([str(tmp_path), "--tiles", "4"])


def test_cli_area_profile_sets_tiles_and_size(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(sample, "generate_area", lambda out_dir, **kw: seen.update(kw) or AreaInfo(out_dir, {}, ()))
    assert sample.main([str(tmp_path), "--profile", "area"]) == 0
    assert (seen["tiles"], seen["scenes"], seen["width"], seen["height"]) == (3, 24, 1000, 1000)
    assert sample.main([str(tmp_path), "--tiles", "2", "--scenes", "5"]) == 0
    assert (seen["tiles"], seen["scenes"], seen["width"]) == (2, 5, 1000)


def test_oracle_knows_the_clean_samples_and_their_ground(year_series, year_stack):
    from temporal_median_cli.sample.oracle import oracle

    rows, cols = np.arange(0, 300, 3), np.arange(1, 400, 2)
    known = oracle(year_series, rows, cols)
    scenes = year_stack[:, :, rows][:, :, :, cols]
    clean = known.clean
    assert 0.3 < clean.mean() < 0.8
    # A clean sample shows the clean ground exactly (noise included), never a cloud or a gap.
    np.testing.assert_array_equal(np.where(clean[:, None], scenes, 0), np.where(clean[:, None], known.ground, 0))
    assert not ((scenes == 0) | (scenes == 255)).all(axis=1)[clean].any()
    assert all(not clean[t].any() for t, s in enumerate(year_series.scenes) if s.haze)
    # Noise moves the ground by 2 at most; the truth is the luminance median of the noise-free colours.
    assert np.abs(known.ground.astype(int) - known.noise_free).max() <= 2
    truth = read(year_series.ground_truth_path)[:, rows][:, :, cols]
    assert np.mean(np.abs(compute_median(known.noise_free, "luminance").rgb.astype(int) - truth).max(axis=0) <= 10) > 0.8
