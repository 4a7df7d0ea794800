"""Settings the simulation recommends: a small search over median's instances, concurrency and CPUs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from temporal_median.plan.deployment import Deployment
from temporal_median.plan.model import JobShape, Simulation
from temporal_median.plan.parameters import Parameters
from temporal_median.plan.simulate import simulate

#: Within this share of the fastest wall time, the cheaper settings win.
NEAR_FASTEST = 0.05


@dataclass(frozen=True)
class Candidate:
    """One setting tried and its simulated run."""

    deployment: Deployment
    simulation: Simulation

    def to_dict(self) -> dict:
        d = self.deployment
        return {"median_max_instances": d.median_max_instances, "median_concurrency": d.median_concurrency,
                "median_cpu": d.median_cpu, "median_memory_gib": d.median_memory_gib, "mosaic_cpu": d.mosaic_cpu,
                "mosaic_memory_gib": d.mosaic_memory_gib,
                "wall_seconds": round(self.simulation.wall_s, 2), "usd_total": self.simulation.usd,
                "bound": self.simulation.bound, "refused_429": self.simulation.figures["refused_429"]}


def recommend(job: JobShape, base: Deployment, parameters: Parameters | None = None, *,
              instances: tuple[int, ...] | None = None, concurrency: tuple[int, ...] = (1, 2),
              cpus: tuple[float, ...] = (1.0, 2.0, 4.0), mosaic_cpus: tuple[float, ...] = (2.0, 4.0),
              usd_goal: float | None = None, max_median_vcpus: float | None = None) -> tuple[Candidate, list]:
    """Simulate ``job`` on each combination of median (and mosaic) settings and pick one.

    Parameters
    ----------
    job : JobShape
    base : Deployment
        Everything but median's max instances, concurrency, CPUs and memory (the least memory
        Cloud Run allows that holds ``concurrency`` windows: :meth:`Deployment.with_median`).
    parameters : Parameters, optional
    instances : tuple of int, optional
        Max instances tried; default ``base``'s (Terraform's default), 50 (the course's), 100,
        and one instance per window (all windows at once), however many that is.
    concurrency, cpus, mosaic_cpus : tuple
        Values tried (the mosaic keeps its memory, or the least Cloud Run allows with its vCPUs).
    usd_goal : float, optional
        Settings costing more are only chosen when none costs less.
    max_median_vcpus : float, optional
        Median's share of the region's Cloud Run CPU quota: max instances x vCPUs stays within
        it (for each vCPU size the most instances that fit are tried too).

    Returns
    -------
    (Candidate, list of Candidate)
        The fastest setting within ``usd_goal`` (among those within :data:`NEAR_FASTEST` of
        it, the cheapest), and every setting tried, fastest first.
    """
    parameters = parameters or Parameters()
    instances = instances or tuple(sorted({base.median_max_instances, 50, 100, len(job.windows)}))
    tried = []
    for cpu, per_instance, mosaic_cpu in itertools.product(cpus, concurrency, mosaic_cpus):
        counts = set(instances)
        if max_median_vcpus is not None:
            counts = {n for n in counts if n * cpu <= max_median_vcpus} | {int(max_median_vcpus // cpu)} - {0}
        for count in sorted(counts):
            tried.append(_candidate(job, base, parameters, count, per_instance, cpu, mosaic_cpu))
    tried = [c for c in tried if c is not None]
    tried.sort(key=lambda c: (c.simulation.wall_s, c.simulation.usd))
    affordable = [c for c in tried if c.simulation.complete and (usd_goal is None or c.simulation.usd <= usd_goal)]
    pool = affordable or sorted(tried, key=lambda c: c.simulation.usd)[:1]
    fastest = min(c.simulation.wall_s for c in pool)
    near = [c for c in pool if c.simulation.wall_s <= fastest * (1 + NEAR_FASTEST)]
    return min(near, key=lambda c: (c.simulation.usd, c.simulation.wall_s)), tried


def _candidate(job, base, parameters, count, per_instance, cpu, mosaic_cpu) -> Candidate | None:
    try:
        deployment = base.with_median(count, per_instance, cpu).with_mosaic(mosaic_cpu)
    except ValueError:
        return None  # no memory size Cloud Run allows holds that many windows
    return Candidate(deployment, simulate(job, deployment, parameters))
