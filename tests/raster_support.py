"""Helpers shared by the raster tests: small scene series, direct reads, a GCS stand-in for GDAL."""

from __future__ import annotations

import http.server
import os
import re
import threading
import uuid

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

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
