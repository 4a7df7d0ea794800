"""The simulation's parameters: one table, each value with its unit and where it comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Param:
    """One parameter of the simulation.

    Attributes
    ----------
    value : float
        Its value, in ``unit``.
    unit : str
        Seconds (``s``), bytes, CPU-seconds per sample (one pixel of one scene), ...
    source : str
        Where the value comes from: ``measured:`` (the bench script and figure), ``published:``
        (Google's page), ``configured:`` (the code or Terraform) or ``assumed:`` (no published
        figure and nothing here can measure it: an assumption, with the reason for its value).
    """

    value: float
    unit: str
    source: str


_BENCHMARKS = "docs/benchmarks.md"
_PUSH_DOC = "https://cloud.google.com/pubsub/docs/push"
_SIM = "measured: bench/bench_sim.py (2026-12-02, 2 cores, load 0.0; demo and larger job, 25 windows)"

#: Every parameter of the simulation, for the deployed pipeline (Cloud Run functions, Pub/Sub
#: push, Cloud Storage). The local cloud's values replace some of them (bench/bench_sim.py
#: measures those on this machine). CPU figures are CPU-seconds of this machine's cores, taken
#: as one Cloud Run vCPU each. Settings Terraform chooses (instances, CPUs, concurrency,
#: backoff) are not here: see deployment.py.
PARAMETERS: Mapping[str, Param] = MappingProxyType({
    # -- Pub/Sub push ----------------------------------------------------------------------------
    "push_initial_window": Param(4, "pushes", f"published: {_PUSH_DOC}#delivery_rate (a slow start from 'a small "
                                 "single-digit window', +1 per success, halved per failure); 4 as the local "
                                 "cloud's emulator starts it (localcloud/pubsub/)"),
    "push_backoff_after": Param(3, "failures", f"published: {_PUSH_DOC}#push_backoff (push backoff after repeated "
                                "failures); 3 in a row as the local emulator (localcloud/pubsub/)"),
    "push_backoff_min_s": Param(0.1, "s", f"published: {_PUSH_DOC}#push_backoff (100 ms, doubling)"),
    "push_backoff_max_s": Param(60.0, "s", f"published: {_PUSH_DOC}#push_backoff (at most 60 s)"),
    "push_latency_s": Param(0.05, "s", "assumed: publish to push to a Cloud Run endpoint in the same region; "
                            "Google publishes no figure"),
    # -- Cloud Run instances --------------------------------------------------------------------
    "cold_start_s": Param(4.0, "s", "assumed: a Cloud Run instance from scheduling to serving (container "
                          "start, Python, functions-framework, main.py); Google publishes no figure. Here an "
                          "instance loads in 1-2 s (docs/concepts/local-cloud.md)"),
    "first_request_extra_s": Param(0.5, "s", "measured: bench/bench_coldstart.py, a fresh worker's first "
                                   "tile +0.50 s over the next (kernels library loaded, GDAL set up)"),
    "pending_timeout_s": Param(10.0, "s", "assumed: how long Cloud Run holds a request no instance can take "
                               "before answering 429 (no published figure; the local cloud's front end uses "
                               "10 s, localcloud/topology.toml)"),
    "request_cpu_s": Param(0.0012, "CPU-s", "measured: bench/bench_pubsub.py, CPU per push: front end "
                           "0.21-0.26 ms + functions-framework worker 0.77-1.03 ms (docs/benchmarks.md)"),
    # -- Cloud Storage ----------------------------------------------------------------------------
    "storage_latency_s": Param(0.04, "s", "assumed: one Cloud Storage request from a function in the bucket's "
                               "region, to its first byte (Google publishes no latency figure)"),
    "storage_instance_Bps": Param(100e6, "bytes/s", "assumed: the Cloud Storage throughput of one instance "
                                  "(Google publishes none for Cloud Run; Compute Engine caps egress, not "
                                  "ingress)"),
    "reads_per_scene": Param(2, "requests", "configured: one open and one ranged read per scene and window, "
                             "as the job record counts them (temporal_median/functions/mosaic.py _usage)"),
    "median_storage_requests": Param(5, "requests", "configured: temporal_median/functions/median.py, cancel "
                                     "and tile checks, attempt listing and claim before the work, the "
                                     "attempt's end record after (the tile upload apart)"),
    "mosaic_storage_requests": Param(8, "requests", "configured: temporal_median/functions/mosaic.py, manifest, "
                                     "record and cancel checks, tile listing, lock, attempts listing, record"),
    # -- fanout -----------------------------------------------------------------------------------
    "fanout_fixed_s": Param(0.036, "s", f"measured: bench/bench_fanout.py ({_BENCHMARKS}: POST to 202 0.23 s, of "
                            "which 216 headers 0.14 s and 121 messages 0.054 s; the rest)"),
    "fanout_scene_s": Param(0.00065, "s", f"measured: bench/bench_fanout.py ({_BENCHMARKS}: 216 headers "
                            "inspected in 0.14 s)"),
    "publish_s": Param(0.00045, "s", f"measured: bench/bench_fanout.py ({_BENCHMARKS}: 121 messages in 0.054 s)"),
    # -- median's CPU ----------------------------------------------------------------------------
    "decode_s_per_sample": Param(3.16e-9, "CPU-s", f"{_SIM}"
          ", a pure read of each window, per pixel of one scene (least squares with scene_s)"),
    "scene_s": Param(2.86e-3, "CPU-s", f"{_SIM}, per scene and window (open, checks), with decode_s_per_sample"),
    "kernel_s_per_sample_luminance": Param(1.17e-9, "CPU-s", f"{_SIM}"
          ", compute_tile less its read, per pixel of one scene (the tile write fits in it: "
          "write_s_per_pixel came out 0)"),
    "kernel_s_per_sample_per_band": Param(2.22e-9, "CPU-s", "measured: bench/bench_kernel.py, per-band / "
                                          "luminance = 0.305 / 0.161 s (docs/benchmarks.md) times the luminance figure"),
    "write_s_per_pixel": Param(0.0, "CPU-s", f"{_SIM}"
          ", fitted with the kernel (0: the write does not separate from it)"),
    "tile_bytes_per_pixel": Param(2.19, "bytes", f"{_SIM}"
          ", the tiles compute_tile writes for the sample series (4 bands, DEFLATE)"),
    # -- mosaic -------------------------------------------------------------------------------------
    "event_latency_s": Param(1.0, "s", "assumed: a tile finalized to the mosaic's CloudEvent (Cloud Storage "
                             "notification, Eventarc, push); Google publishes no figure"),
    "mosaic_event_s": Param(0.05, "s", "assumed: a tile event that is not the last (manifest read, tile "
                            "listing: a few storage requests)"),
    "mosaic_fixed_s": Param(0.377, "CPU-s", f"{_SIM}"
          ", build_mosaic from local tiles, fixed part (least squares over the two jobs)"),
    "mosaic_cpu_s_per_pixel": Param(3.65e-8, "CPU-s", f"{_SIM}, build_mosaic from local tiles, per output pixel"),
    "mosaic_threads": Param(1.43, "threads", f"{_SIM}, build_mosaic's CPU seconds over its wall seconds"),
    "cog_bytes_per_tile_byte": Param(1.33, "ratio", f"{_SIM}"
          ", the COG (tiles' blocks and overviews) over the tiles' bytes"),
    # -- the local cloud only (0 in the cloud) --------------------------------------------------
    "host_background_cores": Param(0.0, "cores", "configured: 0 in the cloud (each instance has its own "
                                   "CPUs); the local cloud's idle emulators and status polls, measured by "
                                   "bench/bench_sim.py"),
    "storage_cpu_s_per_byte": Param(0.0, "CPU-s", "configured: 0 in the cloud (Cloud Storage is not on our "
                                    "CPUs); the storage emulator's CPU per byte, measured by bench/bench_sim.py"),
    # -- jobs without data (plan --geometry) ----------------------------------------------------
    "input_bytes_per_sample": Param(0.845, "bytes", "measured: the course's granule, 216 scenes of 10980 x "
                                    "10980 x 3 bytes in about 22 GB of COGs (the course) = 0.282 of the pixels' bytes"),
})


@dataclass(frozen=True)
class Parameters:
    """The table in use: :data:`PARAMETERS`, with some values replaced (each with its new source).

    Read a value as an attribute (``params.cold_start_s``); :meth:`replace` gives a new table.
    """

    table: Mapping[str, Param] = field(default_factory=lambda: PARAMETERS)

    def __getattr__(self, name: str) -> float:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.table[name].value
        except KeyError:
            raise AttributeError(f"no simulation parameter {name!r}") from None

    def replace(self, source: str, **values: float) -> "Parameters":
        """A copy with ``values`` replaced, each now sourced ``source``; unknown names are a KeyError."""
        unknown = set(values) - set(self.table)
        if unknown:
            raise KeyError(f"unknown simulation parameters: {', '.join(sorted(unknown))}")
        table = dict(self.table)
        for name, value in values.items():
            table[name] = Param(float(value), table[name].unit, source)
        return Parameters(MappingProxyType(table))

    def to_dict(self) -> dict:
        """``{name: {"value", "unit", "source"}}``, JSON-safe."""
        return {name: {"value": p.value, "unit": p.unit, "source": p.source} for name, p in self.table.items()}
