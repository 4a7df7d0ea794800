"""The job request fanout accepts: every field validated, a 400 naming the field otherwise."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from temporal_median.base.errors import InvalidRequest, RequestTooLarge
from temporal_median.base.grid import DEFAULT_TILE_SIZE, Grid
from temporal_median.base.methods import DEFAULT_METHOD, check_method
from temporal_median.base.settings import Settings
from temporal_median.base.storage import INPUT_SUFFIXES, GsUrl
from temporal_median.job.area import Area
from temporal_median.job.fields import REQUEST_FIELDS, names
from temporal_median.job.ids import check_input_url, check_job_id
from temporal_median.job.masks import Mask
from temporal_median.job.periods import check_periods
from temporal_median.scenes.selection import Selection
from temporal_median.scenes.stac import StacInput

#: The names a body may hold: those of the documented table (job/fields.py), nothing else.
_REQUEST_KEYS = names(REQUEST_FIELDS)


def _check_inputs(inputs, settings: Settings) -> str | tuple[str, ...]:
    """Rasters given directly: a prefix or directory to list, or a list of GeoTIFF URLs."""
    allow_local = settings.allow_local_paths
    if isinstance(inputs, str):
        inputs = check_input_url(inputs, allow_local)
        if inputs.startswith("https://"):
            raise InvalidRequest("an https:// input cannot be listed; give an explicit list of URLs")
        return inputs
    if not isinstance(inputs, list):
        raise InvalidRequest("'inputs' must be a gs:// prefix or an ItemCollection (string), or a list of URLs")
    if not inputs:
        raise InvalidRequest("'inputs' is an empty list")
    if len(inputs) > settings.max_inputs:
        raise RequestTooLarge(f"{len(inputs)} inputs; at most {settings.max_inputs} are allowed")
    for url in inputs:
        check_input_url(url, allow_local)
        if not url.lower().endswith(INPUT_SUFFIXES):
            raise InvalidRequest(f"inputs must be GeoTIFFs ending in .tif or .tiff, got {url!r}")
    if len(set(inputs)) != len(inputs):
        raise InvalidRequest("'inputs' lists the same file twice")
    return tuple(inputs)


@dataclass(frozen=True)
class JobRequest:
    """What a POST to fanout asks for, validated; the inputs are not listed yet."""

    inputs: str | tuple[str, ...] | None
    output: str
    tile_size: int = DEFAULT_TILE_SIZE
    method: str = DEFAULT_METHOD
    job_id: str | None = None
    #: Where STAC items come from (a search, or an ItemCollection in ``inputs``), else None.
    stac: StacInput | None = None
    selection: Selection = field(default_factory=Selection)
    #: The output grid asked for (bbox or intersects, crs, resolution), else None.
    area: Area | None = None
    #: Composites besides the whole range: "year" (none), "month", "quarter", "season", or ranges.
    periods: str | tuple = "year"
    #: The classification asset whose classes drop samples (cloud masks), else None.
    mask: Mask | None = None
    #: Only plan the job (windows, bytes, predicted time and cost): nothing written or published.
    dry_run: bool = False

    @classmethod
    def from_json(cls, body, settings: Settings) -> "JobRequest":
        """Validate a decoded JSON body; raise InvalidRequest naming the bad field."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        unknown = set(body) - _REQUEST_KEYS
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_REQUEST_KEYS))}")
        if isinstance(body.get("inputs"), dict):
            # inputs: {"stac": {...}, "asset": "visual"} is the same job as those fields at the top.
            nested = body["inputs"]
            if set(nested) - {"stac", "asset"} or "stac" not in nested or {"stac", "asset"} & set(body) - {"inputs"}:
                raise InvalidRequest("'inputs' as an object must be {\"stac\": {...}, \"asset\": ...}, given once")
            body = {**{k: v for k, v in body.items() if k != "inputs"}, **nested}
        if "inputs" not in body and "stac" not in body:
            raise InvalidRequest(
                "'inputs' is required: a gs:// prefix, a list of raster URLs, or a STAC ItemCollection; "
                "or give 'stac', a STAC API search"
            )
        selection = Selection.from_request(body)
        stac = StacInput.from_request(body, allow_local=settings.allow_local_paths, max_items_limit=settings.max_inputs)
        inputs = None if stac is not None else _check_inputs(body["inputs"], settings)
        output = body.get("output", settings.results_url)
        if not isinstance(output, str) or not output.startswith("gs://"):
            raise InvalidRequest(f"'output' must be a gs:// location, got {output!r}")
        GsUrl.parse(output)
        tile_size = body.get("tile_size", DEFAULT_TILE_SIZE)
        if not isinstance(tile_size, int) or isinstance(tile_size, bool):
            raise InvalidRequest(f"'tile_size' must be an integer, got {tile_size!r}")
        Grid(1, 1, tile_size)  # validates the range
        method = check_method(body.get("method", DEFAULT_METHOD))
        job_id = body.get("job_id")
        if job_id is not None:
            check_job_id(job_id)
        area = Area.from_request(body)
        periods, mask = check_periods(body.get("periods")), Mask.from_request(body.get("mask"))
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise InvalidRequest(f"'dry_run' must be true or false, got {dry_run!r}")
        return cls(inputs, output.rstrip("/"), tile_size, method, job_id, stac, selection, area, periods, mask, dry_run)

    def derive_job_id(self, datasets: tuple[str, ...]) -> str:
        """The given job id, or one derived from the listed inputs and the parameters (idempotent POSTs)."""
        if self.job_id:
            return self.job_id
        fields = {"datasets": list(datasets), "tile_size": self.tile_size, "method": self.method, "output": self.output}
        # Only when given: the ids of jobs without them stay what they were.
        if self.area is not None:
            fields["area"] = self.area.to_dict()
        if self.periods != "year":
            fields["periods"] = self.periods if isinstance(self.periods, str) else [f"{s}/{e}" for s, e in self.periods]
        if self.mask is not None:
            fields["mask"] = self.mask.to_dict()
        key = json.dumps(fields, sort_keys=True)
        return "job-" + hashlib.sha256(key.encode()).hexdigest()[:16]
