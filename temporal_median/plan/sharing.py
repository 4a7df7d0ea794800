"""A capacity shared fairly among the work running on it (processor sharing), for simpy: cores and bandwidth."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Work:
    amount: float
    cap: float
    event: object
    remaining: float = field(init=False)
    rate: float = 0.0

    def __post_init__(self):
        self.remaining = self.amount


class SharedRate:
    """A capacity (cores, bytes per second) served to the work running on it, fairly.

    ``run(amount, cap)`` starts work of ``amount`` (CPU-seconds, bytes) that may go at most at
    ``cap`` (the threads it has, say); it returns a simpy event that fires once the amount is
    served. The capacity is shared by water-filling: every piece of work gets an equal share,
    a piece capped below its share keeps its cap and leaves the rest to the others. Rates only
    change when work starts or ends, so completion times are exact, not time-stepped.

    Parameters
    ----------
    env : simpy.Environment
    capacity : float or None
        Total rate; None for no shared limit (each piece goes at its cap, which must be finite).
    """

    def __init__(self, env, capacity: float | None) -> None:
        self.env = env
        self.capacity = capacity
        self._work: list[_Work] = []
        self._last = env.now
        self._token = 0
        #: Integral of the rate in use over time (the amount served, background included).
        self.served = 0.0

    def run(self, amount: float, cap: float = math.inf):
        """An event that fires once ``amount`` has been served at most at ``cap``."""
        event = self.env.event()
        if amount <= 0:
            event.succeed()
            return event
        if self.capacity is None and math.isinf(cap):
            raise ValueError("work on an unlimited capacity needs a finite cap")
        self._advance()
        self._work.append(_Work(float(amount), float(cap), event))
        self._reschedule()
        return event

    def busy(self) -> float:
        """The rate in use now, as a share of the capacity (0..1; 0 when unlimited)."""
        if not self.capacity:
            return 0.0
        return sum(w.rate for w in self._work) / self.capacity

    def _advance(self) -> None:
        elapsed = self.env.now - self._last
        if elapsed > 0:
            for work in self._work:
                served = work.rate * elapsed
                self.served += served
                if not math.isinf(work.remaining):
                    work.remaining -= served
        self._last = self.env.now

    def _share(self) -> None:
        left = math.inf if self.capacity is None else float(self.capacity)
        ordered = sorted(self._work, key=lambda w: w.cap)
        for index, work in enumerate(ordered):
            share = left / (len(ordered) - index)
            work.rate = min(work.cap, share)
            left -= work.rate

    def _reschedule(self) -> None:
        self._share()
        finite = [w.remaining / w.rate for w in self._work if w.rate > 0 and not math.isinf(w.remaining)]
        self._token += 1
        if finite:
            token = self._token
            timer = self.env.timeout(max(0.0, min(finite)))
            timer.callbacks.append(lambda _event: self._on_timer(token))

    def _on_timer(self, token: int) -> None:
        if token != self._token:
            return  # work started or ended since: a newer timer stands
        self._advance()
        done = [w for w in self._work if w.remaining <= 1e-9 * max(1.0, w.amount)]
        for work in done:
            self._work.remove(work)
        self._reschedule()
        for work in done:
            work.event.succeed()
