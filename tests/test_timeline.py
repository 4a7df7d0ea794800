"""Timelines: attempt records (median), their collection into job.json (mosaic), and the PNG drawn from them."""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pipeline_support import full_cloud, make_series

from temporal_median.base import storage
from temporal_median.base.clock import parse_time
from temporal_median.base.errors import StorageUnavailable
from temporal_median.base.storage import GsUrl, ObjectInfo
from temporal_median.job.paths import JobPaths
from temporal_median.plan import attempts as attempt_records
from temporal_median.plan.timeline import COLORS, MOSAIC_COLOR, REFUSED_ROW, draw_timeline

# A job recorded on the local cloud (8 scenes of 1100 x 700, tiles of 512: 6 windows on the 2
# median instances of a 2-core machine), its job.json trimmed to what a timeline is drawn from.
RECORDED = {
    "job_id": "job-5e40b673d52dd406", "tiles": 6, "seconds_mosaic": 2.392,
    "created": "2026-12-02T18:36:49.359125Z", "completed": "2026-12-02T18:37:00.829442Z",
    "mosaic_started": "2026-12-02T18:36:58.437837Z",
    "attempts": [
        {"tile": "r000_c001", "attempt": 1, "delivery_attempt": 1, "instance": "median-00001-loc/vm:4403:fcb06f",
         "started": "2026-12-02T18:36:53.705719Z", "ended": "2026-12-02T18:36:56.522512Z", "outcome": "written",
         "bytes_read": 2098349, "seconds": 5.278},
        {"tile": "r000_c000", "attempt": 1, "delivery_attempt": 1, "instance": "median-00001-loc/vm:4407:c6aa51",
         "started": "2026-12-02T18:36:54.347656Z", "ended": "2026-12-02T18:36:56.980859Z", "outcome": "written",
         "bytes_read": 2430615, "seconds": 5.71},
        {"tile": "r000_c002", "attempt": 1, "delivery_attempt": 1, "instance": "median-00001-loc/vm:4403:fcb06f",
         "started": "2026-12-02T18:36:56.650882Z", "ended": "2026-12-02T18:36:56.902865Z", "outcome": "written",
         "bytes_read": 284283, "seconds": 0.315},
        {"tile": "r001_c000", "attempt": 1, "delivery_attempt": 1, "instance": "median-00001-loc/vm:4403:fcb06f",
         "started": "2026-12-02T18:36:57.019504Z", "ended": "2026-12-02T18:36:57.370513Z", "outcome": "written",
         "bytes_read": 1082854, "seconds": 0.426},
        {"tile": "r001_c001", "attempt": 1, "delivery_attempt": 1, "instance": "median-00001-loc/vm:4407:c6aa51",
         "started": "2026-12-02T18:36:57.168769Z", "ended": "2026-12-02T18:36:57.514451Z", "outcome": "written",
         "bytes_read": 891000, "seconds": 0.45},
        {"tile": "r001_c002", "attempt": 1, "delivery_attempt": 1, "instance": "median-00001-loc/vm:4403:fcb06f",
         "started": "2026-12-02T18:36:57.499711Z", "ended": "2026-12-02T18:36:57.731030Z", "outcome": "written",
         "bytes_read": 128459, "seconds": 0.311},
    ],
}


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def row_pixels(png: Path, info: dict, label: str, colour: str | None = None) -> int:
    """Pixels of one row inside the plot that are not white (or that are ``colour``, within 8)."""
    row = next(r for r in info["rows"] if r["label"] == label)
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    band = image[row["top"] + 2:row["bottom"] - 1, info["left"] + 2:info["right"] - 2]
    if colour is None:
        return int(np.count_nonzero(np.any(band < 250, axis=-1)))
    return int(np.count_nonzero(np.all(np.abs(band - rgb(colour)) <= 8, axis=-1)))


