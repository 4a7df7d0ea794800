"""Composites by period: months, quarters, seasons or explicit date ranges, each a run of a job's scenes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Sequence

from temporal_median.base.errors import InvalidRequest

#: The named ways to cut a job's date range; "year" is the whole range alone (as before periods).
KINDS = ("year", "month", "quarter", "season")
#: Meteorological seasons: December of the year before to February is that year's DJF.
SEASONS = (("DJF", 12), ("MAM", 3), ("JJA", 6), ("SON", 9))
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True, order=True)
class Period:
    """One composite's days: ``start`` to ``end``, both inclusive, and the folder named for it."""

    start: date
    end: date
    name: str

    def holds(self, day: date) -> bool:
        return self.start <= day <= self.end

    def to_dict(self) -> dict:
        return {"name": self.name, "start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, data: dict) -> "Period":
        try:
            return cls(date.fromisoformat(data["start"]), date.fromisoformat(data["end"]), str(data["name"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"a period must have name, start and end dates: {exc}") from None


def check_periods(value) -> str | tuple[tuple[date, date], ...]:
    """The request's ``periods``: a kind of :data:`KINDS`, or explicit ranges, checked.

    Explicit ranges are ``"2023-03-01/2023-05-31,2023-06-01/2023-08-31"`` or a list of such
    ``"START/END"`` strings, each in order and none overlapping another.

    Raises
    ------
    InvalidRequest
        Naming 'periods': an unknown kind, a malformed range, one that runs backwards, two that overlap.
    """
    if value is None:
        return "year"
    if isinstance(value, str) and value.strip().lower() in KINDS:
        return value.strip().lower()
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise InvalidRequest(
            f"'periods' must be one of {', '.join(KINDS)} or date ranges like \"2023-03-01/2023-05-31,...\", got {value!r}"
        )
    ranges = []
    for part in parts:
        match = _RANGE.match(part.strip())
        if not match:
            raise InvalidRequest(f"'periods': {part!r} is neither one of {', '.join(KINDS)} nor a range START/END of ISO dates")
        try:
            start, end = date.fromisoformat(match.group(1)), date.fromisoformat(match.group(2))
        except ValueError as exc:
            raise InvalidRequest(f"'periods': {part!r} has an invalid date ({exc})") from None
        if end < start:
            raise InvalidRequest(f"'periods': {part!r} runs backwards (its end is before its start)")
        ranges.append((start, end))
    ordered = sorted(ranges)
    for (a_start, a_end), (b_start, b_end) in zip(ordered, ordered[1:]):
        if b_start <= a_end:
            raise InvalidRequest(f"'periods': {a_start}/{a_end} and {b_start}/{b_end} overlap")
    return tuple(ordered)


def _month_end(day: date) -> date:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - timedelta(days=1)


def periods_between(kind, first: date, last: date) -> tuple[Period, ...]:
    """The periods of ``kind`` (or explicit ranges) that a job of scenes from ``first`` to ``last`` has.

    ``"year"`` has none besides the whole range. Months, quarters and seasons are every one
    from the one holding ``first`` to the one holding ``last``, in order, empty ones included
    (a period with no scene is reported, not an error). Explicit ranges are named
    ``START_END``.
    """
    if kind == "year":
        return ()
    if not isinstance(kind, str):
        return tuple(Period(s, e, f"{s.isoformat()}_{e.isoformat()}") for s, e in kind)
    periods = []
    if kind == "month":
        day = date(first.year, first.month, 1)
        while day <= last:
            periods.append(Period(day, _month_end(day), f"{day:%Y-%m}"))
            day = _month_end(day) + timedelta(days=1)
    elif kind == "quarter":
        day = date(first.year, 3 * ((first.month - 1) // 3) + 1, 1)
        while day <= last:
            end = _month_end(date(day.year, day.month + 2, 1))
            periods.append(Period(day, end, f"{day.year}-Q{(day.month - 1) // 3 + 1}"))
            day = end + timedelta(days=1)
    else:
        # The season holding ``first``: DJF of year Y starts in December of Y - 1.
        month = first.month
        start_month = 12 if month in (12, 1, 2) else 3 * (month // 3)
        day = date(first.year - (1 if month in (1, 2) else 0), start_month, 1)
        while day <= last:
            end = _month_end(date(day.year + (day.month + 2) // 13, (day.month + 1) % 12 + 1, 1))
            label = dict((m, n) for n, m in SEASONS)[day.month]
            periods.append(Period(day, end, f"{end.year}-{label}"))
            day = end + timedelta(days=1)
    return tuple(periods)


def period_runs(periods: Sequence[Period], days: Sequence[date | None]) -> tuple[tuple[str, int, int], ...]:
    """Each period's run ``(name, first, stop)`` over ``days`` (acquisition days in order).

    Scenes are in acquisition order, so each period's scenes are one run: its median is the
    median of ``stack[first:stop]``, no copy. ``first == stop`` for a period with no scene.

    Raises
    ------
    InvalidRequest
        When a day is missing (a scene without acquisition time cannot be put in a period).
    """
    if any(day is None for day in days):
        raise InvalidRequest("'periods' needs every scene's acquisition time; some scenes have none")
    runs = []
    for period in periods:
        inside = [i for i, day in enumerate(days) if period.holds(day)]
        first = inside[0] if inside else next((i for i, day in enumerate(days) if day > period.end), len(days))
        stop = inside[-1] + 1 if inside else first
        if inside and inside != list(range(first, stop)):
            raise InvalidRequest(f"period {period.name}: its scenes are not consecutive in acquisition order")
        runs.append((period.name, first, stop))
    return tuple(runs)
