"""GDAL paths, the reading environment, and how GDAL failures are classified (temporal_median.raster.gdal)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import rasterio
from raster_support import read_direct, upload, write_scene
from rasterio.env import get_gdal_config

from temporal_median.base.errors import (
    InputUnreadable,
    InvalidRequest,
    StorageUnavailable,
    TransientError,
)
from temporal_median.base.grid import Window
from temporal_median.compute.median import compute_median
from temporal_median.compute.tile import compute_tile, read_window
from temporal_median.raster.gdal import gdal_env, to_gdal_path
from temporal_median.raster.read import inspect_inputs


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
