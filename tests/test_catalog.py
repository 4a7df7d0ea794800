"""A job's results as STAC: items and collection valid offline, loadable by odc-stac pixel for pixel."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from temporal_median.assembly import catalog
from temporal_median.assembly.cog import quicklook
from temporal_median.assembly.footprint import footprint, union_bbox
from temporal_median.base.errors import InputMismatch, InvalidRequest

JOB = "job-2023"
CRS = "EPSG:32631"
#: An origin off the 10 m lattice, so a loader that snaps to it would be caught.
TRANSFORM = Affine(10.0, 0.0, 300003.0, 0.0, -10.0, 4900027.0)
WIDTH, HEIGHT = 400, 300
#: The whole range, then two periods: (name, first day, last day).
COMPOSITES = [(None, "2023-01-01", "2023-12-31"), ("2023-01", "2023-01-01", "2023-01-31"), ("2023-DJF", "2022-12-01", "2023-02-28")]
CREATED = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
BANDS = ["data.1", "data.2", "data.3", "data.4"]
#: The extension schemas as published at their $id (stac-extensions/{eo,raster,projection} at the
#: tags v1.1.0, v1.1.0, v2.0.0; Apache-2.0), byte for byte: pystac ships the core schemas only
#: and would download these, and tests run offline.
SCHEMAS = Path(__file__).parent / "fixtures" / "stac_extensions"


def write_cog(path, seed: int, *, count: int = 4, transform=TRANSFORM, crs=CRS, width=WIDTH, height=HEIGHT) -> np.ndarray:
    """A 4-band uint8 COG with overviews, like the mosaic: RGB 1..254, nodata 0 where the count is 0."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 255, (count, height, width), dtype=np.uint8)
    data[:, : height // 5, : width // 6] = 0  # no valid sample: 0 in every band
    with rasterio.open(
        path, "w", driver="COG", width=width, height=height, count=count, dtype="uint8", crs=crs,
        transform=transform, nodata=0, compress="DEFLATE", blocksize=128, overviews="AUTO",
    ) as dst:
        dst.write(data)
    return data


@pytest.fixture(scope="module")
def stac_schemas():
    """pystac's validator, with the extension schemas served from the fixtures (offline)."""
    from pystac.validation import JsonSchemaSTACValidator, RegisteredValidator, set_validator

    validator = JsonSchemaSTACValidator()
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        validator.schema_cache[schema["$id"].rstrip("#")] = schema
    previous = RegisteredValidator.get_validator()
    set_validator(validator)
    yield validator
    set_validator(previous)


@pytest.fixture(scope="module")
def job_folder(tmp_path_factory):
    """``<output>/<job_id>/`` as the mosaic would leave it: composites, quicklooks, items, collection."""
    folder = tmp_path_factory.mktemp("output") / JOB
    folder.mkdir()
    (folder / "job.json").write_text(json.dumps({"job_id": JOB, "status": "done"}))
    pixels, items = {}, []
    for seed, (name, start, end) in enumerate(COMPOSITES):
        where = folder if name is None else folder / name
        where.mkdir(exist_ok=True)
        pixels[name] = write_cog(where / "median.tif", seed)
        quicklook(str(where / "median.tif"), str(where / "quicklook.png"), max_size=128)
        item = catalog.composite_item(
            JOB, name, start, end, str(where / "median.tif"), **catalog.composite_hrefs(name),
            created=CREATED, count_of_scenes=36 + seed, constellation="sentinel-2",
        )
        (folder / catalog.item_path(name)).write_text(json.dumps(item, indent=1))
        items.append(item)
    collection = catalog.job_collection(JOB, items, description="Monthly and seasonal medians.", created=CREATED)
    (folder / catalog.COLLECTION_FILE).write_text(json.dumps(collection, indent=1))
    return folder, pixels, items, collection


def test_the_extension_schemas_are_those_pystac_names():
    from pystac.extensions import eo, projection, raster

    assert catalog.EO_EXTENSION == eo.SCHEMA_URI
    assert catalog.RASTER_EXTENSION == raster.SCHEMA_URI
    assert catalog.PROJECTION_EXTENSION == projection.SCHEMA_URI
    ids = {json.loads(path.read_text())["$id"].rstrip("#") for path in SCHEMAS.glob("*.json")}
    assert ids == set(catalog.EXTENSIONS)


def test_the_collection_and_every_item_validate_offline(job_folder, stac_schemas):
    import pystac

    folder, _, items, _ = job_folder
    collection = pystac.Collection.from_file(str(folder / "collection.json"))
    assert collection.validate() and collection.validate_all() == len(COMPOSITES)
    loaded = list(collection.get_items())
    assert [item.id for item in loaded] == [JOB, f"{JOB}-2023-01", f"{JOB}-2023-DJF"]
    for name, *_ in COMPOSITES:
        item = pystac.Item.from_file(str(folder / catalog.item_path(name)))
        validated = item.validate()
        assert set(catalog.EXTENSIONS) <= set(validated)


def test_the_extension_schemas_really_apply(job_folder, stac_schemas):
    import pystac
    from pystac.errors import STACValidationError

    broken = json.loads(json.dumps(job_folder[2][1]))
    del broken["collection"]
    broken["links"] = []  # relative links would resolve from the working directory
    broken["assets"]["data"]["raster:bands"][0]["data_type"] = "uint9"
    with pytest.raises(STACValidationError, match="raster"):
        pystac.Item.from_dict(broken).validate()
    broken["assets"]["data"]["raster:bands"][0]["data_type"] = "uint8"
    broken["assets"]["data"]["proj:shape"] = [HEIGHT]
    with pytest.raises(STACValidationError, match="projection"):
        pystac.Item.from_dict(broken).validate()


def test_odc_stac_loads_exactly_the_pixels_of_each_cog(job_folder):
    import odc.stac
    import pystac

    folder, pixels, _, _ = job_folder
    items = {name: pystac.Item.from_file(str(folder / catalog.item_path(name))) for name, *_ in COMPOSITES}
    # The two periods in one load (one time step each, in time order), the whole range alone.
    for names in (["2023-DJF", "2023-01"], [None]):
        loaded = odc.stac.load([items[name] for name in names], bands=BANDS)
        assert dict(loaded.sizes) == {"time": len(names), "y": HEIGHT, "x": WIDTH}
        assert loaded.odc.geobox.crs == CRS and loaded.odc.geobox.affine == TRANSFORM
        starts = [dt.datetime.fromisoformat(items[name].properties["start_datetime"]).replace(tzinfo=None) for name in names]
        assert [t.astype("datetime64[s]").item() for t in loaded.time.values] == starts
        for layer, name in enumerate(names):
            with rasterio.open(folder / catalog.item_path(name).replace("item.json", "median.tif")) as src:
                read = src.read()
            assert np.array_equal(read, pixels[name])
            for band, variable in enumerate(BANDS):
                assert loaded[variable].dtype == np.uint8
                assert np.array_equal(loaded[variable].values[layer], read[band]), (name, variable)
    named = odc.stac.load([items["2023-01"]], bands=["red", "green", "blue", "count"])
    for band, variable in enumerate(["red", "green", "blue", "count"]):
        assert np.array_equal(named[variable].values[0], pixels["2023-01"][band])


def test_times_extent_and_fields(job_folder):
    from rasterio.warp import transform_bounds

    _, _, items, collection = job_folder
    whole, january, winter = items
    assert whole["properties"]["start_datetime"] == "2023-01-01T00:00:00Z"
    assert whole["properties"]["end_datetime"] == "2023-12-31T23:59:59Z"
    assert january["properties"]["end_datetime"] == "2023-01-31T23:59:59Z"
    assert winter["properties"]["start_datetime"] == "2022-12-01T00:00:00Z"
    for item in items:
        props = item["properties"]
        assert props["datetime"] is None and props["created"] == "2024-01-02T03:04:05Z"
        assert props["proj:code"] == CRS
        assert props["proj:bbox"] == [300003.0, 4900027.0 - 3000, 300003.0 + 4000, 4900027.0]
        assert props["constellation"] == "sentinel-2"
        data = item["assets"]["data"]
        assert data["proj:shape"] == [HEIGHT, WIDTH] and data["proj:transform"] == list(TRANSFORM)[:6]
        assert data["type"] == "image/tiff; application=geotiff; profile=cloud-optimized" and data["roles"] == ["data"]
        assert [b.get("nodata") for b in data["raster:bands"]] == [0, 0, 0, None]
        assert {b["data_type"] for b in data["raster:bands"]} == {"uint8"}
        assert {b["spatial_resolution"] for b in data["raster:bands"]} == {10.0}
        assert "description" in data["raster:bands"][3]
        assert [b.get("common_name") for b in data["eo:bands"]] == ["red", "green", "blue", None]
        assert data["eo:bands"][3]["name"] == "count"
        assert item["assets"]["overview"]["roles"] == ["overview"] and item["assets"]["overview"]["type"] == "image/png"
        assert item["assets"]["metadata"] == {"href": item["assets"]["metadata"]["href"], "type": "application/json",
                                              "title": "Job record", "roles": ["metadata"]}
        expected = transform_bounds(CRS, "EPSG:4326", 300003.0, 4900027.0 - 3000, 300003.0 + 4000, 4900027.0, densify_pts=21)
        assert item["bbox"] == pytest.approx(list(expected), abs=1e-6)
    assert whole["properties"]["tm:scene_count"] == 36
    assert collection["extent"]["temporal"]["interval"] == [["2022-12-01T00:00:00Z", "2023-12-31T23:59:59Z"]]
    assert collection["extent"]["spatial"]["bbox"] == [whole["bbox"]]
    assert collection["license"] == "other" and collection["tm:license_note"]
    assert collection["summaries"] == {"proj:code": [CRS], "constellation": ["sentinel-2"], "gsd": [10.0]}
    assert "temporal median" in collection["keywords"] and "sentinel-2" in collection["keywords"]
    assert [link["href"] for link in collection["links"] if link["rel"] == "item"] == [
        "./item.json", "./2023-01/item.json", "./2023-DJF/item.json"]


def test_the_geometry_is_the_densified_footprint_counter_clockwise(job_folder):
    from rasterio.warp import transform
    from shapely.geometry import Polygon, box, shape

    whole = job_folder[2][0]
    ring = whole["geometry"]["coordinates"][0]
    assert whole["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]
    assert len(ring) == 4 * 20 + 1
    polygon = shape(whole["geometry"])
    assert polygon.is_valid and polygon.exterior.is_ccw
    assert box(*whole["bbox"]).buffer(1e-9).contains(polygon)
    lons, lats = transform(CRS, "EPSG:4326", [300003.0, 300003.0, 304003.0, 304003.0], [4900027.0, 4897027.0, 4897027.0, 4900027.0])
    corners = Polygon(zip(lons, lats))
    assert np.allclose(corners.exterior.coords[:4], [ring[i] for i in (0, 20, 40, 60)], rtol=0, atol=1e-7)
    assert polygon.area == pytest.approx(corners.area, rel=1e-4)


def test_the_folder_loads_wherever_it_is_copied(job_folder, tmp_path):
    import pystac

    folder = job_folder[0]
    for path in folder.rglob("*.json"):
        assert str(folder.parent) not in path.read_text(), path
    copy = Path(shutil.copytree(folder, tmp_path / "copied" / JOB))
    collection = pystac.Collection.from_file(str(copy / "collection.json"))
    for item in collection.get_items():
        assert item.get_self_href().startswith(str(copy))
        assert item.get_collection().id == JOB and item.get_root().id == JOB
        for asset in item.assets.values():
            href = asset.get_absolute_href()
            assert href.startswith(str(copy)) and os.path.isfile(href), href
    assert collection.get_item(f"{JOB}-2023-DJF").assets["data"].get_absolute_href() == str(copy / "2023-DJF" / "median.tif")
    assert collection.get_item(JOB).assets["metadata"].get_absolute_href() == str(copy / "job.json")


def test_a_footprint_across_the_antimeridian_is_split():
    from shapely.geometry import shape

    # UTM 60N (central meridian 177 E) at 60 N: 100 km to 300 km east of it, 178.8 E to 177.6 W.
    geometry, bbox = footprint("EPSG:32660", Affine(100.0, 0, 600000.0, 0, -100.0, 6700000.0), 2000, 1000)
    assert geometry["type"] == "MultiPolygon"
    west, south, east, north = bbox
    assert 170 < west < 180 and -180 < east < -170 and south < north
    parts = [shape({"type": "Polygon", "coordinates": polygon}) for polygon in geometry["coordinates"]]
    assert all(part.is_valid and part.exterior.is_ccw for part in parts)
    assert max(parts[0].bounds[2], 180) == 180 and min(parts[1].bounds[0], -180) == -180
    assert union_bbox([bbox, bbox]) == bbox
    assert union_bbox([[170, 0, 175, 1], [-179, -1, -175, 0.5]]) == [170, -1, -175, 1]
    assert union_bbox([[1, 2, 3, 4], [-5, 0, -4, 3]]) == [-5, 0, 3, 4]


def test_names_hrefs_and_days_are_checked(job_folder, tmp_path):
    cog = str(job_folder[0] / "median.tif")
    hrefs = catalog.composite_hrefs("2023-01")
    assert hrefs == {"cog_href": "./median.tif", "quicklook_href": "./quicklook.png", "record_href": "../job.json"}
    good = dict(created=CREATED, **hrefs)
    for bad in ("../x/y", "2023/01", "", "2023.01", 2023):
        with pytest.raises(InvalidRequest, match="period"):
            catalog.composite_item(JOB, bad, "2023-01-01", "2023-01-31", cog, **good)
    for field, href in (("cog_href", "/abs/median.tif"), ("cog_href", "gs://b/median.tif"), ("record_href", "../../job.json"),
                        ("quicklook_href", "C:/q.png")):
        with pytest.raises(InvalidRequest, match=field):
            catalog.composite_item(JOB, "2023-01", "2023-01-01", "2023-01-31", cog, **{**good, field: href})
    with pytest.raises(InvalidRequest, match="after"):
        catalog.composite_item(JOB, "2023-01", "2023-02-01", "2023-01-31", cog, **good)
    with pytest.raises(InvalidRequest, match="date"):
        catalog.composite_item(JOB, "2023-01", "2023-01", "2023-01-31", cog, **good)
    with pytest.raises(InvalidRequest, match="zone"):
        catalog.composite_item(JOB, "2023-01", "2023-01-01", "2023-01-31", cog, **{**good, "created": dt.datetime(2024, 1, 1)})
    write_cog(tmp_path / "rgb.tif", 0, count=3)
    with pytest.raises(InputMismatch, match="3 bands"):
        catalog.composite_item(JOB, "2023-01", "2023-01-01", "2023-01-31", str(tmp_path / "rgb.tif"), **good)
    item = catalog.composite_item(JOB, "2023-01", dt.date(2023, 1, 1), dt.date(2023, 1, 31), cog, **{**good, "created": "2024-01-02T04:04:05+01:00"})
    assert item["properties"]["created"] == "2024-01-02T03:04:05Z" and "platform" not in item["properties"]


def test_the_collection_takes_only_this_jobs_items(job_folder):
    items = job_folder[2]
    make = lambda its, job=JOB: catalog.job_collection(job, its, description="d", created=CREATED)  # noqa: E731
    with pytest.raises(InvalidRequest, match="no composite"):
        make([])
    with pytest.raises(InvalidRequest, match="not an item of job"):
        make(items, job="other-job")
    with pytest.raises(InvalidRequest, match="share an id"):
        make([items[1], items[1]])
    only = make(items[1:2])
    assert only["extent"]["temporal"]["interval"] == [["2023-01-01T00:00:00Z", "2023-01-31T23:59:59Z"]]
    assert [link["rel"] for link in only["links"]] == ["root", "self", "item"]
