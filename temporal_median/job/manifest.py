"""The job manifest: everything about a job, written by fanout before it publishes anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from temporal_median.base.errors import InvalidRequest, MalformedMessage
from temporal_median.base.grid import Grid, RasterGrid, TileId
from temporal_median.base.methods import check_method
from temporal_median.job.ids import check_job_id
from temporal_median.job.messages import WindowMessage
from temporal_median.job.paths import JobPaths, ResultPaths
from temporal_median.job.periods import Period, period_runs

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """Everything about a job, written by fanout before it publishes anything."""

    job_id: str
    datasets: tuple[str, ...]
    grid: Grid
    raster: RasterGrid
    method: str
    output: str
    created: str
    work: str
    #: How the scenes were chosen: source, criteria, the scenes kept and those dropped with reasons.
    selection: dict = field(default_factory=dict)
    #: An area job's layout (job/layout.py): the output grid's request, its observations (groups of
    #: ``datasets`` indices, one per acquisition) and each window's scenes. None: every scene is on
    #: ``raster`` and every window reads them all.
    area: dict | None = None
    #: Composites besides the whole range (job/periods.py), each with at least one scene, and
    #: the acquisition day of each dataset that puts it in one ("YYYY-MM-DD").
    periods: tuple = ()
    days: tuple = ()
    #: Cloud masks: one classification raster per dataset, and the classes whose samples drop.
    masks: tuple | None = None
    exclude: tuple = ()

    @property
    def paths(self) -> JobPaths:
        return JobPaths.of(self.work, self.job_id)

    @property
    def results(self) -> ResultPaths:
        return ResultPaths.of(self.output, self.job_id)

    def to_dict(self) -> dict:
        """The manifest as JSON-safe data (what manifest.json holds)."""
        return {
            "version": MANIFEST_VERSION,
            "job_id": self.job_id,
            "datasets": list(self.datasets),
            "grid": self.grid.to_dict(),
            "raster": self.raster.to_dict(),
            "method": self.method,
            "output": self.output,
            "created": self.created,
            "work": self.work,
            "tiles": len(self.grid),
            "selection": self.selection,
            **({"area": self.area} if self.area is not None else {}),
            **({"periods": [p.to_dict() for p in self.periods], "days": list(self.days)} if self.periods else {}),
            **({"mask": {"urls": list(self.masks), "exclude": list(self.exclude)}} if self.masks is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        """Inverse of :meth:`to_dict`; MalformedMessage names a missing or bad field."""
        try:
            return cls(
                job_id=check_job_id(data["job_id"]),
                datasets=tuple(data["datasets"]),
                grid=Grid.from_dict(data["grid"]),
                raster=RasterGrid.from_dict(data["raster"]),
                method=check_method(data["method"]),
                output=str(data["output"]),
                created=str(data["created"]),
                work=str(data["work"]),
                selection=dict(data.get("selection") or {}),
                area=dict(data["area"]) if data.get("area") is not None else None,
                periods=tuple(Period.from_dict(p) for p in data.get("periods") or ()),
                days=tuple(data.get("days") or ()),
                masks=tuple(data["mask"]["urls"]) if data.get("mask") else None,
                exclude=tuple(data["mask"]["exclude"]) if data.get("mask") else (),
            )
        except (KeyError, TypeError, InvalidRequest) as exc:
            raise MalformedMessage(f"job manifest is missing or has a bad field: {exc}") from exc

    def same_job(self, other: "Manifest") -> bool:
        """True if both describe the same computation: the same scenes, grid, method and places.

        When and how the scenes were chosen does not count: two requests that select the same
        scenes (a STAC search, or its ItemCollection with a date range) are one job.
        """
        mine, theirs = self.to_dict(), other.to_dict()
        for key in ("created", "selection"):
            mine.pop(key)
            theirs.pop(key)
        return mine == theirs

    def message(self, tile: TileId) -> WindowMessage:
        """The window message of one of this job's tiles (an area's: only the scenes it touches)."""
        chosen, observations = range(len(self.datasets)), None
        if self.area is not None:
            chosen = self.area["windows"].get(str(tile), [])
            position = {index: i for i, index in enumerate(chosen)}
            groups = (tuple(position[i] for i in group if i in position) for group in self.area["observations"])
            observations = tuple(g for g in groups if g)
        runs = ()
        if self.periods:
            # An observation's day is its first scene's: the scenes of one pass share it.
            firsts = [group[0] for group in observations] if observations is not None else range(len(chosen))
            days = [date.fromisoformat(self.days[chosen[i]]) for i in firsts]
            runs = period_runs(self.periods, days)
        return WindowMessage(
            job_id=self.job_id,
            tile=tile,
            window=self.grid.window(tile),
            method=self.method,
            datasets=tuple(self.datasets[i] for i in chosen),
            destination=str(self.paths.tile(tile)),
            work=self.work,
            raster=self.raster,
            observations=observations,
            periods=runs,
            masks=tuple(self.masks[i] for i in chosen) if self.masks is not None else None,
            exclude=self.exclude,
        )
