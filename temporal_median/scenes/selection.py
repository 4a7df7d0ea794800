"""Choosing scenes: a date range and scene-level cloud screening, with a reason for every scene dropped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from temporal_median.base.clock import isoformat_or_none
from temporal_median.base.errors import (
    InvalidRequest,
)
from temporal_median.scenes.scene import Scene, percentage

#: Items named in one error message at most.
_NAMED = 10


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dropped:
    """A scene left out of a job, and why (e.g. ``"cloud cover 83.0% > 50%"``)."""

    scene: Scene
    reason: str

    def to_dict(self) -> dict:
        return {**self.scene.to_dict(), "reason": self.reason}


@dataclass(frozen=True)
class SelectionResult:
    """What a selection kept, in the median's order, and what it dropped, with reasons."""

    kept: tuple[Scene, ...]
    dropped: tuple[Dropped, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """The kept scenes' URLs, in acquisition order: the job's datasets."""
        return tuple(scene.url for scene in self.kept)

    def to_dict(self) -> dict:
        return {"kept": [s.to_dict() for s in self.kept], "dropped": [d.to_dict() for d in self.dropped]}


@dataclass(frozen=True)
class Selection:
    """Which scenes a job keeps: an acquisition date range and a cloud-cover ceiling.

    Attributes
    ----------
    start, end : date or None
        First and last acquisition day kept (UTC, both inclusive); None leaves that side open.
    max_cloud : float or None
        Highest cloud cover kept, in percent of the valid footprint (0-100); None keeps all.
    """

    start: date | None = None
    end: date | None = None
    max_cloud: float | None = None

    def __post_init__(self):
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, date) or isinstance(value, datetime)):
                raise InvalidRequest(f"'{name}' must be a date, got {value!r}")
        if self.start and self.end and self.start > self.end:
            raise InvalidRequest(f"'start' ({self.start}) is after 'end' ({self.end})")
        if self.max_cloud is not None:
            object.__setattr__(self, "max_cloud", percentage(self.max_cloud, "'max_cloud'"))

    @classmethod
    def from_request(cls, body: dict) -> Selection:
        """Read ``start``, ``end`` (ISO dates, ``"2023-06-01"``) and ``max_cloud`` (0-100) of a
        job request; other keys are ignored, a missing or null key leaves that bound open.

        Raises
        ------
        InvalidRequest
            Naming the field: a malformed date, ``start`` after ``end``, ``max_cloud`` outside 0-100.
        """
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        start, end = (_iso_date(body.get(name), name) for name in ("start", "end"))
        max_cloud = body.get("max_cloud")
        return cls(start, end, None if max_cloud is None else percentage(max_cloud, "'max_cloud'"))

    @property
    def has_dates(self) -> bool:
        return self.start is not None or self.end is not None

    def to_dict(self) -> dict:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "max_cloud": self.max_cloud,
        }

    def stac_datetime(self) -> str | None:
        """The date range as a STAC search ``datetime`` interval, to narrow a search; None if open."""
        if not self.has_dates:
            return None
        start = isoformat_or_none(datetime.combine(self.start, time.min, UTC)) if self.start else ".."
        end = isoformat_or_none(datetime.combine(self.end, time(23, 59, 59, 999999), UTC)) if self.end else ".."
        return f"{start}/{end}"

    def date_reason(self, scene: Scene) -> str | None:
        """Why the date range drops ``scene``, or None if it keeps it.

        Raises
        ------
        InvalidRequest
            When there is a date range and the scene has no acquisition time.
        """
        if not self.has_dates:
            return None
        if scene.datetime is None:
            raise InvalidRequest(
                f"scene {scene.name} has no acquisition time (no STAC datetime, no _YYYYMMDDTHHMMSS_ in its "
                "name), so a date range cannot be applied to it"
            )
        day = scene.datetime.astimezone(UTC).date()
        if self.start and day < self.start:
            return f"before start {self.start.isoformat()}"
        if self.end and day > self.end:
            return f"after end {self.end.isoformat()}"
        return None

    def cloud_reason(self, scene: Scene) -> str | None:
        """Why the cloud ceiling drops ``scene``, or None if it keeps it.

        Raises
        ------
        InvalidRequest
            When there is a ceiling and the scene's cloud cover is unknown (estimate it first:
            :func:`select` does).
        """
        if self.max_cloud is None:
            return None
        if scene.cloud_cover is None:
            raise InvalidRequest(f"scene {scene.name} has no cloud cover to compare with max_cloud")
        if scene.cloud_cover > self.max_cloud:
            digits = 1  # enough digits to show it is above: 50.04% > 50%, not 50.0% > 50%
            while round(scene.cloud_cover, digits) <= self.max_cloud and digits < 6:
                digits += 1
            estimate = " (estimate)" if scene.cloud_source == "estimate" else ""
            return f"cloud cover {scene.cloud_cover:.{digits}f}%{estimate} > {self.max_cloud:g}%"
        return None

    def apply(self, scenes: Iterable[Scene]) -> SelectionResult:
        """Keep the scenes within the date range and under the cloud ceiling, in acquisition order.

        No I/O: when ``max_cloud`` is set every scene in the date range needs a cloud cover
        (:func:`select` estimates the missing ones first).

        Returns
        -------
        SelectionResult
            ``kept`` sorted by (acquisition time, url): the median's order, whose ties go to
            the earlier scene. If no kept scene has a time the input order is kept (e.g. files
            sorted by name). ``dropped``: the duplicates, the scenes out of the date range, then
            those over the ceiling, each group in input order, each scene with its reason.

        Raises
        ------
        InvalidRequest
            A scene without acquisition time under a date range; a scene without cloud cover
            under a ceiling; kept scenes of which some have an acquisition time and some do not
            (they cannot be put in order). The same URL twice is one
            scene: the later ones are dropped as duplicates (Earth Search lists one COG in two
            collections).
        """
        scenes, duplicates = _unique(scenes)
        kept, dropped = _split(scenes, self.date_reason)
        kept, more = _split(kept, self.cloud_reason)
        return SelectionResult(_ordered(kept), tuple(duplicates + dropped + more))


