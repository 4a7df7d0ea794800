"""STAC inputs: asset hrefs, one grid, search specs, and a real STAC API server on loopback."""

from __future__ import annotations

import copy
import json
import re
import threading
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from stac_support import free_port, stac_servers  # noqa: F401 - stac_servers is a fixture

from temporal_median.base.errors import InputUnreadable, InvalidRequest, StorageUnavailable
from temporal_median.scenes.items import asset_href, scenes_from_items
from temporal_median.scenes.selection import Selection, select
from temporal_median.scenes.stac import StacInput, StacSearch
from temporal_median_cli.sample import generate_series

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stac"


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------------------------
# STAC items: hrefs and grids
# --------------------------------------------------------------------------------------------


def test_earth_search_item_is_read_over_https_not_s3():
    item = load_fixture("earth-search-c1-T31TCJ.json")
    assert asset_href(item) == item["assets"]["visual"]["href"]
    assert asset_href(item).startswith("https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/")


def test_s3_href_with_an_https_alternate_uses_the_alternate():
    item = load_fixture("s3-primary-https-alternate.json")
    assert asset_href(item) == item["assets"]["visual"]["alternate"]["https"]["href"]


def test_s3_href_without_alternate_is_refused_naming_the_item():
    with pytest.raises(InvalidRequest, match=r"item s3-only-asset: asset 'visual' is at s3://example-bucket/"):
        asset_href(load_fixture("s3-only-asset.json"))


def test_missing_asset_is_refused_naming_the_item_and_its_assets():
    with pytest.raises(InvalidRequest, match=r"S2A_T31TCJ_20230709T104633_L2A has no asset 'tci' \(its assets: red, visual\)"):
        asset_href(load_fixture("earth-search-c1-T31TCJ.json"), "tci")


def test_file_and_relative_hrefs_become_local_paths():
    item = load_fixture("s3-only-asset.json")
    item["assets"]["visual"]["href"] = "file:///data/series/a%20b.tif"
    assert asset_href(item) == "/data/series/a b.tif"
    item["assets"]["visual"]["href"] = "scenes/a.tif"
    assert asset_href(item, base="/data/series/items.json") == "/data/series/scenes/a.tif"
    assert asset_href(item, base="https://host/catalog/items.json") == "https://host/catalog/scenes/a.tif"


def tile_item(item_id: str, code: str | None, **props) -> dict:
    item = copy.deepcopy(load_fixture("earth-search-c1-T31TCJ.json"))
    item["id"] = item_id
    item["properties"].pop("grid:code")
    for key in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"):
        item["properties"].pop(key)
    if code:
        item["properties"]["grid:code"] = code
    item["properties"].update(props)
    return item


def test_items_of_several_tiles_and_zones_become_scenes_with_platform_and_footprint():
    # Selection first, then the grid: items of several MGRS tiles and UTM zones are scenes; the
    # job's output grid is decided from the scenes kept.
    other_zone = tile_item("utm30", "MGRS-30TYP", platform="sentinel-2b", **{"proj:code": "EPSG:32630"})
    scenes = scenes_from_items([tile_item("utm31", "MGRS-31TCJ"), other_zone])
    assert [s.item_id for s in scenes] == ["utm31", "utm30"]
    assert scenes[1].platform == "sentinel-2b"
    assert scenes[0].bbox == tuple(float(v) for v in load_fixture("earth-search-c1-T31TCJ.json")["bbox"])


def test_every_unreadable_item_is_named_at_once():
    first, second = load_fixture("s3-only-asset.json"), load_fixture("s3-only-asset.json")
    second["id"] = "another-s3-only"
    with pytest.raises(InvalidRequest, match=r"s3-only-asset.*; item another-s3-only"):
        scenes_from_items([first, second])


# --------------------------------------------------------------------------------------------
# STAC inputs: validation
# --------------------------------------------------------------------------------------------

API = "https://earth-search.aws.element84.com/v1"


