"""The job request's fields, nested fields and states as data: what the validator accepts and the docs list."""

from __future__ import annotations

from dataclasses import dataclass

from temporal_median.base.grid import DEFAULT_TILE_SIZE, MAX_TILE_SIZE, MIN_TILE_SIZE
from temporal_median.base.methods import DEFAULT_METHOD, METHODS
from temporal_median.job.masks import DEFAULT_ASSET as DEFAULT_MASK_ASSET
from temporal_median.job.masks import DEFAULT_EXCLUDE
from temporal_median.job.periods import KINDS
from temporal_median.scenes.scene import DEFAULT_ASSET


@dataclass(frozen=True)
class Field:
    """One field of a JSON object the API accepts: its name, JSON type, default and meaning."""

    name: str
    type: str
    #: What an absent field means, as a reader would write it (``None``: required or no default).
    default: str | None
    description: str


#: The fields of a ``POST /jobs`` body, in the order a reader meets them. The validator
#: (:meth:`temporal_median.job.request.JobRequest.from_json`) accepts exactly these names.
REQUEST_FIELDS: tuple[Field, ...] = (
    Field("inputs", "string | array of strings | object", None,
          "The scenes: a `gs://` prefix or (local cloud) a directory, listed for `.tif`/`.tiff` files directly "
          "under it, sorted by name, `*_SCL.tif` masks left out; or an explicit array of GeoTIFF URLs "
          "(`gs://`, `https://`) in acquisition order; or the location of a STAC ItemCollection "
          "(a `.json` URL or path); or an object `{\"stac\": {...}, \"asset\": ...}`, the same as those two "
          "fields at the top. Required unless `stac` is given, and not together with it."),
    Field("stac", "object", None,
          "A STAC API item search (the `stac` object's fields are listed below); the items' `asset` is read. "
          "Not together with `inputs`."),
    Field("asset", "string", f'"{DEFAULT_ASSET}"',
          "The key of the STAC items' asset holding the scene (a 3-band uint8 GeoTIFF). STAC inputs only."),
    Field("output", "string", "`TM_RESULTS_URL`",
          "The `gs://` location the job's results are written under (`<output>/<job_id>/`)."),
    Field("tile_size", "integer", str(DEFAULT_TILE_SIZE),
          f"Side of the square windows, in pixels ({MIN_TILE_SIZE} to {MAX_TILE_SIZE}): one median "
          "invocation per window."),
    Field("method", "string", f'"{DEFAULT_METHOD}"',
          "The median: " + ", ".join(f'`"{m}"`' for m in METHODS) + ". `luminance` keeps, per pixel, the valid "
          "sample of median brightness (R+G+B) whole, an observed colour; `per-band` ranks each band apart. "
          "A sample with a band at 0 (nodata) or 255 (saturated) is not valid."),
    Field("job_id", "string", "derived",
          "The job's id: 3 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit. By default "
          "a hash of the listed scenes and the parameters, so posting the same job again resumes it."),
    Field("start", "string (date)", None,
          "First acquisition day kept, ISO `YYYY-MM-DD`, inclusive. Absent: open."),
    Field("end", "string (date)", None,
          "Last acquisition day kept, ISO `YYYY-MM-DD`, inclusive. Absent: open."),
    Field("max_cloud", "number", None,
          "Highest cloud cover kept, percent (0-100): the item's `eo:cloud_cover`, else an estimate from "
          "the scene's saturated pixels. Absent: every scene is kept."),
    Field("bbox", "array of 4 numbers", None,
          "The output area `[west, south, east, north]` in WGS 84 degrees (not across the antimeridian). "
          "Absent (and no `intersects`): the scenes' own grid, or the union of their footprints."),
    Field("intersects", "object (GeoJSON)", None,
          "The output area as a GeoJSON `Polygon` or `MultiPolygon`; its bounds are the area. Not together "
          "with `bbox`."),
    Field("crs", "string", None,
          "The output CRS, an EPSG code such as `\"EPSG:32631\"`. Absent: the CRS the scenes share, else the "
          "UTM zone of the area's centre."),
    Field("resolution", "number", None,
          "The output pixel size, in the CRS's units. Absent: the finest of the scenes'."),
    Field("periods", "string | array of strings", f'"{KINDS[0]}"',
          "Composites besides the whole range: " + ", ".join(f'`"{k}"`' for k in KINDS) + " (the whole "
          "range alone), or explicit ranges `\"2023-03-01/2023-05-31,2023-06-01/2023-08-31\"` (or an array "
          "of `START/END` strings), none overlapping. Every scene then needs an acquisition time."),
    Field("mask", "object | string", None,
          "Drop samples by a classification raster (cloud masks; the `mask` object's fields are listed below). "
          "A string is the asset alone. Absent: no mask."),
    Field("dry_run", "boolean", "false",
          "Only plan the job: windows, bytes, predicted wall time and cost, answered with 200. Nothing "
          "is written or published."),
)

