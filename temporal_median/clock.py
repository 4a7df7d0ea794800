"""Times as the pipeline writes and reads them: aware UTC datetimes, RFC 3339 text."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import MalformedMessage


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Cloud Storage and Pub/Sub write times."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 times as Pub/Sub and CloudEvents write them (nanoseconds allowed)."""
    if not isinstance(text, str) or not text:
        raise MalformedMessage(f"not a timestamp: {text!r}")
    cleaned = text.strip().replace("Z", "+00:00")
    # Python parses at most microseconds; Pub/Sub sends nanoseconds.
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", cleaned)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise MalformedMessage(f"not a timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