def _iso_date(value, name: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be an ISO date like \"2023-06-01\", got {value!r}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an ISO date like \"2023-06-01\", got {value!r}") from None


def _split(scenes: Iterable[Scene], reason_of) -> tuple[list[Scene], list[Dropped]]:
    kept, dropped = [], []
    for scene in scenes:
        reason = reason_of(scene)
        if reason is None:
            kept.append(scene)
        else:
            dropped.append(Dropped(scene, reason))
    return kept, dropped


def _unique(scenes: Iterable[Scene]) -> tuple[list[Scene], list[Dropped]]:
    """The first scene of each URL, and the others dropped as its duplicates."""
    first: dict[str, Scene] = {}
    duplicates = []
    for scene in scenes:
        if scene.url in first:
            duplicates.append(Dropped(scene, f"duplicate of {first[scene.url].name} (same href)"))
        else:
            first[scene.url] = scene
    return list(first.values()), duplicates


def _ordered(scenes: Sequence[Scene]) -> tuple[Scene, ...]:
    undated = [s for s in scenes if s.datetime is None]
    if not undated:
        return tuple(sorted(scenes, key=lambda s: (s.datetime, s.url)))
    if len(undated) == len(scenes):
        return tuple(scenes)
    raise InvalidRequest(
        f"{len(undated)} of {len(scenes)} scenes have no acquisition time, so they cannot be put in "
        f"acquisition order with the others: {_names(undated)}"
    )


def _names(scenes: Sequence[Scene]) -> str:
    names = [s.name for s in scenes[:_NAMED]]
    more = f" and {len(scenes) - _NAMED} more" if len(scenes) > _NAMED else ""
    return ", ".join(names) + more


def select(scenes: Iterable[Scene], selection: Selection, *, max_workers: int | None = None) -> SelectionResult:
    """Apply ``selection``, estimating the cloud cover of scenes that lack one when it is needed.

    Scenes outside the date range are dropped first, so only the scenes left are read (their
    smallest overview, see :func:`estimate_cloud_cover`), concurrently.

    Parameters
    ----------
    scenes : iterable of Scene
    selection : Selection
    max_workers : int, optional
        Estimating threads; default one per core for local files, REMOTE_ESTIMATE_THREADS
        when any scene is remote.

    Returns
    -------
    SelectionResult

    Raises
    ------
    InvalidRequest
        See :meth:`Selection.apply`.
    InputUnreadable, StorageUnavailable
        When a scene whose cloud cover must be estimated cannot be read.
    """
    from temporal_median.scenes.clouds import estimate_cloud_covers  # GDAL: only when a scene must be read

    scenes, duplicates = _unique(scenes)
    in_range, out_of_range = _split(scenes, selection.date_reason)
    if selection.max_cloud is not None:
        in_range = list(estimate_cloud_covers(in_range, max_workers=max_workers))
    kept, cloudy = _split(in_range, selection.cloud_reason)
    return SelectionResult(_ordered(kept), tuple(duplicates + out_of_range + cloudy))