#: The fields of the request's ``stac`` object (:class:`temporal_median.scenes.stac.StacSearch`).
STAC_FIELDS: tuple[Field, ...] = (
    Field("url", "string", None, "The root of a STAC API with item search (`https://`; `http://` on loopback)."),
    Field("collections", "array of strings", None, "The collections searched (non-empty)."),
    Field("bbox", "array of 4 numbers", None, "Items intersecting `[west, south, east, north]` (degrees)."),
    Field("intersects", "object (GeoJSON)", None, "Items intersecting a GeoJSON geometry. Not with `bbox`."),
    Field("datetime", "string", None,
          "One time or an interval `\"2023-01-01/2023-12-31\"` (RFC 3339 times or dates, `..` for open)."),
    Field("query", "object", None, "A Query extension object, passed to the API."),
    Field("filter", "object", None, "A CQL2-JSON expression, passed to the API."),
    Field("max_items", "integer", "`TM_MAX_INPUTS`",
          "Most items the search may bring (1 to `TM_MAX_INPUTS`); a search matching more is refused."),
)

#: The fields of the request's ``mask`` object (:class:`temporal_median.job.masks.Mask`).
MASK_FIELDS: tuple[Field, ...] = (
    Field("asset", "string", f'"{DEFAULT_MASK_ASSET}"',
          "The items' classification asset (matched case-insensitively), or for plain files the sidecar "
          "named like the scene with `_SCL` in place of `_TCI`, beside it or in `scl/`."),
    Field("exclude", "array of integers", str(list(DEFAULT_EXCLUDE)),
          "The classes whose samples are dropped (Sentinel-2 SCL classes, 0-11)."),
)

#: A job's ``state`` in ``GET /jobs/<id>``, in the order the status checks them.
JOB_STATES: tuple[tuple[str, str], ...] = (
    ("complete", "Every composite is published: the mosaic's record and STAC collection exist."),
    ("cancelled", "`DELETE /jobs/<id>` marked the job; median skips its remaining windows, no mosaic is built. "
     "Posting the job again resumes it."),
    ("failed", "Every window is done or failed, and at least one failed for good (a permanent error, or "
     "`TM_MAX_ATTEMPTS` attempts used up); see `failed`."),
    ("mosaic-failed", "Every window is done but the mosaic recorded an error; see `mosaic.error`."),
    ("mosaicking", "Every window is done; the mosaic is being built."),
    ("running", "Windows are still being computed (or retried; see `retrying`)."),
)

#: The ``state`` of the mosaic and of each period's composite in ``GET /jobs/<id>``.
MOSAIC_STATES: tuple[tuple[str, str], ...] = (
    ("complete", "Its record is written: the COG, VRT and quicklook are in place."),
    ("error", "The mosaic recorded an error (the `error` field tells it)."),
    ("pending", "Not built yet."),
)


def names(fields: tuple[Field, ...]) -> frozenset[str]:
    """The names of a table's fields."""
    return frozenset(f.name for f in fields)

