"""The settings a pipeline runs with: Terraform's defaults, or the local cloud's topology."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from temporal_median.base.settings import Settings
from temporal_median.base.units import memory_gib

#: terraform/variables.tf defaults the simulation reads, by variable name, and the Deployment
#: field each sets (tests/test_plan.py checks them against variables.tf).
TERRAFORM_DEFAULTS = {
    "median_max_instances": ("median_max_instances", 12),
    "median_concurrency": ("median_concurrency", 1),
    "median_cpu": ("median_cpu", "1"),
    "median_memory": ("median_memory_gib", "2Gi"),
    "mosaic_cpu": ("mosaic_cpu", "2"),
    "mosaic_memory": ("mosaic_memory_gib", "4Gi"),
    "read_threads": ("read_threads", 16),
    "push_min_backoff_seconds": ("push_min_backoff_s", 10),
    "push_max_backoff_seconds": ("push_max_backoff_s", 600),
    "push_max_delivery_attempts": ("push_max_delivery_attempts", 100),
    "median_max_attempts": ("max_attempts", 5),
}


def _value(field: str, value):
    return memory_gib(value) if field.endswith("_gib") else float(value) if field.endswith("_cpu") else int(value)


@dataclass(frozen=True)
class Deployment:
    """How the pipeline is deployed: what Terraform sets, and where the local cloud differs.

    Attributes
    ----------
    median_max_instances, median_min_instances : int
        Most median instances at once; instances kept ready before the job (0 in the cloud;
        the local cloud starts all of them at ``up``).
    median_concurrency : int
        Requests one median instance serves at once.
    median_cpu, median_memory_gib, mosaic_cpu, mosaic_memory_gib : float
        Instance sizes (vCPUs, GiB).
    read_threads : int
        Threads reading scenes in one median request (TM_READ_THREADS).
    push_min_backoff_s, push_max_backoff_s : float
        The push subscription's retry policy.
    push_max_delivery_attempts, max_attempts : int
        Deliveries before the dead letter; executed attempts median allows.
    push_max_window : int or None
        Most pushes in flight (None: Pub/Sub publishes no limit; the builtin emulator: its
        ``max_concurrency``).
    host_cores : float or None
        None in the cloud (each instance has its own CPUs); on the local cloud, the cores
        every instance, emulator and the mosaic share.
    inputs_remote : bool
        Inputs read from Cloud Storage (True) or local files (the local cloud's samples).
    """

    median_max_instances: int = 12
    median_min_instances: int = 0
    median_concurrency: int = 1
    median_cpu: float = 1.0
    median_memory_gib: float = 2.0
    mosaic_cpu: float = 2.0
    mosaic_memory_gib: float = 4.0
    read_threads: int = 16
    push_min_backoff_s: float = 10.0
    push_max_backoff_s: float = 600.0
    push_max_delivery_attempts: int = 100
    max_attempts: int = 5
    push_max_window: int | None = None
    host_cores: float | None = None
    inputs_remote: bool = True

    @classmethod
    def terraform(cls) -> "Deployment":
        """Terraform's defaults (:data:`TERRAFORM_DEFAULTS`)."""
        return cls(**{field: _value(field, value) for field, value in TERRAFORM_DEFAULTS.values()})

    @classmethod
    def from_settings(cls, settings: Settings) -> "Deployment":
        """Terraform's defaults with the instance sizes and reading threads a function's settings
        carry (TM_MEDIAN_CPU, TM_MEDIAN_MEMORY, TM_MOSAIC_*, TM_READ_THREADS, TM_MAX_ATTEMPTS)."""
        return replace(
            cls.terraform(),
            median_cpu=float(settings.median_cpu), median_memory_gib=settings.median_memory_gib,
            mosaic_cpu=float(settings.mosaic_cpu), mosaic_memory_gib=settings.mosaic_memory_gib,
            read_threads=settings.read_threads or 16, max_attempts=settings.max_attempts,
        )

    def with_median(self, max_instances: int, concurrency: int, cpu: float) -> "Deployment":
        """These median settings, with the least memory Cloud Run allows that holds ``concurrency``
        windows (2 GiB each: bench/bench_memory.py, up to 1029 MiB per window reading gs://)."""
        return replace(self, median_max_instances=max_instances, median_concurrency=concurrency, median_cpu=cpu,
                       median_memory_gib=fit_memory(cpu, 2.0 * concurrency))

    def with_mosaic(self, cpu: float) -> "Deployment":
        """The mosaic on ``cpu`` vCPUs, its memory kept or raised to what Cloud Run requires."""
        return replace(self, mosaic_cpu=cpu, mosaic_memory_gib=fit_memory(cpu, self.mosaic_memory_gib))

    def to_dict(self) -> dict:
        return asdict(self)


def fit_memory(cpu: float, at_least_gib: float) -> float:
    """The least memory Cloud Run accepts with ``cpu`` vCPUs that holds ``at_least_gib``.

    Cloud Run allows at most 4 GiB per vCPU and at least 2 GiB with 4 vCPUs, 4 GiB with 6 or 8
    (https://cloud.google.com/run/docs/configuring/services/memory-limits, as
    terraform/variables.tf checks it); sizes are powers of two from 1 GiB.

    Raises
    ------
    ValueError
        If ``cpu`` vCPUs cannot have that much memory.
    """
    floor = 4.0 if cpu >= 6 else 2.0 if cpu >= 4 else 1.0
    gib = 2.0 ** math.ceil(math.log2(max(at_least_gib, floor, 1.0)))
    if gib > 4 * cpu:
        raise ValueError(f"{cpu:g} vCPU take at most {4 * cpu:g} GiB, {gib:g} GiB needed")
    return gib
