"""Where a job's objects live: manifest, tiles, error records, lock, and its results."""

from __future__ import annotations

import re
from dataclasses import dataclass

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import TileId
from temporal_median.base.storage import GsUrl
from temporal_median.job.ids import check_job_id


@dataclass(frozen=True)
class JobPaths:
    """Where a job's objects live: manifest, tiles and error records under the work location."""

    work: GsUrl
    job_id: str

    @classmethod
    def of(cls, work_url: str, job_id: str) -> "JobPaths":
        return cls(GsUrl.parse(work_url), check_job_id(job_id))

    @property
    def root(self) -> GsUrl:
        return self.work.join("jobs", self.job_id)

    @property
    def manifest(self) -> GsUrl:
        return self.root.join("manifest.json")

    @property
    def tiles(self) -> GsUrl:
        return GsUrl(self.work.bucket, self.root.join("tiles").key + "/")

    def tile(self, tile: TileId, period: str | None = None) -> GsUrl:
        """A window's tile: the whole range's, or a period's (``periods/<period>/tiles/``)."""
        return self.composite(period).join("tiles", f"{tile}.tif")

    def composite(self, period: str | None) -> GsUrl:
        """Where one composite's objects live: the job's root, or ``periods/<period>/``."""
        return self.root if period is None else self.root.join("periods", check_period_name(period))

    def tiles_of(self, period: str | None) -> GsUrl:
        """Prefix of one composite's tiles."""
        return GsUrl(self.work.bucket, self.composite(period).join("tiles").key + "/")

    def lock_of(self, period: str | None) -> GsUrl:
        """One composite's mosaic lock: each period's mosaic is an invocation of its own."""
        return self.composite(period).join("mosaic.lock")

    def mosaic_error_of(self, period: str | None) -> GsUrl:
        return self.composite(period).join("mosaic-error.json")

    @property
    def errors(self) -> GsUrl:
        return GsUrl(self.work.bucket, self.root.join("errors").key + "/")

    def error(self, tile: TileId, attempt: int | None) -> GsUrl:
        suffix = "permanent" if attempt is None else f"attempt-{attempt:03d}"
        return self.root.join("errors", f"{tile}.{suffix}.json")

    @property
    def attempts(self) -> GsUrl:
        """Prefix of the attempt records: one per execution of a window, claimed when it starts."""
        return GsUrl(self.work.bucket, self.root.join("attempts").key + "/")

    def attempts_of(self, tile: TileId) -> GsUrl:
        """Prefix of one tile's attempt records."""
        return GsUrl(self.work.bucket, f"{self.attempts.key}{tile}.")

    def attempt(self, tile: TileId, number: int) -> GsUrl:
        return self.root.join("attempts", f"{tile}.{number:03d}.json")

    @property
    def cancelled(self) -> GsUrl:
        return self.root.join("cancelled.json")

    @property
    def lock(self) -> GsUrl:
        return self.root.join("mosaic.lock")

    @property
    def mosaic_error(self) -> GsUrl:
        return self.root.join("mosaic-error.json")

    #: Fanout's marker that asks mosaic to look at a job again (all tiles there, no results).
    RESUME = "resume.json"

    @property
    def resume(self) -> GsUrl:
        return self.root.join(self.RESUME)


#: The results of a job, by file name, with their content types; job.json is written last.
RESULT_FILES = {"median.tif": "image/tiff", "median.vrt": "application/xml", "quicklook.png": "image/png"}


@dataclass(frozen=True)
class ResultPaths:
    """Where a job's results go: ``<output>/<job_id>/`` and the files in it."""

    root: GsUrl

    @classmethod
    def of(cls, output: str, job_id: str, period: str | None = None) -> "ResultPaths":
        """A job's results: the whole range at ``<output>/<job_id>/``, a period's in its folder there."""
        root = GsUrl.parse(output).join(check_job_id(job_id))
        return cls(root if period is None else root.join(check_period_name(period)))

    def join(self, name: str) -> GsUrl:
        return self.root.join(name)

    @property
    def cog(self) -> GsUrl:
        return self.join("median.tif")

    @property
    def vrt(self) -> GsUrl:
        return self.join("median.vrt")

    @property
    def quicklook(self) -> GsUrl:
        return self.join("quicklook.png")

    @property
    def record(self) -> GsUrl:
        """job.json: its presence means every other result of this composite is in place."""
        return self.join("job.json")

    @property
    def item(self) -> GsUrl:
        """item.json: this composite's STAC item (assembly/catalog.py), beside it."""
        return self.join("item.json")

    @property
    def collection(self) -> GsUrl:
        """collection.json (the job's STAC collection, assembly/catalog.py): written last of all."""
        return self.join("collection.json")

    def __str__(self) -> str:
        return str(self.root)


_TILE_OBJECT = re.compile(
    r"^(?P<prefix>.*)jobs/(?P<job>[a-z0-9][a-z0-9-]{2,62})/(periods/(?P<period>[0-9A-Za-z_-]{1,40})/)?"
    r"tiles/(?P<tile>r\d{3,}_c\d{3,})\.tif$"
)
_PERIOD_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,39}$")


def check_period_name(name: str) -> str:
    """``name`` if it can name a period's folder (letters, digits, '-', '_'), else InvalidRequest."""
    if not isinstance(name, str) or not _PERIOD_NAME.match(name):
        raise InvalidRequest(f"not a period name: {name!r}")
    return name
_ERROR_OBJECT = re.compile(r"^(?P<tile>r\d{3,}_c\d{3,})\.(?P<kind>permanent|attempt-(?P<attempt>\d+))\.json$")
_ATTEMPT_OBJECT = re.compile(r"^(?P<tile>r\d{3,}_c\d{3,})\.(?P<attempt>\d{3,})\.json$")


def parse_tile_object(work: GsUrl, bucket: str, name: str) -> tuple[str, TileId, str | None] | None:
    """(job id, tile id, period or None) if ``gs://bucket/name`` is a tile of a job under ``work``, else None."""
    if bucket != work.bucket:
        return None
    match = _TILE_OBJECT.match(name)
    if not match:
        return None
    expected_prefix = f"{work.key.strip('/')}/" if work.key.strip("/") else ""
    if match.group("prefix") != expected_prefix:
        return None
    return match.group("job"), TileId.parse(match.group("tile")), match.group("period")


def parse_error_object(name: str) -> tuple[TileId, int | None] | None:
    """(tile id, attempt or None for permanent) of an error record's base name."""
    match = _ERROR_OBJECT.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    attempt = match.group("attempt")
    return TileId.parse(match.group("tile")), (None if attempt is None else int(attempt))


def parse_attempt_object(name: str) -> tuple[TileId, int] | None:
    """(tile id, attempt number) of an attempt record's base name."""
    match = _ATTEMPT_OBJECT.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    return TileId.parse(match.group("tile")), int(match.group("attempt"))
