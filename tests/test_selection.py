"""Selection: date range and cloud ceiling validated field by field; kept and dropped with reasons; order."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from temporal_median.base.errors import InvalidRequest
from temporal_median.scenes.scene import Scene
from temporal_median.scenes.selection import Selection, select

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stac"


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------------------------
# Selection: validation
# --------------------------------------------------------------------------------------------


def test_selection_from_request():
    selection = Selection.from_request({"inputs": "gs://b/p/", "start": "2023-06-01", "end": "2023-08-31", "max_cloud": 50})
    assert selection == Selection(date(2023, 6, 1), date(2023, 8, 31), 50.0)
    assert Selection.from_request({}) == Selection() and not Selection().has_dates
    assert Selection.from_request({"start": None, "max_cloud": None}) == Selection()
    assert Selection.from_request({"end": "2023-01-01"}).to_dict() == {"start": None, "end": "2023-01-01", "max_cloud": None}
    assert Selection.from_request({"start": "2023-06-01", "end": "2023-06-01", "max_cloud": 0}).max_cloud == 0.0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"start": "2023-13-01"}, "'start'"),
        ({"start": "June 1st"}, "'start'"),
        ({"end": 20230601}, "'end'"),
        ({"start": "2023-09-01", "end": "2023-06-01"}, "'start' (2023-09-01) is after 'end'"),
        ({"max_cloud": -1}, "'max_cloud'"),
        ({"max_cloud": 100.5}, "'max_cloud'"),
        ({"max_cloud": "50"}, "'max_cloud'"),
        ({"max_cloud": True}, "'max_cloud'"),
        ({"max_cloud": float("nan")}, "'max_cloud'"),
    ],
)
def test_selection_rejects_bad_fields_naming_them(body, field):
    with pytest.raises(InvalidRequest, match=re.escape(field)):
        Selection.from_request(body)


def test_stac_datetime_of_a_selection_narrows_a_search():
    assert Selection(date(2023, 6, 1), date(2023, 8, 31)).stac_datetime() == (
        "2023-06-01T00:00:00Z/2023-08-31T23:59:59.999999Z"
    )
    assert Selection(None, date(2023, 8, 31)).stac_datetime().startswith("../")
    assert Selection(max_cloud=10).stac_datetime() is None


# --------------------------------------------------------------------------------------------
# Selection: kept, dropped, order
# --------------------------------------------------------------------------------------------


@pytest.fixture
def summer_and_winter_scenes():
    """Five scenes around a June-August window, with STAC or estimated cloud covers."""
    return [
        Scene("gs://b/may.tif", at("2023-05-31", 23), 10.0, "eo:cloud_cover", "may"),
        Scene("gs://b/june-first.tif", at("2023-06-01", 0), 83.0, "eo:cloud_cover", "june-first"),
        Scene("gs://b/july.tif", at("2023-07-15"), 50.0, "estimate"),
        Scene("gs://b/august-last.tif", at("2023-08-31", 23), 49.9, "eo:cloud_cover"),
        Scene("gs://b/september.tif", at("2023-09-01", 0), 0.0, "eo:cloud_cover"),
    ]


def test_kept_and_dropped_with_reasons(summer_and_winter_scenes):
    result = Selection(date(2023, 6, 1), date(2023, 8, 31), 50).apply(summer_and_winter_scenes)
    # Both ends are inclusive; 50% is not above a 50% ceiling.
    assert result.urls == ("gs://b/july.tif", "gs://b/august-last.tif")
    assert [(d.scene.url, d.reason) for d in result.dropped] == [
        ("gs://b/may.tif", "before start 2023-06-01"),
        ("gs://b/september.tif", "after end 2023-08-31"),
        ("gs://b/june-first.tif", "cloud cover 83.0% > 50%"),
    ]
    barely = Selection(max_cloud=49.9).apply([Scene("gs://b/x.tif", at("2023-07-01"), 49.94, "eo:cloud_cover")])
    assert barely.dropped[0].reason == "cloud cover 49.94% > 49.9%"
    estimated = Selection(max_cloud=20).apply(summer_and_winter_scenes)
    assert "cloud cover 50.0% (estimate) > 20%" in [d.reason for d in estimated.dropped]
    record = result.to_dict()
    assert record["dropped"][2]["reason"] == "cloud cover 83.0% > 50%" and record["kept"][0]["datetime"] == "2023-07-15T10:00:00Z"


def test_an_empty_selection_keeps_everything_in_acquisition_order(summer_and_winter_scenes):
    shuffled = [summer_and_winter_scenes[i] for i in (3, 0, 4, 2, 1)]
    result = Selection().apply(shuffled)
    assert result.kept == tuple(summer_and_winter_scenes) and result.dropped == ()


def test_ties_in_acquisition_time_go_by_url():
    same_time = [Scene(f"gs://b/{name}.tif", at("2023-07-01")) for name in ("c", "a", "b")]
    assert Selection().apply(same_time).urls == ("gs://b/a.tif", "gs://b/b.tif", "gs://b/c.tif")


def test_scenes_without_any_time_keep_their_given_order():
    undated = [Scene.from_url(f"/data/{name}.tif") for name in ("z", "a", "m")]
    assert Selection(max_cloud=None).apply(undated).urls == ("/data/z.tif", "/data/a.tif", "/data/m.tif")


def test_a_date_range_needs_every_scene_dated():
    scenes = [Scene.from_url("/data/T31TCJ_20230709T104629_TCI.tif"), Scene.from_url("/data/mystery.tif")]
    with pytest.raises(InvalidRequest, match=r"mystery\.tif has no acquisition time"):
        Selection(start=date(2023, 1, 1)).apply(scenes)


def test_dated_and_undated_scenes_cannot_be_ordered_together():
    scenes = [Scene.from_url("/data/T31TCJ_20230709T104629_TCI.tif"), Scene.from_url("/data/mystery.tif")]
    with pytest.raises(InvalidRequest, match=r"1 of 2 scenes have no acquisition time.*mystery\.tif"):
        Selection().apply(scenes)


def test_the_same_href_twice_is_one_scene_and_the_other_a_duplicate():
    # Earth Search lists one TCI.tif in two collections (v0 and v1), as two items.
    url = "/data/T31TCJ_20230709T104629_TCI.tif"
    v1 = replace(Scene.from_url(url), item_id="S2A_31TCJ_20230709_0_L2A")
    v0 = replace(Scene.from_url(url), item_id="S2A_T31TCJ_20230709T104633_L2A")
    other = Scene.from_url("/data/T31TCJ_20230714T104631_TCI.tif")
    result = Selection().apply([v1, other, v0])
    assert [s.item_id for s in result.kept] == ["S2A_31TCJ_20230709_0_L2A", None]
    assert [(d.scene.item_id, d.reason) for d in result.dropped] == [
        ("S2A_T31TCJ_20230709T104633_L2A", "duplicate of S2A_31TCJ_20230709_0_L2A (same href)")
    ]
    assert select([v1, v0], Selection()).kept == (v1,)


def test_a_ceiling_without_cloud_cover_is_refused_by_apply():
    with pytest.raises(InvalidRequest, match="no cloud cover"):
        Selection(max_cloud=10).apply([Scene.from_url("/data/T31TCJ_20230709T104629_TCI.tif")])
