"""What the simulation takes and gives: a job's shape, then its attempts, instances, usage and bound."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from temporal_median.base.clock import isoformat

#: What bounds a job: each second of its wall time goes to one of these.
CATEGORIES = ("fanout", "push flow control", "429 refusals and backoff", "instances busy", "cold starts",
              "reads", "CPU", "storage requests", "mosaic")


@dataclass(frozen=True)
class WindowShape:
    """One window of a job: its tile, pixels, scenes and the compressed bytes its blocks hold."""

    tile: str
    pixels: int
    scenes: int
    bytes: int


@dataclass(frozen=True)
class JobShape:
    """What a job asks of the pipeline, without its pixels.

    Attributes
    ----------
    windows : tuple of WindowShape
    method : str
        ``luminance`` or ``per-band`` (the kernel's cost differs).
    message_bytes : int
        Bytes of all window messages (Pub/Sub's price).
    inputs : int
        The job's scenes, each opened by fanout (an area's windows read only some of them);
        0: as many as the window reading the most.
    """

    windows: tuple[WindowShape, ...]
    method: str = "luminance"
    message_bytes: int = 0
    inputs: int = 0

    @property
    def scenes(self) -> int:
        """The job's scenes (fanout opens each)."""
        return self.inputs or max((w.scenes for w in self.windows), default=0)

    @property
    def pixels(self) -> int:
        return sum(w.pixels for w in self.windows)

    @property
    def bytes(self) -> int:
        return sum(w.bytes for w in self.windows)


@dataclass
class Attempt:
    """One push of a window that Cloud Run refused (``number`` None) or one executed attempt.

    ``phases`` splits an executed attempt's seconds: ``checks`` (storage requests before the
    work), ``read`` (reads and CPU overlapped, ``read_bound`` says which ended last), ``write``
    (the tile's CPU), ``upload`` (the tile and the attempt record).
    """

    tile: str
    number: int | None
    delivery: int
    instance: str | None
    arrived: float
    start: float
    end: float
    outcome: str
    bytes_read: int = 0
    landed: float | None = None
    phases: dict = field(default_factory=dict)
    read_bound: str = "CPU"

    def to_record(self, origin: datetime) -> dict:
        def at(seconds: float) -> str:
            return isoformat(origin + timedelta(seconds=seconds))

        return {"tile": self.tile, "attempt": self.number, "delivery_attempt": self.delivery,
                "instance": self.instance, "started": at(self.start), "ended": at(self.end),
                "outcome": self.outcome, "bytes_read": self.bytes_read}


@dataclass
class Simulation:
    """What a simulated job did, in seconds from the POST.

    Attributes
    ----------
    complete : bool
        Every tile landed and the mosaic was built (False if a window was dead-lettered).
    wall_s : float
        POST to job.json written.
    created_s, published_s : float
        Manifest written; every window published.
    mosaic_start_s, mosaic_built_s : float
        The mosaic's build started (lock taken) and its COG was built (uploads after).
    attempts : list of Attempt
    instances : list of dict
        ``id``, ``started``, ``ready`` (None if never) of each median instance.
    usage : temporal_median.job.cost.Usage
        What Google would bill: executed requests and instance starts.
    cost : dict
        ``usage.estimate()``: cost.py's prices.
    breakdown : dict
        Seconds of the wall time per category of :data:`CATEGORIES`, along the critical path.
    bound : str
        The category with the most seconds.
    figures : dict
        Counts: refused pushes, cold starts, peak instances, peak push window, dead letters.
    """

    complete: bool
    wall_s: float
    created_s: float
    published_s: float
    mosaic_start_s: float
    mosaic_built_s: float
    attempts: list
    instances: list
    usage: object
    cost: dict
    breakdown: dict
    bound: str
    figures: dict

    @property
    def usd(self) -> float:
        return self.cost["usd_total"]

    def to_dict(self) -> dict:
        """The figures, the breakdown and the cost, without the attempts (JSON-safe)."""
        return {
            "complete": self.complete,
            "wall_seconds": round(self.wall_s, 3),
            "bound": self.bound,
            "breakdown_seconds": {k: round(v, 3) for k, v in self.breakdown.items() if v > 0},
            "manifest_seconds": round(self.created_s, 3),
            "mosaic_seconds": round(self.wall_s - self.mosaic_start_s, 3),
            **self.figures,
            "usd_total": self.usd,
            "cost_estimate": self.cost,
        }

    def to_record(self, origin: datetime | None = None) -> dict:
        """The job.json fields a timeline is drawn from, as if the job was posted at ``origin``."""
        origin = origin or datetime(2000, 1, 1, tzinfo=timezone.utc)

        def at(seconds: float) -> str:
            return isoformat(origin + timedelta(seconds=seconds))

        return {
            "simulated": True,
            "posted": at(0.0),
            "created": at(self.created_s),
            "mosaic_started": at(self.mosaic_start_s),
            "completed": at(self.wall_s),
            "tiles": len({a.tile for a in self.attempts}),
            "attempts": [a.to_record(origin) for a in sorted(self.attempts, key=lambda a: (a.start, a.tile))],
        }


def critical_path(wall_s: float, published_s: float, last: Attempt, refusals: list[Attempt],
                  full_intervals: list[tuple[float, float]]) -> dict:
    """Seconds of the wall time per category, following the window whose tile landed last.

    Parameters
    ----------
    wall_s, published_s : float
        The job's end and when its windows were published.
    last : Attempt
        The executed attempt whose tile landed last (the mosaic waited for it).
    refusals : list of Attempt
        That window's pushes Cloud Run refused (429), in order.
    full_intervals : list of (float, float)
        When every instance Cloud Run may run was busy (else a request waiting at Cloud Run
        waits for an instance being started).
    """
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    seconds["fanout"] = published_s
    # Waiting in Pub/Sub: after a refusal it is the backoff; before, the push window or full instances.
    first_refusal = refusals[0].arrived if refusals else last.arrived
    busy = _overlap(full_intervals, published_s, first_refusal)
    seconds["instances busy"] += busy
    seconds["push flow control"] += max(0.0, first_refusal - published_s - busy)
    seconds["429 refusals and backoff"] += max(0.0, last.arrived - first_refusal)
    queued = max(0.0, last.start - last.arrived)
    busy = _overlap(full_intervals, last.arrived, last.start)
    seconds["instances busy"] += busy
    seconds["cold starts"] += queued - busy
    phases = last.phases
    seconds["storage requests"] += phases.get("checks", 0.0) + phases.get("upload", 0.0)
    seconds["reads" if last.read_bound == "reads" else "CPU"] += phases.get("read", 0.0)
    seconds["CPU"] += phases.get("write", 0.0)
    seconds["mosaic"] += max(0.0, wall_s - (last.landed if last.landed is not None else last.end))
    return seconds


def _overlap(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)
