"""The job request: defaults, validation naming the bad field, deterministic job ids."""

import pytest

from temporal_median.base.errors import InvalidRequest, RequestTooLarge
from temporal_median.base.settings import Settings
from temporal_median.job.request import JobRequest

SETTINGS = Settings()
LOCAL = Settings(allow_local_paths=True, max_inputs=3)


def test_request_defaults_and_prefix():
    request = JobRequest.from_json({"inputs": "gs://tb-be-bigdata/t31tcj/"}, SETTINGS)
    assert (request.tile_size, request.method, request.output) == (1024, "luminance", "gs://tm-results")


@pytest.mark.parametrize(
    "body, match",
    [
        ([], "JSON object"),
        ({}, "'inputs' is required"),
        ({"inputs": "gs://b/p", "colour": 1}, "unknown field"),
        ({"inputs": "/data/series"}, "local paths are not allowed"),
        ({"inputs": "s3://bucket/x"}, "gs:// or https://"),
        ({"inputs": "https://host/dir/"}, "cannot be listed"),
        ({"inputs": []}, "empty list"),
        ({"inputs": ["gs://b/a.tif", "gs://b/a.tif"]}, "twice"),
        ({"inputs": ["gs://b/a.jp2"]}, ".tif"),
        ({"inputs": "gs://b/p", "tile_size": 100}, "tile_size"),
        ({"inputs": "gs://b/p", "tile_size": "1024"}, "tile_size"),
        ({"inputs": "gs://b/p", "method": "mean"}, "luminance, per-band"),
        ({"inputs": "gs://b/p", "output": "/tmp/out"}, "output"),
        ({"inputs": "gs://b/p", "job_id": "Bad Id"}, "job_id"),
        ({"inputs": "gs://b/../p"}, "'..'"),
    ],
)
def test_bad_requests_name_the_problem(body, match):
    with pytest.raises(InvalidRequest, match=match):
        JobRequest.from_json(body, SETTINGS)


def test_too_many_inputs_is_its_own_error():
    with pytest.raises(RequestTooLarge):
        JobRequest.from_json({"inputs": [f"/d/{i}.tif" for i in range(4)]}, LOCAL)


def test_local_paths_allowed_only_when_configured():
    request = JobRequest.from_json({"inputs": "/data/series"}, LOCAL)
    assert request.inputs == "/data/series"


def test_job_id_is_deterministic_and_depends_on_inputs_and_parameters():
    request = JobRequest.from_json({"inputs": "gs://b/p/"}, SETTINGS)
    datasets = ("gs://b/p/a.tif", "gs://b/p/b.tif")
    assert request.derive_job_id(datasets) == request.derive_job_id(datasets)
    assert request.derive_job_id(datasets) != request.derive_job_id(datasets[:1])
    per_band = JobRequest.from_json({"inputs": "gs://b/p/", "method": "per-band"}, SETTINGS)
    assert per_band.derive_job_id(datasets) != request.derive_job_id(datasets)
    named = JobRequest.from_json({"inputs": "gs://b/p/", "job_id": "my-job"}, SETTINGS)
    assert named.derive_job_id(datasets) == "my-job"


def test_selection_fields_and_a_stac_search_are_part_of_the_request():
    search = {"url": "https://earth-search.aws.element84.com/v1", "collections": ["sentinel-2-c1-l2a"],
              "datetime": "2023-01-01/2023-12-31"}
    top = JobRequest.from_json({"stac": search, "asset": "visual", "start": "2023-06-01", "max_cloud": 40}, SETTINGS)
    nested = JobRequest.from_json({"inputs": {"stac": search, "asset": "visual"}, "start": "2023-06-01", "max_cloud": 40}, SETTINGS)
    assert top == nested and top.inputs is None and top.stac.asset == "visual"
    assert str(top.selection.start) == "2023-06-01" and top.selection.max_cloud == 40


def test_an_item_collection_is_a_stac_input_and_a_prefix_is_not():
    assert JobRequest.from_json({"inputs": "gs://b/series/items.json"}, SETTINGS).stac is not None
    assert JobRequest.from_json({"inputs": "gs://b/series/"}, SETTINGS).stac is None


@pytest.mark.parametrize(
    "body, match",
    [
        ({"inputs": {"stac": {}, "colour": 1}}, "'inputs' as an object"),
        ({"inputs": {"asset": "visual"}}, "'inputs' as an object"),
        ({"inputs": "gs://b/p", "stac": {"url": "https://x/v1", "collections": ["c"]}}, "not both"),
        ({"stac": {"url": "ftp://x/v1", "collections": ["c"]}}, "url"),
    ],
)
def test_bad_stac_requests_name_the_problem(body, match):
    with pytest.raises(InvalidRequest, match=match):
        JobRequest.from_json(body, SETTINGS)