def test_search_spec_is_validated():
    search = StacSearch.from_request(
        {"url": API + "/", "collections": ["sentinel-2-c1-l2a"], "datetime": "2023-01-01/2023-12-31",
         "query": {"grid:code": {"eq": "MGRS-31TCJ"}}, "max_items": 500}
    )
    assert search.url == API and search.max_items == 500 and search.bbox is None
    assert search.to_dict()["stac"]["query"] == {"grid:code": {"eq": "MGRS-31TCJ"}}
    assert StacSearch.from_request({"url": API, "collections": ["c"]}).max_items == 1000
    assert StacSearch.from_request({"url": "http://127.0.0.1:8080", "collections": ["c"], "bbox": [0, 43, 2, 44.5]}).bbox == (
        0.0, 43.0, 2.0, 44.5,
    )


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"collections": ["c"]}, "'stac.url' is required"),
        ({"url": "ftp://host", "collections": ["c"]}, "'stac.url'"),
        ({"url": "http://stac.example.com", "collections": ["c"]}, "'stac.url'"),
        ({"url": API}, "'stac.collections'"),
        ({"url": API, "collections": []}, "'stac.collections'"),
        ({"url": API, "collections": ["c"], "bbox": [0, 45, 1]}, "'stac.bbox'"),
        ({"url": API, "collections": ["c"], "bbox": [0, 46, 1, 45]}, "'stac.bbox'"),
        ({"url": API, "collections": ["c"], "intersects": {"type": "Circle"}}, "'stac.intersects'"),
        ({"url": API, "collections": ["c"], "bbox": [0, 45, 1, 46], "intersects": {"type": "Point", "coordinates": [0, 45]}},
         "'stac.bbox' and 'stac.intersects'"),
        ({"url": API, "collections": ["c"], "datetime": "2023"}, "'stac.datetime'"),
        ({"url": API, "collections": ["c"], "datetime": "../.."}, "'stac.datetime'"),
        ({"url": API, "collections": ["c"], "query": "eo:cloud_cover<10"}, "'stac.query'"),
        ({"url": API, "collections": ["c"], "filter": []}, "'stac.filter'"),
        ({"url": API, "collections": ["c"], "max_items": 0}, "'stac.max_items'"),
        ({"url": API, "collections": ["c"], "max_items": 1001}, "'stac.max_items'"),
        ({"url": API, "collections": ["c"], "limit": 10}, "unknown field"),
    ],
)
def test_search_spec_errors_name_the_field(spec, field):
    with pytest.raises(InvalidRequest, match=re.escape(field)):
        StacSearch.from_request(spec)


def test_stac_input_from_a_job_request():
    assert StacInput.from_request({"inputs": "gs://b/t31tcj/"}) is None
    search = StacInput.from_request({"stac": {"url": API, "collections": ["c"]}, "asset": "visual", "max_cloud": 20})
    assert isinstance(search.source, StacSearch) and search.asset == "visual"
    listed = StacInput.from_request({"inputs": "gs://b/catalog/items.json", "asset": "rgb"})
    assert listed.source.url == "gs://b/catalog/items.json" and listed.asset == "rgb"
    assert listed.to_dict() == {"item_collection": "gs://b/catalog/items.json", "asset": "rgb"}
    with pytest.raises(InvalidRequest, match="either 'inputs' or 'stac'"):
        StacInput.from_request({"inputs": "gs://b/p/", "stac": {"url": API, "collections": ["c"]}})
    with pytest.raises(InvalidRequest, match="'asset' applies to STAC inputs only"):
        StacInput.from_request({"inputs": "gs://b/p/", "asset": "visual"})
    with pytest.raises(InvalidRequest, match="'asset'"):
        StacInput.from_request({"inputs": "gs://b/items.json", "asset": ""})
    with pytest.raises(InvalidRequest, match="local paths are not allowed"):
        StacInput.from_request({"inputs": "/data/items.json"})
    assert StacInput.from_request({"inputs": "/data/items.json"}, allow_local=True).source.url == "/data/items.json"


def test_item_collection_in_cloud_storage_is_read_with_the_storage_client(monkeypatch):
    from temporal_median.base import storage

    body = {"type": "FeatureCollection", "features": [load_fixture("earth-search-c1-T31TCJ.json")]}
    asked = []
    monkeypatch.setattr(storage, "read_bytes", lambda url: asked.append(str(url)) or json.dumps(body).encode())
    found = StacInput.from_request({"inputs": "gs://catalogs/t31tcj/items.json"}).scenes()
    assert asked == ["gs://catalogs/t31tcj/items.json"] and found[0].item_id == "S2A_T31TCJ_20230709T104633_L2A"
    monkeypatch.setattr(storage, "read_bytes", lambda url: None)
    with pytest.raises(InputUnreadable, match="does not exist"):
        StacInput.from_request({"inputs": "gs://catalogs/t31tcj/items.json"}).scenes()


