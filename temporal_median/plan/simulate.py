"""The deployed pipeline as a discrete-event simulation: fanout, Pub/Sub push, Cloud Run instances, median, mosaic."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass

import simpy

from temporal_median.job.cost import Usage
from temporal_median.plan.deployment import Deployment
from temporal_median.plan.model import Attempt, JobShape, Simulation, WindowShape, critical_path
from temporal_median.plan.parameters import Parameters
from temporal_median.plan.sharing import SharedRate

#: The mosaic reads tile headers this many at a time (temporal_median/assembly/cog.py).
_MOSAIC_HEADER_THREADS = 16


def simulate(job: JobShape, deployment: Deployment, params: Parameters | None = None) -> Simulation:
    """Run ``job`` through the pipeline as deployed, in simulated time.

    Parameters
    ----------
    job : JobShape
        The windows (pixels, scenes, bytes to read) and the method.
    deployment : Deployment
        Instances, concurrency, CPUs, push backoff; on the local cloud, its shared cores.
    params : Parameters, optional
        The platform's and the code's figures (default: :data:`~temporal_median.plan.parameters.PARAMETERS`).

    Returns
    -------
    Simulation
        Wall time (POST to job.json), every attempt with its instance, start and end, the usage
        priced by :mod:`temporal_median.job.cost`, and what bounds the job.
    """
    if not job.windows:
        raise ValueError("a job needs at least one window")
    env = simpy.Environment()
    run = _Run(env, job, deployment, params or Parameters())
    env.process(run.main())
    env.run()
    return run.result()


@dataclass
class _Message:
    window: WindowShape
    deliveries: int = 0


@dataclass(eq=False)
class _Instance:
    id: str
    started: float
    cpu: SharedRate
    net: SharedRate | None
    cold: bool
    ready: float | None = None
    in_flight: int = 0
    served: int = 0


class _Run:
    def __init__(self, env, job: JobShape, deployment: Deployment, params: Parameters) -> None:
        self.env, self.job, self.d, self.p = env, job, deployment, params
        self.host = SharedRate(env, deployment.host_cores) if deployment.host_cores else None
        if self.host is not None and params.host_background_cores > 0:
            self.host.run(math.inf, cap=params.host_background_cores)
        self.max_window = deployment.push_max_window or math.inf
        self.window = min(params.push_initial_window, self.max_window)
        self.in_flight = self.failures = 0
        self.paused_until = 0.0
        self.ready: list = []
        self.order = itertools.count()
        self.instances: list[_Instance] = []
        self.pending: deque = deque()
        self.attempts: list[Attempt] = []
        self.executed: dict[str, int] = {}
        self.landed: dict[str, float] = {}
        self.resolved = 0
        self.dead: list[str] = []
        self.running = 0
        self.full_since: float | None = None
        self.full_intervals: list[tuple[float, float]] = []
        self.peak_window = self.window
        self.mosaic_ready = None
        self.mosaic_cpu = self.host or SharedRate(env, deployment.mosaic_cpu)
        self.mosaic_net = None if self.host else SharedRate(env, params.storage_instance_Bps)
        self.mosaic_billed = 0.0
        self.building = False
        self.done = env.event()
        self.created = self.published = self.mosaic_start = self.mosaic_built = self.wall = math.nan

    # -- the job ----------------------------------------------------------------------------------

    def main(self):
        p, d, job = self.p, self.d, self.job
        for _ in range(d.median_min_instances):
            self._start_instance(cold=False)
        headers = p.fanout_fixed_s + job.scenes * p.fanout_scene_s
        if d.inputs_remote:
            headers += math.ceil(job.scenes / d.read_threads) * p.storage_latency_s
        yield self.env.timeout(headers + p.storage_latency_s)  # listed, inspected; the manifest written
        self.created = self.env.now
        yield self.env.timeout(len(job.windows) * p.publish_s)
        self.published = self.env.now
        for window in job.windows:
            heapq.heappush(self.ready, (self.env.now, next(self.order), _Message(window)))
        self._pump()
        yield self.done
        self.wall = self.env.now

    def _resolve(self) -> None:
        self.resolved += 1
        if self.resolved == len(self.job.windows) and self.dead and not self.done.triggered:
            self.done.succeed()  # a window was dead-lettered: no mosaic, the job never completes

    # -- Pub/Sub push -----------------------------------------------------------------------------

    def _pump(self) -> None:
        now = self.env.now
        while self.in_flight < self.window and now >= self.paused_until and self.ready and self.ready[0][0] <= now:
            message = heapq.heappop(self.ready)[2]
            message.deliveries += 1
            self.in_flight += 1
            self.env.process(self._push(message))
        if self.ready and self.in_flight < self.window:
            wake = max(self.ready[0][0], self.paused_until)
            if wake > now:
                self.env.timeout(wake - now).callbacks.append(lambda _event: self._pump())

    def _push(self, message: _Message):
        p, d = self.p, self.d
        yield self.env.timeout(p.push_latency_s)
        ok = yield self.env.process(self._request(message))
        self.in_flight -= 1
        if ok:
            self.failures = 0
            self.window = min(self.max_window, self.window + 1)
            self.peak_window = max(self.peak_window, self.window)
        else:
            self.failures += 1
            self.window = max(1, self.window // 2)
            if self.failures >= p.push_backoff_after:
                pause = p.push_backoff_min_s * 2 ** (self.failures - p.push_backoff_after)
                self.paused_until = self.env.now + min(p.push_backoff_max_s, pause)
            if message.deliveries >= d.push_max_delivery_attempts:
                self.dead.append(message.window.tile)
                self._resolve()
            else:
                backoff = min(d.push_max_backoff_s, d.push_min_backoff_s * 2 ** (message.deliveries - 1))
                heapq.heappush(self.ready, (self.env.now + backoff, next(self.order), message))
        self._pump()

    # -- Cloud Run: admission, instances ------------------------------------------------------------

    def _request(self, message: _Message):
        arrived = self.env.now
        assigned = self.env.event()
        entry = (assigned, arrived)
        self.pending.append(entry)
        self._route()
        while True:
            yield assigned | self.env.timeout(self.p.pending_timeout_s)
            if assigned.triggered or not self._starting_for(entry):
                break
            # Cloud Run holds a request while an instance starts for it: only one that no new
            # instance can take (max instances reached) is refused after the pending timeout.
        if not assigned.triggered:
            self.pending.remove(entry)
            self.attempts.append(Attempt(message.window.tile, None, message.deliveries, None, arrived, arrived,
                                         self.env.now, "refused-429"))
            return False
        yield self.env.process(self._window(assigned.value, message, arrived))
        return True

    def _starting_for(self, entry) -> bool:
        """Whether an instance being started will take ``entry`` (the pending queue is served in order)."""
        starting = sum(self.d.median_concurrency for i in self.instances if i.ready is None)
        return entry in self.pending and list(self.pending).index(entry) < starting

    def _route(self) -> None:
        d = self.d
        while self.pending:
            free = [i for i in self.instances if i.ready is not None and i.in_flight < d.median_concurrency]
            if not free:
                break
            instance = min(free, key=lambda i: i.in_flight)
            assigned, arrived = self.pending.popleft()
            instance.in_flight += 1
            self._count_running(+1)
            assigned.succeed(instance)
        starting = sum(d.median_concurrency for i in self.instances if i.ready is None)
        need = len(self.pending) - starting
        while need > 0 and len(self.instances) < d.median_max_instances:
            self._start_instance(cold=True)
            need -= d.median_concurrency

    def _start_instance(self, cold: bool) -> None:
        cpu = self.host or SharedRate(self.env, self.d.median_cpu)
        net = None if self.host else SharedRate(self.env, self.p.storage_instance_Bps)
        instance = _Instance(f"median-{len(self.instances) + 1}", self.env.now, cpu, net, cold)
        self.instances.append(instance)
        if not cold:
            instance.ready = self.env.now
            return

        def ready(_event):
            instance.ready = self.env.now
            self._route()

        self.env.timeout(self.p.cold_start_s).callbacks.append(ready)

    def _count_running(self, delta: int) -> None:
        self.running += delta
        capacity = self.d.median_max_instances * self.d.median_concurrency
        if self.running >= capacity and self.full_since is None:
            self.full_since = self.env.now
        elif self.running < capacity and self.full_since is not None:
            self.full_intervals.append((self.full_since, self.env.now))
            self.full_since = None

    # -- median: one executed attempt -------------------------------------------------------------

    def _window(self, instance: _Instance, message: _Message, arrived: float):
        p, d, env = self.p, self.d, self.env
        w = message.window
        start = env.now
        number = self.executed[w.tile] = self.executed.get(w.tile, 0) + 1
        attempt = Attempt(w.tile, number, message.deliveries, instance.id, arrived, start, start, "written", w.bytes)
        threads = d.read_threads if self.host else min(d.read_threads, d.median_cpu)
        yield from self._storage(instance.net, p.median_storage_requests - 1)
        yield instance.cpu.run(p.request_cpu_s, cap=1)
        if instance.cold and instance.served == 0:
            yield env.timeout(p.first_request_extra_s)
        attempt.phases["checks"] = env.now - start
        kernel = p.kernel_s_per_sample_per_band if self.job.method == "per-band" else p.kernel_s_per_sample_luminance
        work = w.pixels * w.scenes * (p.decode_s_per_sample + kernel) + w.scenes * p.scene_s
        reading = env.now
        ended = {"cpu": reading, "reads": reading}
        cpu = instance.cpu.run(work, cap=threads)
        io = self._reads(instance, w)
        for name, event in (("cpu", cpu), ("reads", io)):
            event.callbacks.append(lambda _event, name=name: ended.__setitem__(name, env.now))
        yield cpu & io
        attempt.phases["read"] = env.now - reading
        attempt.read_bound = "reads" if ended["reads"] > ended["cpu"] else "CPU"
        writing = env.now
        yield instance.cpu.run(w.pixels * p.write_s_per_pixel, cap=1)
        attempt.phases["write"] = env.now - writing
        uploading = env.now
        yield from self._storage(instance.net, 1, w.pixels * p.tile_bytes_per_pixel)
        attempt.phases["upload"] = env.now - uploading
        attempt.landed = env.now
        self._land(w.tile)
        yield from self._storage(instance.net, 1)  # the attempt's end record
        attempt.end = env.now
        self.attempts.append(attempt)
        instance.in_flight -= 1
        instance.served += 1
        self._count_running(-1)
        self._route()

    def _reads(self, instance: _Instance, w: WindowShape):
        """An event once the window's inputs are fetched: at once for local files; from Cloud
        Storage, its requests ``read_threads`` at a time and its bytes at the instance's rate."""
        env, p = self.env, self.p
        events = []
        if self.d.inputs_remote:
            requests = w.scenes * p.reads_per_scene
            events.append(env.timeout(math.ceil(requests / self.d.read_threads) * p.storage_latency_s))
            events.append(instance.net.run(w.bytes))
        return env.all_of(events)

    def _storage(self, net: SharedRate | None, requests: int, nbytes: float = 0.0):
        """``requests`` storage requests one after the other, the last carrying ``nbytes``."""
        events = [self.env.timeout(requests * self.p.storage_latency_s)]
        if nbytes and net is not None:
            events.append(net.run(nbytes))
        if nbytes and self.host is not None and self.p.storage_cpu_s_per_byte:
            events.append(self.host.run(nbytes * self.p.storage_cpu_s_per_byte, cap=1))
        yield self.env.all_of(events)

    # -- mosaic -----------------------------------------------------------------------------------

    def _land(self, tile: str) -> None:
        if tile in self.landed:
            return
        self.landed[tile] = self.env.now
        self._resolve()
        self.env.process(self._tile_event())

    def _tile_event(self):
        p, env = self.p, self.env
        yield env.timeout(p.event_latency_s)
        if self.mosaic_ready is None:
            cold = 0.0 if self.host else p.cold_start_s
            self.mosaic_billed += cold
            self.mosaic_ready = env.timeout(cold)
        yield self.mosaic_ready
        started = env.now
        yield self.host.run(p.mosaic_event_s, cap=1) if self.host else env.timeout(p.mosaic_event_s)
        if len(self.landed) == len(self.job.windows) and not self.building:
            self.building = True
            yield env.process(self._build(started))
            self.done.succeed()
        elif self.host is None:  # on the local cloud this stands for the emulators' share too: not billed
            self.mosaic_billed += env.now - started

    def _build(self, started: float):
        p, d, env, job = self.p, self.d, self.env, self.job
        self.mosaic_start = started
        tile_bytes = job.pixels * p.tile_bytes_per_pixel
        yield from self._storage(self.mosaic_net, p.mosaic_storage_requests)
        headers = env.timeout(math.ceil(len(job.windows) / _MOSAIC_HEADER_THREADS) * p.storage_latency_s)
        yield env.all_of([headers, env.process(self._storage(self.mosaic_net, 0, tile_bytes))])
        cap = min(p.mosaic_threads, d.mosaic_cpu if self.host is None else d.host_cores)
        yield self.mosaic_cpu.run(p.mosaic_fixed_s + job.pixels * p.mosaic_cpu_s_per_pixel, cap=cap)
        self.mosaic_built = env.now
        yield from self._storage(self.mosaic_net, 3, tile_bytes * p.cog_bytes_per_tile_byte)  # COG, VRT, quicklook
        yield from self._storage(self.mosaic_net, 1)  # job.json
        self.mosaic_billed += env.now - started

    # -- the outcome ------------------------------------------------------------------------------

    def result(self) -> Simulation:
        p, d, job = self.p, self.d, self.job
        if self.full_since is not None:
            self.full_intervals.append((self.full_since, self.env.now))
        executed = [a for a in self.attempts if a.number is not None]
        shapes = {w.tile: w for w in job.windows}
        cold = sum(1 for i in self.instances if i.cold)
        usage = Usage(
            windows=len(executed), scenes=job.scenes,
            median_seconds=sum(a.end - a.start for a in executed) + cold * p.cold_start_s,
            median_cpu=d.median_cpu, median_gib=d.median_memory_gib,
            mosaic_seconds=self.mosaic_billed, mosaic_cpu=d.mosaic_cpu, mosaic_gib=d.mosaic_memory_gib,
            input_reads=int(p.reads_per_scene * sum(shapes[a.tile].scenes for a in executed)),
            bytes_read=sum(shapes[a.tile].bytes for a in executed), message_bytes=job.message_bytes,
        )
        complete = not self.dead
        breakdown = dict.fromkeys(("fanout",), 0.0)
        if complete:
            last = max(executed, key=lambda a: a.landed)
            refusals = sorted((a for a in self.attempts if a.number is None and a.tile == last.tile),
                              key=lambda a: a.arrived)
            breakdown = critical_path(self.wall, self.published, last, refusals, self.full_intervals)
        figures = {
            "windows": len(job.windows),
            "refused_429": sum(1 for a in self.attempts if a.number is None),
            "executed_attempts": len(executed),
            "dead_lettered": len(self.dead),
            "cold_starts": cold,
            "peak_instances": len(self.instances),
            "peak_push_window": self.peak_window if math.isfinite(self.peak_window) else None,
            "seconds_per_window": round(sum(a.end - a.start for a in executed) / max(1, len(executed)), 3),
        }
        return Simulation(
            complete=complete, wall_s=self.wall, created_s=self.created, published_s=self.published,
            mosaic_start_s=self.mosaic_start, mosaic_built_s=self.mosaic_built, attempts=self.attempts,
            instances=[{"id": i.id, "started": i.started, "ready": i.ready} for i in self.instances],
            usage=usage, cost=usage.estimate(), breakdown=breakdown,
            bound=max(breakdown, key=breakdown.get) if complete else "dead letters", figures=figures,
        )
