"""A lease on a storage object: a lock that one holder renews while it works, and that others take over when stale."""

from __future__ import annotations

import os
import socket
import threading
import uuid

from temporal_median.base import storage
from temporal_median.base.clock import isoformat, parse_time, utcnow
from temporal_median.base.errors import MosaicBusy, TemporalMedianError
from temporal_median.base.logs import get_logger
from temporal_median.base.storage import GsUrl

log = get_logger("temporal_median.mosaic")


class Lease:
    """The mosaic lock, held by one invocation and renewed in the background while it builds.

    The lock object is created with ifGenerationMatch=0, and renewed (rewritten with a new
    time) every third of ``seconds`` with a generation precondition. A holder that dies (killed,
    out of memory, past its timeout) stops renewing: after ``seconds`` the lock is stale and the
    next event takes it over, atomically, with a generation precondition too. An event that
    finds a live lock raises MosaicBusy, so it is redelivered rather than acknowledged: if the
    holder then dies, that redelivery finishes the job.
    """

    def __init__(self, url: GsUrl, generation: int, body: dict, seconds: int) -> None:
        self.url, self.generation, self.body, self.seconds = url, generation, body, seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="tm-lease", daemon=True)
        self._thread.start()

    @classmethod
    def take(cls, url: GsUrl, seconds: int) -> "Lease":
        """Take the lock at ``url`` (creating it, or taking over a stale one); MosaicBusy if it is live."""
        body = {"holder": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}", "time": isoformat(utcnow())}
        generation = storage.create_json_generation(url, body)
        if generation is None:
            held = storage.read_json_generation(url)
            if held is None:
                raise MosaicBusy(f"{url} was released meanwhile: retry")
            value, current = held
            renewed = value.get("time", "1970-01-01T00:00:00Z") if isinstance(value, dict) else "1970-01-01T00:00:00Z"
            age = (utcnow() - parse_time(renewed)).total_seconds()
            if age <= seconds:
                holder = value.get("holder") if isinstance(value, dict) else None
                raise MosaicBusy(f"the mosaic is being built by {holder} (lock renewed {age:.0f} s ago): retry")
            # The holder died without releasing it: take it over atomically.
            generation = storage.replace_json_if_generation(url, body, current)
            if generation is None:
                raise MosaicBusy(f"{url} was taken over by another invocation: retry")
            log.warning(f"took over a stale mosaic lock of {value.get('holder')} (not renewed for {age:.0f} s)")
        return cls(url, generation, body, seconds)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                generation = storage.replace_json_if_generation(self.url, {**self.body, "time": isoformat(utcnow())}, self.generation)
            except TemporalMedianError as exc:
                log.warning(f"could not renew the mosaic lock, will try again: {exc}")
                continue
            if generation is None:
                self.lost = True
                log.warning("the mosaic lock was taken over: another invocation builds the same results")
                return
            self.generation = generation

    def release(self) -> None:
        """Stop renewing and delete the lock (if it is still ours)."""
        self._stop.set()
        self._thread.join()
        storage.delete(self.url, if_generation=self.generation)
