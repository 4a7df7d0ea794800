"""Settings, read once from the environment into one immutable object.

Every variable the functions read is listed here, with its default:

==========================  ====================================================  ==================
Variable                    Meaning                                               Default
==========================  ====================================================  ==================
GOOGLE_CLOUD_PROJECT        project that owns the topics                          ``local-project``
TM_WINDOWS_TOPIC            topic id fanout publishes window messages to          ``windows``
TM_WORK_URL                 where manifests, tiles and error records go           ``gs://tm-work``
                            (the bucket the mosaic trigger watches)
TM_RESULTS_URL              default output location of mosaics                    ``gs://tm-results``
TM_ALLOW_LOCAL_PATHS        accept local file paths as inputs (local cloud only)  ``false``
TM_MAX_INPUTS               most inputs one job may have                          ``1000``
TM_MAX_WINDOWS              most windows (tiles) one job's output grid may have   ``2500``
                            (an area's bbox and resolution decide how many)
TM_MAX_REQUEST_BYTES        largest fanout request body                           ``1048576``
TM_MAX_EVENT_AGE_SECONDS    median drops events older than this                   ``86400``
TM_MAX_ATTEMPTS             executed attempts of a window: median counts its own  ``5``
                            (Pub/Sub's deliveryAttempt counts refusals too, and
                            is not always sent); after this many failures the
                            window is recorded as failed and acknowledged
TM_MOSAIC_LOCK_SECONDS      mosaic lock lease: renewed every third of it while    ``60``
                            building; a lock not renewed for this long is stale
TM_MEDIAN_CPU               vCPUs and memory of one median instance and of the    ``1``, ``2Gi``,
TM_MEDIAN_MEMORY            mosaic instance, as deployed: the job record's cost   ``2``, ``4Gi``
TM_MOSAIC_CPU               estimate prices them (temporal_median/job/cost.py)
TM_MOSAIC_MEMORY
TM_READ_THREADS             threads reading scenes concurrently; 0 = one per      ``0``
                            core for local files, 16 for gs:// and https://
TM_LOG_LEVEL                DEBUG, INFO, WARNING or ERROR                         ``INFO``
==========================  ====================================================  ==================

GDAL's own variables (CPL_MACHINE_IS_GCE, CPL_GS_ENDPOINT, GS_NO_SIGN_REQUEST, GDAL_CACHEMAX...)
are passed to GDAL as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Mapping

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.units import memory_gib

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which taskset and cpusets narrow;
    ``os.cpu_count()`` where the platform has none): what reading and median threads size by."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidRequest(f"{name} must be true or false, got {value!r}")


def _int(name: str, value: str, minimum: int = 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise InvalidRequest(f"{name} must be at least {minimum}, got {number}")
    return number


def _memory(name: str, value: str) -> float:
    try:
        return memory_gib(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Configuration of the functions; build it with :meth:`from_env`."""

    project: str = "local-project"
    windows_topic: str = "windows"
    work_url: str = "gs://tm-work"
    results_url: str = "gs://tm-results"
    allow_local_paths: bool = False
    max_inputs: int = 1000
    max_windows: int = 2500
    max_request_bytes: int = 1 << 20
    max_event_age_seconds: int = 86400
    max_attempts: int = 5
    mosaic_lock_seconds: int = 60
    read_threads: int = 0
    log_level: str = "INFO"
    median_cpu: float = 1.0
    median_memory_gib: float = 2.0
    mosaic_cpu: float = 2.0
    mosaic_memory_gib: float = 4.0

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.windows_topic}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read the variables listed in this module's docstring; raise InvalidRequest on bad values."""
        env = os.environ if environ is None else environ
        defaults = {f.name: f.default for f in fields(cls)}
        level = env.get("TM_LOG_LEVEL", defaults["log_level"]).upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise InvalidRequest(f"TM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or defaults["project"],
            windows_topic=env.get("TM_WINDOWS_TOPIC", defaults["windows_topic"]),
            work_url=env.get("TM_WORK_URL", defaults["work_url"]).rstrip("/"),
            results_url=env.get("TM_RESULTS_URL", defaults["results_url"]).rstrip("/"),
            allow_local_paths=_bool("TM_ALLOW_LOCAL_PATHS", env.get("TM_ALLOW_LOCAL_PATHS", "false")),
            max_inputs=_int("TM_MAX_INPUTS", env.get("TM_MAX_INPUTS", str(defaults["max_inputs"]))),
            max_windows=_int("TM_MAX_WINDOWS", env.get("TM_MAX_WINDOWS", str(defaults["max_windows"]))),
            max_request_bytes=_int(
                "TM_MAX_REQUEST_BYTES", env.get("TM_MAX_REQUEST_BYTES", str(defaults["max_request_bytes"]))
            ),
            max_event_age_seconds=_int(
                "TM_MAX_EVENT_AGE_SECONDS",
                env.get("TM_MAX_EVENT_AGE_SECONDS", str(defaults["max_event_age_seconds"])),
            ),
            max_attempts=_int("TM_MAX_ATTEMPTS", env.get("TM_MAX_ATTEMPTS", str(defaults["max_attempts"]))),
            mosaic_lock_seconds=_int(
                "TM_MOSAIC_LOCK_SECONDS", env.get("TM_MOSAIC_LOCK_SECONDS", str(defaults["mosaic_lock_seconds"]))
            ),
            read_threads=_int(
                "TM_READ_THREADS", env.get("TM_READ_THREADS", str(defaults["read_threads"])), minimum=0
            ),
            log_level=level,
            median_cpu=_int("TM_MEDIAN_CPU", env.get("TM_MEDIAN_CPU", "1")),
            median_memory_gib=_memory("TM_MEDIAN_MEMORY", env.get("TM_MEDIAN_MEMORY", "2Gi")),
            mosaic_cpu=_int("TM_MOSAIC_CPU", env.get("TM_MOSAIC_CPU", "2")),
            mosaic_memory_gib=_memory("TM_MOSAIC_MEMORY", env.get("TM_MOSAIC_MEMORY", "4Gi")),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
