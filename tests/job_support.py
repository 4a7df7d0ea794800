"""Helpers shared by the job tests: a manifest to vary, and the stored event fixtures."""

import json
from pathlib import Path

from temporal_median.base.grid import Grid, RasterGrid
from temporal_median.job.manifest import Manifest

EVENTS = Path(__file__).parent / "fixtures" / "events"


def load(name):
    """A stored real event (tests/fixtures/events/NAME)."""
    return json.loads((EVENTS / name).read_text())


def manifest(**overrides):
    values = dict(
        job_id="job-0123456789abcdef",
        datasets=("gs://in/a_TCI.tif", "gs://in/b_TCI.tif"),
        grid=Grid(3000, 2000, 1024),
        raster=RasterGrid(3000, 2000, "EPSG:32631", (10.0, 0.0, 300000.0, 0.0, -10.0, 4900020.0), (512, 512)),
        method="luminance",
        output="gs://tm-results",
        created="2026-11-25T10:00:00Z",
        work="gs://tm-work",
    )
    values.update(overrides)
    return Manifest(**values)
