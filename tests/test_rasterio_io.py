"""Windowed reads of scene series, tile computation and tile COGs (temporal_median.rasterio_io)."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import uuid

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.env import get_gdal_config
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from temporal_median import rasterio_io as rio_io
from temporal_median.errors import (
    InputMismatch,
    InputUnreadable,
    InvalidRequest,
    NoInputs,
    PermanentError,
    StorageUnavailable,
    TransientError,
)
from temporal_median.grid import Grid, Window
from temporal_median.median import compute_median
from temporal_median.rasterio_io import (
    CHUNK_BYTES,
    RasterGrid,
    compute_tile,
    gdal_env,
    inspect_inputs,
    plan_chunks,
    profile,
    read_window,
    to_gdal_path,
    write_tile,
)

TRANSFORM = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0)
WIDTH, HEIGHT = 700, 600


def write_scene(path, data, *, crs="EPSG:32631", transform=TRANSFORM, blocksize=256, dtype="uint8"):
    """A COG like the inputs: tiled, DEFLATE."""
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="COG", width=width, height=height, count=count, dtype=dtype, crs=crs,
        transform=transform, compress="DEFLATE", blocksize=blocksize, overviews="NONE",
    ) as dst:
        dst.write(data.astype(dtype))
    return str(path)


def random_scene(rng, height=HEIGHT, width=WIDTH):
    """Values 1..254 with some nodata (0) and cloud (255) pixels."""
    data = rng.integers(1, 255, (3, height, width), dtype=np.uint8)
    roll = rng.uniform(size=(height, width))
    data[:, roll < 0.1] = 0
    data[:, roll > 0.85] = 255
    return data


@pytest.fixture
def series(tmp_path):
    """Seven 700 x 600 scenes with 256-pixel blocks (windows cross block edges)."""
    rng = np.random.default_rng(42)
    folder = tmp_path / "scenes"
    folder.mkdir()
    return [write_scene(folder / f"s{i:02d}.tif", random_scene(rng)) for i in range(7)]


def read_direct(paths, window):
    out = []
    for path in paths:
        with rasterio.open(path) as ds:
            out.append(ds.read(window=window.to_rasterio()))
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# Paths and environment
# --------------------------------------------------------------------------------------------


def test_to_gdal_path_maps_each_scheme():
    assert to_gdal_path("gs://bucket/a/b.tif") == "/vsigs/bucket/a/b.tif"
    assert to_gdal_path("https://example.org/x/y.tif") == "/vsicurl/https://example.org/x/y.tif"
    assert to_gdal_path("/data/x.tif") == "/data/x.tif"
    assert to_gdal_path("relative/x.tif") == "relative/x.tif"


@pytest.mark.parametrize(
    "bad", ["", "   ", None, 3, "gs://", "gs://bucket", "gs://bucket/", "gs:///key.tif", "https://", "s3://b/k.tif",
            "http://example.org/x.tif", "file:///x.tif"]
)
def test_to_gdal_path_rejects_other_inputs(bad):
    with pytest.raises(InvalidRequest):
        to_gdal_path(bad)


def test_gdal_env_sets_cloud_defaults_and_restores():
    assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") is None
    with gdal_env():
        assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN", normalize=False) == "EMPTY_DIR"
        assert get_gdal_config("GDAL_HTTP_MERGE_CONSECUTIVE_RANGES", normalize=False) == "YES"
        assert get_gdal_config("GDAL_HTTP_MULTIPLEX", normalize=False) == "YES"
        assert get_gdal_config("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", normalize=False) == ".tif,.tiff"
        assert get_gdal_config("VSI_CACHE", normalize=False) == "TRUE"
        assert int(get_gdal_config("GDAL_CACHEMAX", normalize=False)) <= 256 << 20
        assert get_gdal_config("GDAL_HTTP_MAX_RETRY", normalize=False) is not None
    assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") is None


def test_gdal_env_keeps_user_environment_and_applies_overrides(monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    monkeypatch.setenv("CPL_GS_ENDPOINT", "http://127.0.0.1:1/")
    with gdal_env(GDAL_HTTP_TIMEOUT="7"):
        assert get_gdal_config("GDAL_HTTP_MAX_RETRY", normalize=False) == "9"
        assert get_gdal_config("CPL_GS_ENDPOINT", normalize=False) == "http://127.0.0.1:1/"
        assert get_gdal_config("GDAL_HTTP_TIMEOUT", normalize=False) == "7"


def test_gdal_env_nested_keeps_enclosing_settings():
    with gdal_env(GDAL_HTTP_MAX_RETRY="0", GDAL_CACHEMAX=32 << 20):
        with gdal_env():
            assert get_gdal_config("GDAL_HTTP_MAX_RETRY", normalize=False) == "0"
            assert get_gdal_config("GDAL_CACHEMAX") == 32 << 20
        assert get_gdal_config("GDAL_HTTP_MAX_RETRY", normalize=False) == "0"


def test_gdal_env_respects_a_user_cache_size(monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "100")
    with gdal_env():
        assert "GDAL_CACHEMAX" not in rasterio.env.getenv()


# --------------------------------------------------------------------------------------------
# Grid and inspection
# --------------------------------------------------------------------------------------------


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


@pytest.fixture
def odd_scenes(tmp_path):
    """One scene per way of not matching the first."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "odd"
    folder.mkdir()
    ok = random_scene(rng)
    (folder / "not_a_raster.tif").write_text("hello")
    return {
        "two_bands": write_scene(folder / "two_bands.tif", ok[:2]),
        "uint16": write_scene(folder / "uint16.tif", ok, dtype="uint16"),
        "smaller": write_scene(folder / "smaller.tif", ok[:, :500, :]),
        "shifted": write_scene(folder / "shifted.tif", ok, transform=TRANSFORM @ Affine.translation(1, 0)),
        "other_crs": write_scene(folder / "other_crs.tif", ok, crs="EPSG:32630"),
        "missing": str(folder / "missing.tif"),
        "not_a_raster": str(folder / "not_a_raster.tif"),
    }


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
def test_inspect_inputs_names_the_offending_file(series, odd_scenes, case, error, words):
    urls = series[:3] + [odd_scenes[case]] + series[3:]
    with pytest.raises(error) as info:
        inspect_inputs(urls)
    assert isinstance(info.value, PermanentError)
    assert odd_scenes[case] in str(info.value)
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


