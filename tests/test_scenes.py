"""Scenes and acquisition times: Sentinel-2 file names, STAC datetimes, eo:cloud_cover."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from temporal_median.base.clock import parse_time, parse_time_or_none
from temporal_median.base.errors import MalformedMessage
from temporal_median.scenes.items import scene_from_item
from temporal_median.scenes.scene import Scene, time_from_name

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stac"


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------------------------
# Acquisition times
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("gs://tb-be-bigdata/t31tcj/T31TCJ_20230709T104629_TCI.tif", at("2023-07-09").replace(minute=46, second=29)),
        ("/data/T31TCJ_20230101T000000_TCI.tiff", at("2023-01-01", 0)),
        (
            (
                "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/sentinel-2-c1-l2a/31/T/CJ/2023/7/"
                "S2A_T31TCJ_20230709T104633_L2A/TCI.tif"
            ),
            at("2023-07-09").replace(minute=46, second=33),
        ),
        # A product name has the sensing time first, then the processing time: the first wins.
        ("/x/S2A_MSIL2A_20230709T104631_N0509_R051_T31TCJ_20230709T165001_TCI.tif", at("2023-07-09").replace(minute=46, second=31)),
    ],
)
def test_acquisition_time_from_sentinel2_names(url, expected):
    assert time_from_name(url) == expected
    assert Scene.from_url(url).datetime == expected


@pytest.mark.parametrize("url", ["/data/scene.tif", "/data/T31TCJ_20231399T104629_TCI.tif", "/data/x20230709T104629y.tif"])
def test_names_without_a_valid_stamp_give_no_time(url):
    assert time_from_name(url) is None


def test_stac_datetimes_are_utc_and_tolerate_nanoseconds():
    assert parse_time_or_none("2023-07-09T10:56:50.418123456Z") == datetime(2023, 7, 9, 10, 56, 50, 418123, UTC)
    assert parse_time_or_none("2023-07-09T12:56:50+02:00") == datetime(2023, 7, 9, 10, 56, 50, tzinfo=UTC)
    assert parse_time_or_none("2023-07-09T10:56:50") == datetime(2023, 7, 9, 10, 56, 50, tzinfo=UTC)
    assert parse_time_or_none(None) is None and parse_time_or_none("yesterday") is None


@pytest.mark.parametrize("text", ["yesterday", "", None, "2023-13-01T00:00:00Z"])
def test_messages_times_are_parsed_by_the_same_rule_and_refused_when_malformed(text):
    with pytest.raises(MalformedMessage, match="not a timestamp"):
        parse_time(text)
    assert parse_time("2023-07-09T12:56:50.418123456+02:00") == datetime(2023, 7, 9, 10, 56, 50, 418123, UTC)


def test_item_datetime_wins_over_the_file_name():
    item = load_fixture("earth-search-c1-T31TCJ.json")
    scene = scene_from_item(item)
    assert scene.datetime == datetime(2023, 7, 9, 10, 56, 50, 418000, UTC)
    assert (scene.cloud_cover, scene.cloud_source, scene.item_id) == (12.345678, "eo:cloud_cover", item["id"])
    # Without a datetime (only start_datetime) or without either, the fallbacks apply.
    props = item["properties"]
    props.pop("datetime")
    props["start_datetime"] = "2023-07-09T10:56:00Z"
    assert scene_from_item(item).datetime == datetime(2023, 7, 9, 10, 56, tzinfo=UTC)
    props.pop("start_datetime")
    assert scene_from_item(item).datetime == datetime(2023, 7, 9, 10, 46, 33, tzinfo=UTC)  # from the folder name


def test_a_bad_eo_cloud_cover_is_treated_as_unknown():
    item = load_fixture("earth-search-c1-T31TCJ.json")
    for bad in (-1, 140, "12", True, None):
        item["properties"]["eo:cloud_cover"] = bad
        scene = scene_from_item(item)
        assert (scene.cloud_cover, scene.cloud_source) == (None, None)