def test_a_recorded_job_is_drawn_a_row_per_instance_with_its_bars(tmp_path):
    png = tmp_path / "timeline.png"
    info = draw_timeline(RECORDED, str(png))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (info["width"], info["height"]) == (1100, 324)
    labels = [r["label"] for r in info["rows"]]
    assert labels == ["vm:4403:fcb06f", "vm:4407:c6aa51", "mosaic"]  # by first start; the mosaic last
    # Instance 4403 ran 4 attempts for 2.82 + 0.25 + 0.35 + 0.23 s of the 11.5 s; 4407 two, 2.63 + 0.35 s.
    plot_width = info["right"] - info["left"]
    busy = {label: row_pixels(png, info, label, COLORS["written"]) for label in labels[:2]}
    height = info["rows"][0]["bottom"] - info["rows"][0]["top"] - 3
    assert busy["vm:4403:fcb06f"] == pytest.approx(3.65 / 11.8 * plot_width * height, rel=0.15)
    assert busy["vm:4407:c6aa51"] == pytest.approx(2.98 / 11.8 * plot_width * height, rel=0.15)
    assert row_pixels(png, info, "mosaic", MOSAIC_COLOR) == pytest.approx(2.39 / 11.8 * plot_width * height, rel=0.15)
    assert row_pixels(png, info, "mosaic", COLORS["written"]) == 0


def test_failed_retried_and_refused_attempts_are_marked(tmp_path):
    record = copy.deepcopy(RECORDED)
    record["attempts"] += [
        {"tile": "r001_c002", "attempt": 2, "instance": "rev/host:9:aaaaaa", "started": "2026-12-02T18:36:50Z",
         "ended": "2026-12-02T18:36:52Z", "outcome": "retried"},
        {"tile": "r001_c002", "attempt": 3, "instance": "rev/host:9:aaaaaa", "started": "2026-12-02T18:36:52.5Z",
         "ended": "2026-12-02T18:36:53Z", "outcome": "failed"},
        {"tile": "r000_c000", "attempt": None, "instance": None, "started": "2026-12-02T18:36:50Z",
         "ended": "2026-12-02T18:36:51Z", "outcome": "refused-429"},
        # Claimed, never ended (its instance died): drawn until the tile's next attempt.
        {"tile": "r000_c001", "attempt": 0, "instance": "rev/host:10:bbbbbb", "started": "2026-12-02T18:36:51Z",
         "ended": None, "outcome": "unfinished"},
    ]
    png = tmp_path / "marked.png"
    info = draw_timeline(record, str(png))
    labels = [r["label"] for r in info["rows"]]
    assert labels[0] == REFUSED_ROW and labels[-1] == "mosaic" and "host:9:aaaaaa" in labels
    assert row_pixels(png, info, REFUSED_ROW, COLORS["refused-429"]) > 0
    assert row_pixels(png, info, "host:9:aaaaaa", COLORS["failed"]) > 0
    assert row_pixels(png, info, "host:9:aaaaaa", COLORS["retried"]) > 0
    assert row_pixels(png, info, "host:10:bbbbbb", COLORS["unfinished"]) > 0
    assert row_pixels(png, info, "host:9:aaaaaa", COLORS["written"]) == 0


def test_a_simulated_run_is_drawn_the_same_way(tmp_path):
    from temporal_median.plan.plan import plan_geometry

    plan = plan_geometry(50, 4096, 4096)
    record = plan.simulation.to_record()
    info = draw_timeline(record, str(tmp_path / "simulated.png"))
    used = {a.instance for a in plan.simulation.attempts if a.number is not None}
    assert len(info["rows"]) == len(used) + 1 + (plan.simulation.figures["refused_429"] > 0)
    assert all(row_pixels(tmp_path / "simulated.png", info, r["label"]) > 0 for r in info["rows"])


def test_the_command_draws_a_job_json_file(tmp_path, capsys):
    from temporal_median_cli.timeline import main

    (tmp_path / "job.json").write_text(json.dumps(RECORDED))
    assert main([str(tmp_path / "job.json"), "-o", str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").stat().st_size > 0 and "6 attempts on 2 instances" in capsys.readouterr().out
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in RECORDED.items() if k != "attempts"}))
    assert main([str(tmp_path / "old.json"), "-o", str(tmp_path / "old.png")]) == 1