# --------------------------------------------------------------------------------------------
# Chunk plan
# --------------------------------------------------------------------------------------------


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


def test_a_course_tile_is_two_whole_width_strips_within_the_buffer_budget():
    chunks = plan_chunks(Window(1024, 1024, 1024, 1024), (512, 512), 216)
    assert chunks == [(0, 512, 0, 1024), (512, 1024, 0, 1024)]
    largest = max(216 * 3 * (r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in chunks)
    # One 340 MB buffer (two would not fit the budget), well inside a 1 GiB worker.
    assert largest <= CHUNK_BYTES < 2 * largest and largest < 400 << 20


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
    monkeypatch.setattr(rio_io, "CHUNK_BYTES", budget)
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


def test_write_tile_saturates_count_and_is_atomic(tmp_path):
    rgb = np.full((3, 20, 30), 7, np.uint8)
    count = np.full((20, 30), 300, np.uint16)
    rgb[:, :5] = 0
    count[:5] = 0
    count[5:10] = 12
    dest = tmp_path / "out" / "tile.tif"
    write_tile(str(dest), rgb, count, TRANSFORM, "EPSG:32631")
    with rasterio.open(dest) as ds:
        band4 = ds.read(4)
    assert (band4[:5] == 0).all() and (band4[5:10] == 12).all() and (band4[10:] == 255).all()
    assert os.stat(dest).st_mode & 0o777 == 0o644
    # A write that fails half-way leaves neither a file nor a temporary.
    with pytest.raises(Exception):
        write_tile(str(tmp_path / "out" / "bad.tif"), rgb, count, TRANSFORM, "EPSG:999999")
    assert os.listdir(tmp_path / "out") == ["tile.tif"]


@pytest.mark.parametrize("case", ["colour_without_count", "zero_band_with_count", "shape", "dtype", "remote_dest", "profile"])
def test_write_tile_rejects_bad_arguments(tmp_path, case):
    rgb = np.full((3, 4, 4), 9, np.uint8)
    count = np.full((4, 4), 2, np.uint16)
    dest, name = str(tmp_path / "t.tif"), "tile"
    if case == "colour_without_count":
        count[0, 0] = 0
    elif case == "zero_band_with_count":
        rgb[1, 0, 0] = 0
    elif case == "shape":
        count = count[:3]
    elif case == "dtype":
        rgb = rgb.astype(np.uint16)
    elif case == "remote_dest":
        dest = "gs://bucket/t.tif"
    else:
        name = "jpeg"
    with pytest.raises(InvalidRequest):
        write_tile(dest, rgb, count, TRANSFORM, "EPSG:32631", profile=name)
    assert os.listdir(tmp_path) == []


def test_profiles_are_copies():
    tile = profile("tile")
    tile["blocksize"] = 1
    assert profile("tile")["blocksize"] in (256, 512)
    mosaic = profile("mosaic")
    assert mosaic["blocksize"] == 512 and mosaic["count"] == 4 and mosaic["nodata"] == 0
    assert mosaic["compress"] == tile["compress"] == "DEFLATE"


def test_mosaic_profile_writes_a_valid_cog(tmp_path):
    rgb = np.full((3, 1100, 900), 40, np.uint8)
    count = np.full((1100, 900), 3, np.uint16)
    dest = tmp_path / "mosaic.tif"
    write_tile(str(dest), rgb, count, TRANSFORM, "EPSG:32631", profile="mosaic")
    assert cog_validate(str(dest))[0]
    with rasterio.open(dest) as ds:
        assert ds.block_shapes[0] == (512, 512) and ds.overviews(1)


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


# --------------------------------------------------------------------------------------------
# gs:// through a local HTTP server standing in for GCS (CPL_GS_ENDPOINT)
# --------------------------------------------------------------------------------------------


class _FakeGcs(http.server.BaseHTTPRequestHandler):
    """Serves objects from a dict with Range support; can answer 503 to everything or to data reads."""

    objects: dict = {}
    fail: dict = {"all": False, "ranges_after": None}
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, send_body):
        key = self.path.split("?")[0].lstrip("/")
        range_header = self.headers.get("Range")
        start = int(re.match(r"bytes=(\d+)-", range_header).group(1)) if range_header else 0
        limit = self.fail["ranges_after"]
        if self.fail["all"] or (limit is not None and start >= limit):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.objects.get(key)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if range_header:
            match = re.match(r"bytes=(\d+)-(\d*)", range_header)
            end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self):
        self._reply(True)

    def do_HEAD(self):
        self._reply(False)


