"""What a job cost: its measured usage priced with one documented table of list prices."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: List prices in USD (Tier 1 regions such as europe-west1, us-central1), the one table every
#: estimate uses. Cloud Functions (2nd gen) is billed as Cloud Run services with request-based
#: billing: CPU and memory while a request is handled, plus requests.
#: https://cloud.google.com/run/pricing, https://cloud.google.com/storage/pricing,
#: https://cloud.google.com/pubsub/pricing (read 2026-12; free tiers ignored).
PRICES = {
    "vcpu_second": 0.000024,
    "gib_second": 0.0000025,
    "request": 0.40 / 1_000_000,
    # Standard storage operations: uploads and listings are Class A, reads and metadata Class B.
    "class_a_operation": 0.005 / 1000,
    "class_b_operation": 0.0004 / 1000,
    # Pub/Sub throughput, each message counted as at least 1 kB.
    "pubsub_tib": 40.0,
}

#: Storage operations of one executed window besides its input reads: cancel and tile checks,
#: attempt listing (B); the attempt record and the tile upload (A).
_WINDOW_OPS_A, _WINDOW_OPS_B = 3, 3
#: Per job: manifest, resume/cancel checks, results, lock and its renewals, record (A); status
#: and manifest reads, tile listing (B).
_JOB_OPS_A, _JOB_OPS_B = 10, 10


@dataclass(frozen=True)
class Usage:
    """What a job used, from its measured figures.

    Attributes
    ----------
    windows : int
        Windows computed (median requests).
    scenes : int
        Input scenes each window reads.
    median_seconds : float
        Sum over windows of the seconds median spent on each (billed instance time).
    median_cpu, median_gib : float
        vCPUs and GiB of one median instance.
    mosaic_seconds : float
        Seconds the mosaic took.
    mosaic_cpu, mosaic_gib : float
        vCPUs and GiB of the mosaic instance.
    input_reads : int
        Ranged reads of the inputs (Class B): one open and at least one block read per scene
        and window, more where a window spans several chunks of block rows.
    bytes_read : int
        Compressed input bytes read (no egress charge within the region).
    message_bytes : int
        Bytes of the window messages published.
    """

    windows: int
    scenes: int
    median_seconds: float
    median_cpu: float
    median_gib: float
    mosaic_seconds: float
    mosaic_cpu: float
    mosaic_gib: float
    input_reads: int
    bytes_read: int
    message_bytes: int

    @property
    def class_a(self) -> int:
        return _WINDOW_OPS_A * self.windows + _JOB_OPS_A

    @property
    def class_b(self) -> int:
        return self.input_reads + _WINDOW_OPS_B * self.windows + _JOB_OPS_B

    def estimate(self, prices: dict | None = None) -> dict:
        """The usage and its price, line by line, in USD (rounded to 1e-6).

        Parameters
        ----------
        prices : dict, optional
            Overrides of :data:`PRICES`.

        Returns
        -------
        dict
            ``usage`` (vCPU-seconds, GiB-seconds, operations, bytes), ``usd`` per line and
            ``usd_total``, and the ``prices`` used.
        """
        p = {**PRICES, **(prices or {})}
        vcpu_s = self.median_seconds * self.median_cpu + self.mosaic_seconds * self.mosaic_cpu
        gib_s = self.median_seconds * self.median_gib + self.mosaic_seconds * self.mosaic_gib
        pubsub_bytes = max(self.message_bytes, 1000 * self.windows)
        usd = {
            "cpu": vcpu_s * p["vcpu_second"],
            "memory": gib_s * p["gib_second"],
            "requests": (self.windows + 1) * p["request"],
            "class_a": self.class_a * p["class_a_operation"],
            "class_b": self.class_b * p["class_b_operation"],
            "pubsub": pubsub_bytes / 2**40 * p["pubsub_tib"],
        }
        return {
            "usage": {
                **asdict(self),
                "vcpu_seconds": round(vcpu_s, 3),
                "gib_seconds": round(gib_s, 3),
                "class_a_operations": self.class_a,
                "class_b_operations": self.class_b,
            },
            "usd": {name: round(value, 6) for name, value in usd.items()},
            "usd_total": round(sum(usd.values()), 6),
            "prices": p,
        }
