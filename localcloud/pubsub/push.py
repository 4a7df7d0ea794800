"""Push delivery of one subscription: POSTs to its endpoint, with the push window and push backoff.

Push flow control ("delivery rate" in the Pub/Sub docs): the number of pushes in flight, the push
window, starts small, grows by one per success (doubling per round trip, a slow start) up to the
subscription's concurrency, and halves on each failure. After PUSH_BACKOFF_AFTER failures in a
row the subscription also stops pushing for a while ("push backoff"): 100 ms, doubling per further
failure, at most 60 s. The request's shape (raw envelope or CloudEvent) comes from push_formats.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import TYPE_CHECKING

import urllib3

from ..push_formats import build_push

if TYPE_CHECKING:
    from .state import Delivery, Subscription

log = logging.getLogger("localcloud.pubsub")

# What acknowledges a push, as the Pub/Sub docs list it (Google's emulator takes 203, not 202).
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
INITIAL_PUSH_WINDOW = 4
PUSH_BACKOFF_AFTER = 3
PUSH_BACKOFF_MIN = 0.1
PUSH_BACKOFF_MAX = 60.0


class Pusher:
    """The push workers of one subscription; its queue and lock are the subscription's own."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.generation = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.http: urllib3.PoolManager | None = None
        # Push flow control (see the module's docstring).
        self.window = min(INITIAL_PUSH_WINDOW, sub.config.concurrency)
        self.failures_in_a_row = 0
        self.paused_until = 0.0

    def start(self) -> None:
        """(Re)start the push workers: as many as the concurrency limit, so it is never exceeded."""
        sub = self.sub
        with sub.cond:
            self.generation += 1
            generation = self.generation
            sub.cond.notify_all()
        if not sub.config.endpoint:
            return
        with sub.cond:
            self.window = min(max(1, self.window), sub.config.concurrency)
        self.http = urllib3.PoolManager(maxsize=sub.config.concurrency, retries=False)
        for index in range(sub.config.concurrency):
            worker = threading.Thread(
                target=self._push_loop, args=(generation,), name=f"push-{sub.name.rsplit('/', 1)[-1]}-{index}", daemon=True
            )
            worker.start()

    def _next_ready(self, generation: int) -> Delivery | None:
        sub = self.sub
        with sub.cond:
            while True:
                if sub.closed or self.generation != generation:
                    return None
                now = time.monotonic()
                if self.in_flight >= self.window:
                    sub.cond.wait()  # the push window is full: a finished push wakes us
                    continue
                if now < self.paused_until:
                    sub.cond.wait(self.paused_until - now)  # push backoff
                    continue
                if sub.ready and sub.ready[0][0] <= now:
                    delivery = heapq.heappop(sub.ready)[2]
                    delivery.attempts += 1
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    return delivery
                sub.cond.wait(sub.ready[0][0] - now if sub.ready else None)

    def _push_loop(self, generation: int) -> None:
        while True:
            delivery = self._next_ready(generation)
            if delivery is None:
                return
            ok = False
            try:
                ok = self._post(delivery)  # no lock held: a slow endpoint must not stall anything else
            finally:
                self._push_done(ok)
            if not ok:
                self.sub.failed(delivery)

    def _push_done(self, ok: bool) -> None:
        """Adjust the push window after one push (flow control) and wake the push workers."""
        sub = self.sub
        with sub.cond:
            self.in_flight -= 1
            if ok:
                self.failures_in_a_row = 0
                self.window = min(sub.config.concurrency, self.window + 1)
            else:
                self.failures_in_a_row += 1
                self.window = max(1, self.window // 2)
                if self.failures_in_a_row >= PUSH_BACKOFF_AFTER:
                    pause = min(PUSH_BACKOFF_MAX, PUSH_BACKOFF_MIN * 2 ** (self.failures_in_a_row - PUSH_BACKOFF_AFTER))
                    self.paused_until = time.monotonic() + pause
            sub.cond.notify_all()

    def _post(self, delivery: Delivery) -> bool:
        config, name = self.sub.config, self.sub.name
        attempt = delivery.attempts if config.max_attempts else None
        try:
            headers, body = build_push(config.format, delivery.message, name, delivery.topic, attempt)
        except ValueError as exc:
            log.error("%s: cannot build %s push for message %s: %s", name, config.format, delivery.message.message_id, exc)
            return False
        try:
            response = self.http.request(
                "POST",
                config.endpoint,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=config.ack_deadline),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            log.info("%s: message %s attempt %d: no answer (%s)", name, delivery.message.message_id, delivery.attempts, exc)
            return False
        if response.status in ACK_STATUSES:
            log.debug("%s: message %s attempt %d: HTTP %d", name, delivery.message.message_id, delivery.attempts, response.status)
            return True
        log.info(
            "%s: message %s attempt %d: HTTP %d", name, delivery.message.message_id, delivery.attempts, response.status
        )
        return False
