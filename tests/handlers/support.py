"""Helpers shared by the local cloud's tests: throw-away topologies on free ports, record polling."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from localcloud import clean_environ  # noqa: F401 - the tests' import path for it

HANDLERS = Path(__file__).resolve().parent
PUSH_RECORDER = HANDLERS / "push_recorder.py"
EVENT_RECORDER = HANDLERS / "event_recorder.py"


def write_topology(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read_records(record_dir: Path, key: str) -> list[dict]:
    path = record_dir / f"{key}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


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
