"""The run directory's record of a running cloud: state.json, pid files, and the lock up and down take.

``down``, ``status`` and ``env`` read it from any process, so they act on exactly the processes
``up`` started.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .processes import ProcessRecord

STATE_VERSION = 2


class RunState:
    """``<run_dir>/state.json`` (what runs, its ports, urls and env) and ``<run_dir>/pids/``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @property
    def path(self) -> Path:
        return self.run_dir / "state.json"

    def read(self) -> dict | None:
        """The recorded state; None when nothing was recorded (or by another version)."""
        try:
            state = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state if state.get("version") == STATE_VERSION else None

    def write(self, state: dict) -> None:
        """Record ``state`` (its version set by the caller) whole, then one pid file per part."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.path)
        pid_dir = self.run_dir / "pids"
        pid_dir.mkdir(exist_ok=True)
        for record in state["parts"].values():
            (pid_dir / f"{record['part'].replace(':', '-')}.pid").write_text(f"{record['pid']} {record['start_time']}\n")

    def clear(self) -> None:
        """Forget the state and the pid files."""
        self.path.unlink(missing_ok=True)
        for pid_file in (self.run_dir / "pids").glob("*.pid"):
            pid_file.unlink()

    @staticmethod
    def records(state: dict | None) -> list[ProcessRecord]:
        """The started processes a state lists."""
        return [ProcessRecord.from_json(r) for r in (state or {}).get("parts", {}).values()]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise up/down on one run directory (two `make up` at once must not both start)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