def test_claims_are_joined_with_the_end_record_that_answers_them(monkeypatch):
    paths = JobPaths.of("gs://work", "job-abc")
    objects = {
        paths.attempt("r000_c000", 1): {"started": "2026-01-01T00:00:01Z", "instance": "a", "token": "t1"},
        attempt_records.done_url(paths, "r000_c000", 1): {"token": "t1", "ended": "2026-01-01T00:00:02Z",
                                                          "outcome": "retried", "error": "boom"},
        paths.attempt("r000_c000", 2): {"started": "2026-01-01T00:00:03Z", "instance": "b", "token": "t2"},
        # An older run's end record (a re-posted job reuses attempt numbers): not this claim's.
        attempt_records.done_url(paths, "r000_c001", 1): {"token": "old", "ended": "x", "outcome": "written"},
        paths.attempt("r000_c001", 1): {"started": "2026-01-01T00:00:00Z", "instance": "c", "token": "t3"},
    }
    monkeypatch.setattr(storage, "list_objects",
                        lambda prefix: iter(sorted((ObjectInfo(url, 1, {}) for url in objects),
                                                   key=lambda info: info.url.key)))
    monkeypatch.setattr(storage, "read_json", lambda url: objects.get(url))
    records, truncated = attempt_records.collect_attempts(paths, tiles=2)
    assert not truncated
    assert [(r["tile"], r["attempt"], r["outcome"]) for r in records] == [
        ("r000_c001", 1, "unfinished"), ("r000_c000", 1, "retried"), ("r000_c000", 2, "unfinished")]
    assert records[1]["ended"] == "2026-01-01T00:00:02Z" and records[1]["error"] == "boom"
    assert records[0]["ended"] is None and records[0]["instance"] == "c"
    monkeypatch.setattr(attempt_records, "RECORDS_PER_TILE", 1)
    assert attempt_records.collect_attempts(paths, tiles=2)[1] is True  # 5 records, 2 read: cut short


def test_recording_an_attempts_end_never_fails_the_tile(monkeypatch):
    from temporal_median.functions import median

    def unavailable(url, value):
        raise StorageUnavailable("storage is down")

    monkeypatch.setattr(storage, "create_json", unavailable)
    paths = JobPaths.of("gs://work", "job-abc")
    median._end_attempt(paths, "r000_c000", 1, {"token": "t"}, "written", time.monotonic(), bytes_read=5)


@pytest.mark.slow
def test_a_job_records_its_attempts_and_draws_its_timeline(tmp_path):
    paths = make_series(tmp_path / "series", scenes=6, width=1100, height=700, seed=3)
    with full_cloud(tmp_path / "cloud") as cloud:
        fanout = cloud.function_url("fanout").rstrip("/")
        body = json.dumps({"inputs": str(Path(paths[0]).parent), "tile_size": 512}).encode()
        request = urllib.request.Request(f"{fanout}/jobs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        job = json.loads(urllib.request.urlopen(request, timeout=120).read())
        deadline = time.monotonic() + 180
        while True:
            status = json.loads(urllib.request.urlopen(f"{fanout}/jobs/{job['job_id']}", timeout=60).read())
            if status["state"] in ("complete", "failed", "mosaic-failed"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert status["state"] == "complete", status
        record = status["mosaic"]["figures"]
        pids = {i["pid"] for i in cloud.instances("median")}
        attempts = record["attempts"]
        assert record["attempts_truncated"] is False
        assert sorted(a["tile"] for a in attempts) == sorted(f"r{r:03d}_c{c:03d}" for r in range(2) for c in range(3))
        for a in attempts:
            assert a["outcome"] == "written" and a["attempt"] == 1 and a["bytes_read"] > 0
            assert a["instance"].startswith("median-00001-loc/") and int(a["instance"].split(":")[-2]) in pids
            times = [parse_time(record["created"]), parse_time(a["started"]), parse_time(a["ended"]),
                     parse_time(record["mosaic_started"]), parse_time(record["completed"])]
            assert times == sorted(times)
        # Drawn after job.json, beside it.
        url = GsUrl.parse(record["outputs"]["timeline.png"])
        while (png := storage.read_bytes(url)) is None:
            assert time.monotonic() < deadline + 60, "no timeline.png"
            time.sleep(0.5)
        assert png.startswith(b"\x89PNG")
