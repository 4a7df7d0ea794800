"""Helpers shared by the local cloud's tests: throw-away topologies on free ports, record polling,
and the two Pub/Sub emulators as a pytest parameter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from localcloud import (
    clean_environ,
    google_pubsub,
)

from .record_lines import complete_lines, read_records  # noqa: F401 - the tests' one reader of handler records

HANDLERS = Path(__file__).resolve().parent
PUSH_RECORDER = HANDLERS / "push_recorder.py"
EVENT_RECORDER = HANDLERS / "event_recorder.py"
SLEEPER = HANDLERS / "sleeper.py"

# Why Google's Pub/Sub emulator cannot run here ("" when it can).
GOOGLE_MISSING = google_pubsub.missing()
# The Pub/Sub emulators the local cloud runs on, for @pytest.fixture(params=EMULATORS).
EMULATORS = [
    pytest.param("builtin", id="builtin"),
    pytest.param(
        "google",
        id="google",
        marks=pytest.mark.skipif(bool(GOOGLE_MISSING), reason=f"Google's Pub/Sub emulator is not installed: {GOOGLE_MISSING}"),
    ),
]


def write_topology(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def wait_for_records(
    record_dir: Path, key: str, done: Callable[[list[dict]], bool], timeout: float = 20.0
) -> list[dict]:
    """Poll the handler's records until ``done(records)``; fail with what arrived if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(record_dir, key)
        if done(records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{key}: condition not met in {timeout} s; {len(records)} records: {records[:5]}")
        time.sleep(0.05)
