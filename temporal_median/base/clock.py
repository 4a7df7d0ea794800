"""Times as the pipeline writes and reads them: aware UTC datetimes, RFC 3339 text."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from temporal_median.base.errors import MalformedMessage

# Python parses at most microseconds; Pub/Sub and some STAC catalogues write nanoseconds.
_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Cloud Storage and Pub/Sub write times."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def isoformat_or_none(moment: datetime | None) -> str | None:
    """:func:`isoformat`, or None for None (job records' optional times)."""
    return None if moment is None else isoformat(moment)


def parse_time_or_none(value) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; None if absent or malformed.

    Fractions beyond microseconds are cut; a timestamp without offset is taken as UTC. This
    is the one parser: STAC ``datetime`` values, and :func:`parse_time` for messages.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = _BEYOND_MICROSECONDS.sub(r"\1", value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 times as Pub/Sub and CloudEvents write them (nanoseconds allowed).

    Raises
    ------
    MalformedMessage
        When ``text`` is not such a timestamp.
    """
    moment = parse_time_or_none(text)
    if moment is None:
        raise MalformedMessage(f"not a timestamp: {text!r}")
    return moment
