"""Where a job's objects live, and the manifest's identity and round trip."""

from job_support import manifest

from temporal_median.base.grid import TileId
from temporal_median.base.storage import GsUrl
from temporal_median.job.manifest import Manifest
from temporal_median.job.paths import JobPaths, parse_error_object, parse_tile_object


def test_tile_and_error_object_names():
    work = GsUrl.parse("gs://tm-work")
    assert parse_tile_object(work, "tm-work", "jobs/job-abc/tiles/r001_c002.tif") == ("job-abc", TileId(1, 2), None)
    assert parse_tile_object(work, "tm-work", "jobs/job-abc/periods/2023-DJF/tiles/r001_c002.tif") == (
        "job-abc", TileId(1, 2), "2023-DJF")
    assert JobPaths.of("gs://tm-work", "job-abc").tile(TileId(1, 2), "2023-01").key == "jobs/job-abc/periods/2023-01/tiles/r001_c002.tif"
    assert parse_tile_object(work, "other", "jobs/job-abc/tiles/r001_c002.tif") is None
    assert parse_tile_object(work, "tm-work", "jobs/job-abc/manifest.json") is None
    assert parse_tile_object(work, "tm-work", "x/jobs/job-abc/tiles/r001_c002.tif") is None
    prefixed = GsUrl.parse("gs://tm-work/pipeline")
    assert parse_tile_object(prefixed, "tm-work", "pipeline/jobs/job-abc/tiles/r000_c000.tif") == ("job-abc", TileId(0, 0), None)
    paths = JobPaths.of("gs://tm-work", "job-abc")
    assert parse_error_object(paths.error(TileId(0, 1), 3).key) == (TileId(0, 1), 3)
    assert parse_error_object(paths.error(TileId(0, 1), None).key) == (TileId(0, 1), None)


def test_manifest_identity_ignores_creation_time():
    assert manifest().same_job(manifest(created="2027-01-01T00:00:00Z"))
    assert not manifest().same_job(manifest(method="per-band"))
    assert Manifest.from_dict(manifest().to_dict()) == manifest()


def test_how_the_scenes_were_chosen_does_not_make_another_job():
    searched = manifest(selection={"source": {"stac": {"url": "https://x/v1"}}, "criteria": {"max_cloud": 40}})
    listed = manifest(selection={"source": {"inputs": "gs://in/"}, "criteria": {}})
    assert searched.same_job(listed)
    assert not searched.same_job(manifest(datasets=("gs://in/a_TCI.tif",)))
