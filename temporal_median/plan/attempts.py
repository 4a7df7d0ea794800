"""Attempt records: who ran a window when, how it ended, and a job's attempts read back for its timeline."""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

from temporal_median.base import storage
from temporal_median.base.storage import GsUrl
from temporal_median.job.paths import JobPaths, parse_attempt_object

#: An attempt's end record, beside its claim ``<tile>.NNN.json`` (create-only, so it cannot be
#: rewritten): ``<tile>.NNN.done.json``. Its name is not an attempt's, so claims never count it.
_DONE = re.compile(r"^(?P<tile>r\d{3,}_c\d{3,})\.(?P<attempt>\d{3,})\.done\.json$")
#: Records read per tile at most (claims and end records), so a job with runaway retries still
#: gets its record written in bounded time.
RECORDS_PER_TILE = 24
_READ_THREADS = 16


def instance_id() -> str:
    """This process as a Cloud Run instance: revision, host and pid, plus a random part (pids and
    host names repeat across Cloud Run instances; a process is one instance: one gunicorn worker)."""
    return _instance_id(os.getpid())


@functools.lru_cache(maxsize=4)
def _instance_id(pid: int) -> str:
    # Per pid: gunicorn loads the code in its arbiter and forks the worker that serves.
    revision = os.environ.get("K_REVISION", "local")
    return f"{revision}/{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:6]}"


def done_url(paths: JobPaths, tile, number: int) -> GsUrl:
    """Where attempt ``number`` of ``tile`` records how it ended."""
    claim = paths.attempt(tile, number)
    return GsUrl(claim.bucket, claim.key[: -len(".json")] + ".done.json")


def collect_attempts(paths: JobPaths, tiles: int) -> tuple[list[dict], bool]:
    """Every attempt of a job: its claim joined with its end record, oldest first.

    Parameters
    ----------
    paths : JobPaths
    tiles : int
        The job's tiles: at most ``RECORDS_PER_TILE`` records each are read.

    Returns
    -------
    (list of dict, bool)
        Per attempt ``tile``, ``attempt``, ``instance``, ``started``, ``ended`` (None if it never
        ended: its instance died), ``outcome`` (``written``, ``already-done``, ``failed``,
        ``exhausted``, ``retried``; ``unfinished`` without an end record), ``bytes_read``,
        ``seconds``, ``error``, ``delivery_attempt``; and whether records were left unread.
    """
    limit = RECORDS_PER_TILE * tiles
    infos = list(itertools.islice(storage.list_objects(paths.attempts), limit + 1))
    truncated = len(infos) > limit
    claims, ends = {}, {}
    for info in infos[:limit]:
        name = info.url.key.rsplit("/", 1)[-1]
        done = _DONE.match(name)
        if done:
            ends[(done.group("tile"), int(done.group("attempt")))] = info.url
        else:
            parsed = parse_attempt_object(name)
            if parsed:
                claims[(str(parsed[0]), parsed[1])] = info.url
    keys = list(claims)
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        bodies = list(pool.map(_read, [claims[k] for k in keys] + [ends.get(k) for k in keys]))
    records = [_joined(key, bodies[i], bodies[len(keys) + i]) for i, key in enumerate(keys)]
    records.sort(key=lambda r: (r["started"] or "", r["tile"], r["attempt"]))
    return records, truncated


def _read(url: GsUrl | None) -> dict:
    if url is None:
        return {}
    value = storage.read_json(url)
    return value if isinstance(value, dict) else {}


def _joined(key: tuple[str, int], claim: dict, end: dict) -> dict:
    # An end record counts only if it answers this claim: an older run's (a re-posted job
    # reuses attempt numbers) has another token.
    if end and end.get("token") != claim.get("token"):
        end = {}
    return {
        "tile": key[0],
        "attempt": key[1],
        "instance": claim.get("instance"),
        "started": claim.get("started"),
        "ended": end.get("ended"),
        "outcome": end.get("outcome", "unfinished"),
        "bytes_read": end.get("bytes_read"),
        "seconds": end.get("seconds"),
        "error": end.get("error"),
        "delivery_attempt": claim.get("delivery_attempt"),
    }