@pytest.fixture
def fake_gcs(monkeypatch):
    """A GCS stand-in on 127.0.0.1; yields (objects dict, fail switches, bucket name)."""
    _FakeGcs.objects = {}
    _FakeGcs.fail = {"all": False, "ranges_after": None}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeGcs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CPL_GS_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("GS_NO_SIGN_REQUEST", "YES")
    # Users' settings win over gdal_env's defaults: keep the retries of failing tests short.
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    # GDAL caches what it learnt about a URL: a fresh bucket name per test.
    bucket = f"b{uuid.uuid4().hex[:12]}"
    try:
        yield _FakeGcs.objects, _FakeGcs.fail, bucket
    finally:
        server.shutdown()
        server.server_close()


def upload(objects, bucket, paths):
    urls = []
    for path in paths:
        key = f"{bucket}/series/{os.path.basename(path)}"
        objects[key] = open(path, "rb").read()
        urls.append(f"gs://{key}")
    return urls


def test_gs_inputs_read_like_local_files(series, tmp_path, fake_gcs):
    objects, _, bucket = fake_gcs
    urls = upload(objects, bucket, series)
    window = Window(100, 50, 400, 300)
    assert inspect_inputs(urls) == inspect_inputs(series)
    np.testing.assert_array_equal(read_window(urls, window), read_direct(series, window))
    stats = compute_tile(urls, window, str(tmp_path / "t.tif"))
    assert stats.bytes_read > 0
    with rasterio.open(tmp_path / "t.tif") as ds:
        np.testing.assert_array_equal(ds.read(indexes=[1, 2, 3]), compute_median(read_direct(series, window)).rgb)


def test_gs_missing_object_is_permanent_and_named(series, fake_gcs):
    objects, _, bucket = fake_gcs
    urls = upload(objects, bucket, series[:2]) + [f"gs://{bucket}/series/nope.tif"]
    with pytest.raises(InputUnreadable) as info:
        inspect_inputs(urls)
    assert urls[-1] in str(info.value) and "404" in str(info.value)


def test_gs_server_error_is_transient_and_named(series, fake_gcs):
    objects, fail, bucket = fake_gcs
    urls = upload(objects, bucket, series[:2])
    fail["all"] = True
    with pytest.raises(StorageUnavailable) as info:
        inspect_inputs(urls)
    assert isinstance(info.value, TransientError)
    assert urls[0] in str(info.value) and "503" in str(info.value)


def test_gs_server_error_while_reading_blocks_is_transient(tmp_path, fake_gcs):
    objects, fail, bucket = fake_gcs
    rng = np.random.default_rng(5)
    # Incompressible 1024 x 1024 scenes: their blocks lie far beyond the header GDAL reads at open.
    paths = [write_scene(tmp_path / f"n{i}.tif", rng.integers(1, 255, (3, 1024, 1024), dtype=np.uint8), blocksize=512)
             for i in range(2)]
    urls = upload(objects, bucket, paths)
    grid = inspect_inputs(urls)
    fail["ranges_after"] = 200_000
    with pytest.raises(StorageUnavailable) as info:
        compute_tile(urls, Window(512, 512, 512, 512), str(tmp_path / "t.tif"), expected=grid)
    assert any(url in str(info.value) for url in urls)
    assert not (tmp_path / "t.tif").exists()


def test_unreachable_storage_is_transient(series, monkeypatch):
    monkeypatch.setenv("CPL_GS_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("GS_NO_SIGN_REQUEST", "YES")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    url = f"gs://b{uuid.uuid4().hex[:12]}/x.tif"
    with pytest.raises(StorageUnavailable) as info:
        inspect_inputs([url])
    assert url in str(info.value)


def test_read_buffers_are_reused_across_tiles_of_different_sizes(series, tmp_path):
    from temporal_median import rasterio_io

    pool = rasterio_io._BUFFERS
    for window in (Window(0, 0, 512, 512), Window(512, 512, 188, 88), Window(0, 512, 512, 88)):
        compute_tile(series, window, str(tmp_path / "t.tif"))
        with rasterio.open(tmp_path / "t.tif") as ds:
            expected = compute_median(read_direct(series, window))
            assert np.array_equal(ds.read((1, 2, 3)), expected.rgb)
    assert 0 < sum(b.size for b in pool._free) <= rasterio_io.CHUNK_BYTES