# --------------------------------------------------------------------------------------------
# Against a real STAC API (stac-fastapi-geoparquet on loopback) and real ItemCollections
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t31tcj_series(tmp_path_factory):
    """18 small dates of the sample on granule T31TCJ, with its items.json."""
    return generate_series(str(tmp_path_factory.mktemp("t31tcj")), scenes=18, width=64, height=48, seed=3,
                           ground_truth=False)


@pytest.fixture(scope="module")
def t31tch_series(tmp_path_factory):
    """4 dates on another tile (T31TCH, 100 km south): its own grid."""
    return generate_series(str(tmp_path_factory.mktemp("t31tch")), scenes=4, width=64, height=48, seed=4,
                           granule="T31TCH", origin=(300000.0, 4800000.0), ground_truth=False)


def items_of(series) -> list[dict]:
    return json.loads(Path(series.items_path).read_text())["features"]


@pytest.fixture(scope="module")
def stac_api(stac_servers, t31tcj_series, t31tch_series):  # noqa: F811 - the imported fixture
    """One server: collection 'sample' (T31TCJ) and collection 'two-tiles' (T31TCJ and T31TCH)."""
    sample = items_of(t31tcj_series)
    both = []
    for item in items_of(t31tcj_series) + items_of(t31tch_series):
        both.append({**item, "id": "two-tiles-" + item["id"], "collection": "two-tiles"})
    return stac_servers(sample + both, name="stac-api", collection="sample")


def search(stac_api, **spec) -> StacInput:
    return StacInput.from_request({"stac": {"url": stac_api.url, "collections": ["sample"], **spec}})


def test_search_finds_the_whole_series_in_acquisition_order(stac_api, t31tcj_series):
    found = search(stac_api).scenes()
    selected = Selection().apply(found)
    assert selected.urls == tuple(t31tcj_series.paths)
    assert {s.cloud_source for s in found} == {"eo:cloud_cover"}


def test_search_by_date(stac_api, t31tcj_series):
    found = search(stac_api, datetime="2023-06-01/2023-08-31").scenes()
    expected = [p for p, s in zip(t31tcj_series.paths, t31tcj_series.scenes) if "2023-06-01" <= s.acquired[:10] <= "2023-08-31"]
    assert 2 <= len(expected) < 18
    assert Selection().apply(found).urls == tuple(expected)


def test_search_by_cloud_cover_with_a_cql2_filter(stac_api, t31tcj_series):
    covers = {item["assets"]["visual"]["href"]: item["properties"]["eo:cloud_cover"] for item in items_of(t31tcj_series)}
    expected = tuple(p for p in t31tcj_series.paths if covers[p] < 20)
    assert 0 < len(expected) < 18  # the series has clear and cloudy dates
    found = search(stac_api, filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}).scenes()
    assert Selection().apply(found).urls == expected
    # The same selection made on our side from eo:cloud_cover, with reasons for the rest.
    everything = select(search(stac_api).scenes(), Selection(max_cloud=19.9999))
    assert everything.urls == expected and all(d.reason.startswith("cloud cover ") for d in everything.dropped)


def test_search_by_place(stac_api, t31tcj_series):
    west, south, east, north = items_of(t31tcj_series)[0]["bbox"]
    inside = {"type": "Point", "coordinates": [(west + east) / 2, (south + north) / 2]}
    assert len(search(stac_api, intersects=inside).scenes()) == 18
    with pytest.raises(InvalidRequest, match="matched no item"):
        search(stac_api, bbox=[10.0, 50.0, 11.0, 51.0]).scenes()


def test_a_search_matching_more_than_max_items_is_refused(stac_api):
    with pytest.raises(InvalidRequest, match="matches more than 5 items; narrow it"):
        search(stac_api, max_items=5).scenes()


def test_query_on_an_api_without_the_query_extension_is_refused(stac_api):
    with pytest.raises(InvalidRequest, match=r"'stac.query': the STAC API at http://127\.0\.0\.1:\d+ does not support"):
        search(stac_api, query={"eo:cloud_cover": {"lt": 20}}).scenes()


def test_a_search_over_two_mgrs_tiles_gives_the_scenes_of_both(stac_api):
    scenes = StacInput.from_request({"stac": {"url": stac_api.url, "collections": ["two-tiles"]}}).scenes()
    names = [s.item_id for s in scenes]
    assert len(names) == 22 and sum("T31TCH" in n for n in names) == 4


