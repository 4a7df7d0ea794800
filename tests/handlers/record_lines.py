"""JSON-line record files shared by the stand-in handlers (writers) and the tests (readers).

A handler process appends each record as one ``write`` of a whole line (O_APPEND), so lines from
concurrent threads and instances never interleave. A reader in another process may still see the
last line half written: a write is not atomic with respect to a concurrent read, and a record
larger than a page is copied in pieces. So every reader here ignores a last line that has no
trailing newline yet; the next read sees it whole.

Stdlib only: the handlers import it from their own directory (functions-framework puts the source's
directory on sys.path).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def record_path(record_dir: str | os.PathLike, key: str) -> Path:
    """The file the records of ``key`` (a subscription id, ``storage-<bucket>``) go to."""
    return Path(record_dir) / f"{key}.jsonl"


def append_record(record_dir: str | os.PathLike, key: str, record: dict) -> None:
    """Append ``record`` as one JSON line, in one O_APPEND write of the whole line."""
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(record_path(record_dir, key), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):  # never a second write: it could land after another writer's line
        raise OSError(f"short write to {record_path(record_dir, key)}: {written} of {len(line)} bytes")


def complete_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a file another process appends to, without a partial last line ([] if absent)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1  # 0 when not even the first line is complete
    return data[:end].decode().splitlines()


def read_records(record_dir: str | os.PathLike, key: str) -> list[dict]:
    """The complete records of ``key`` so far, oldest first."""
    return [json.loads(line) for line in complete_lines(record_path(record_dir, key)) if line]
