"""Fixtures shared by the raster tests (defined in raster_support.py): `series`, `odd_scenes` and `fake_gcs`."""

from raster_support import fake_gcs, odd_scenes, series  # noqa: F401 - registered as fixtures for every test module