def test_item_collection_file_with_a_date_range_and_cloud_ceiling(t31tcj_series):
    stac_input = StacInput.from_request({"inputs": t31tcj_series.items_path}, allow_local=True)
    found = stac_input.scenes()
    assert [s.url for s in found] == t31tcj_series.paths
    result = select(found, Selection(date(2023, 3, 1), date(2023, 10, 31), 30))
    expected = [
        p for p, item in zip(t31tcj_series.paths, items_of(t31tcj_series))
        if "2023-03-01" <= item["properties"]["datetime"][:10] <= "2023-10-31" and item["properties"]["eo:cloud_cover"] <= 30
    ]
    assert list(result.urls) == expected and len(result.kept) + len(result.dropped) == 18


def test_item_collection_of_two_tiles_gives_both_tiles_scenes(tmp_path, t31tcj_series, t31tch_series):
    path = tmp_path / "two-tiles.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items_of(t31tcj_series) + items_of(t31tch_series)}))
    scenes = StacInput.from_request({"inputs": str(path)}, allow_local=True).scenes()
    assert len(scenes) == 22 and len({s.url for s in scenes}) == 22


def test_item_collection_file_errors(tmp_path):
    with pytest.raises(InputUnreadable, match="does not exist"):
        StacInput.from_request({"inputs": str(tmp_path / "none.json")}, allow_local=True).scenes()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidRequest, match="is not JSON"):
        StacInput.from_request({"inputs": str(tmp_path / "broken.json")}, allow_local=True).scenes()
    (tmp_path / "item.json").write_text(json.dumps(load_fixture("s3-only-asset.json")))
    with pytest.raises(InvalidRequest, match="not a STAC ItemCollection"):
        StacInput.from_request({"inputs": str(tmp_path / "item.json")}, allow_local=True).scenes()


# --------------------------------------------------------------------------------------------
# STAC APIs that are unreachable, broken or not STAC APIs at all
# --------------------------------------------------------------------------------------------


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with the server's (status, content type, body)."""

    def do_GET(self):
        status, kind, body = self.server.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def canned_http():
    """Start a loopback HTTP server answering ``answer(path) -> (status, type, bytes)``; its URL."""
    servers = []

    def start(answer) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
        server.answer = answer
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_unreachable_api_is_a_transient_error_naming_it():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StorageUnavailable, match=rf"cannot reach the STAC API at {url}"):
        StacInput.from_request({"stac": {"url": url, "collections": ["c"]}}).scenes()


def test_api_answering_5xx_is_transient(canned_http):
    url = canned_http(lambda path: (503, "text/plain", b"maintenance"))
    with pytest.raises(StorageUnavailable, match=rf"the STAC API at {url} answered HTTP 503"):
        StacInput.from_request({"stac": {"url": url, "collections": ["c"]}}).scenes()


def test_api_answering_4xx_is_invalid(canned_http):
    url = canned_http(lambda path: (403, "application/json", b'{"message": "forbidden"}'))
    with pytest.raises(InvalidRequest, match=rf"the STAC API at {url} refused the search: HTTP 403"):
        StacInput.from_request({"stac": {"url": url, "collections": ["c"]}}).scenes()


def test_html_page_is_not_a_stac_api(canned_http):
    url = canned_http(lambda path: (200, "text/html", b"<html><body>Welcome</body></html>"))
    with pytest.raises(InvalidRequest, match=rf"{url} does not answer as a STAC API"):
        StacInput.from_request({"stac": {"url": url, "collections": ["c"]}}).scenes()


def test_static_catalog_without_item_search_is_not_a_stac_api(canned_http):
    def answer(path):
        catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "static", "description": "d", "links": []}
        return 200, "application/json", json.dumps(catalog).encode()

    url = canned_http(answer)
    with pytest.raises(InvalidRequest, match="not a STAC API with item search"):
        StacInput.from_request({"stac": {"url": url, "collections": ["c"]}}).scenes()


def test_item_collection_over_http(canned_http, t31tcj_series):
    body = Path(t31tcj_series.items_path).read_bytes()
    url = canned_http(lambda path: (200, "application/geo+json", body) if path == "/items.json" else (404, "text/plain", b""))
    assert [s.url for s in StacInput.from_request({"inputs": url + "/items.json"}).scenes()] == t31tcj_series.paths
    with pytest.raises(InputUnreadable, match="HTTP 404"):
        StacInput.from_request({"inputs": url + "/other.json"}).scenes()
