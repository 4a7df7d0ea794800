"""The cloud estimate: share of the valid footprint at 255, from the smallest overview."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from temporal_median.base.errors import InputUnreadable
from temporal_median.scenes import clouds as clouds_module
from temporal_median.scenes.clouds import cloud_share, estimate_cloud_cover, estimate_cloud_covers
from temporal_median.scenes.scene import Scene
from temporal_median.scenes.selection import Selection, select

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stac"


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------------------------
# Cloud estimate
# --------------------------------------------------------------------------------------------


def write_scene(path: Path, data: np.ndarray, *, overviews: bool) -> str:
    """A 3-band uint8 GeoTIFF; as a COG with overviews (64-pixel blocks) or a plain one without."""
    options = (
        {"driver": "COG", "blocksize": 64, "overview_resampling": "average", "compress": "DEFLATE"}
        if overviews
        else {"driver": "GTiff"}
    )
    with rasterio.open(
        path, "w", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8", crs="EPSG:32631",
        transform=Affine(10, 0, 300000, 0, -10, 4900020), **options,
    ) as dst:
        dst.write(data)
    return str(path)


def half_cloud_quarter_nodata() -> np.ndarray:
    """256 x 256: the left quarter is nodata (0), the top half of the rest is cloud: 50% cloudy.

    Region edges fall on multiples of 64, so every overview level sees the same shares.
    """
    data = np.full((3, 256, 256), 90, np.uint8)
    data[:, :, :64] = 0
    data[:, :128, 64:] = 255
    return data


@pytest.fixture
def scene_half_cloud_quarter_nodata_cog(tmp_path):
    path = write_scene(tmp_path / "T31TCJ_20230709T104629_TCI.tif", half_cloud_quarter_nodata(), overviews=True)
    with rasterio.open(path) as ds:
        assert ds.overviews(1)  # the estimate reads the smallest of them
    return path


def test_cloud_share_divides_by_the_valid_footprint():
    data = half_cloud_quarter_nodata()
    assert cloud_share(data) == 50.0
    # One band at 255 is enough to count as cloud (a saturated pixel).
    partly = np.full((3, 2, 2), 90, np.uint8)
    partly[0, 0, 0] = 255
    assert cloud_share(partly) == 25.0
    # A pixel 0 in one band only is valid; 0 in all bands is not.
    edge = np.full((3, 1, 4), 90, np.uint8)
    edge[1, 0, 0] = 0
    edge[:, 0, 1] = 0
    edge[:, 0, 2] = 255
    assert cloud_share(edge) == pytest.approx(100 / 3)
    assert cloud_share(np.zeros((3, 4, 4), np.uint8)) == 100.0


def test_estimate_from_the_smallest_overview(scene_half_cloud_quarter_nodata_cog):
    assert estimate_cloud_cover(scene_half_cloud_quarter_nodata_cog) == pytest.approx(50.0)


def test_estimate_without_overviews_decimates(tmp_path, monkeypatch):
    data = np.full((3, 300, 200), 90, np.uint8)
    data[:, :75, :] = 255  # a quarter of the rows
    path = write_scene(tmp_path / "plain.tif", data, overviews=False)
    monkeypatch.setattr(clouds_module, "ESTIMATE_MAX_PIXELS", 100)  # read at 1/3
    assert estimate_cloud_cover(path) == pytest.approx(25.0, abs=1.0)


def test_estimate_of_a_missing_file_is_input_unreadable(tmp_path):
    with pytest.raises(InputUnreadable, match="missing.tif"):
        estimate_cloud_cover(str(tmp_path / "missing.tif"))


def test_estimates_run_for_unknown_covers_only_and_keep_the_order(tmp_path, scene_half_cloud_quarter_nodata_cog):
    clear = np.full((3, 128, 128), 90, np.uint8)
    clear_path = write_scene(tmp_path / "T31TCJ_20230101T104629_TCI.tif", clear, overviews=True)
    known = Scene("/nowhere/T31TCJ_20230201T104629_TCI.tif", at("2023-02-01"), 70.0, "eo:cloud_cover")
    out = estimate_cloud_covers(
        [Scene.from_url(scene_half_cloud_quarter_nodata_cog), known, Scene.from_url(clear_path)], max_workers=2
    )
    assert [(s.cloud_cover, s.cloud_source) for s in out] == [(50.0, "estimate"), (70.0, "eo:cloud_cover"), (0.0, "estimate")]


def test_select_estimates_only_the_scenes_in_the_date_range(scene_half_cloud_quarter_nodata_cog):
    # Outside the range and unreadable: it would raise if it were read.
    unreadable = Scene.from_url("/nowhere/T31TCJ_20220101T104629_TCI.tif")
    result = select(
        [unreadable, Scene.from_url(scene_half_cloud_quarter_nodata_cog)], Selection(date(2023, 1, 1), None, 40)
    )
    assert result.kept == ()
    assert [d.reason for d in result.dropped] == ["before start 2023-01-01", "cloud cover 50.0% (estimate) > 40%"]
    assert select([Scene.from_url(scene_half_cloud_quarter_nodata_cog)], Selection(max_cloud=50)).urls == (
        scene_half_cloud_quarter_nodata_cog,
    )
