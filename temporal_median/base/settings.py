"""Settings, read once from the environment into one immutable object, by the table of variables below.

Every variable the functions read is a row of :data:`VARIABLES`: its name, the field of
:class:`Settings` it sets, its default as written in the environment, and its meaning (the
documentation's settings page is generated from the same rows). GDAL's own variables
(CPL_MACHINE_IS_GCE, CPL_GS_ENDPOINT, GS_NO_SIGN_REQUEST, GDAL_CACHEMAX...) are passed to GDAL
as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping

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
        """Read the variables of :data:`VARIABLES`; raise InvalidRequest on bad values."""
        env = os.environ if environ is None else environ
        values = {}
        for variable in VARIABLES:
            raw = env.get(variable.name)
            if raw is None or (variable.blank_is_default and not raw):
                raw = variable.default
            values[variable.field] = variable.read(variable.name, raw)
        return cls(**values)


def _text(name: str, value: str) -> str:
    return value


def _url(name: str, value: str) -> str:
    return value.rstrip("/")


def _count(name: str, value: str) -> int:
    return _int(name, value, minimum=0)


def _level(name: str, value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise InvalidRequest(f"{name} must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return level


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Variable:
    """One environment variable: the :class:`Settings` field it sets, its default and meaning."""

    name: str
    field: str
    #: The value an unset variable has, as it would be written in the environment.
    default: str
    description: str
    #: ``read(name, value)``: the field's value, or InvalidRequest naming the variable.
    read: Callable[[str, str], object]
    #: An empty value counts as unset (else it is read as given).
    blank_is_default: bool = False


#: Every variable the functions read, in the order the documentation lists them.
VARIABLES: tuple[Variable, ...] = (
    Variable("GOOGLE_CLOUD_PROJECT", "project", "local-project",
             "Project that owns the topics (set by the Cloud Functions runtime).", _text, blank_is_default=True),
    Variable("TM_WINDOWS_TOPIC", "windows_topic", "windows", "Topic id fanout publishes window messages to.", _text),
    Variable("TM_WORK_URL", "work_url", "gs://tm-work",
             "Where manifests, tiles and error records go (the bucket the mosaic trigger watches).", _url),
    Variable("TM_RESULTS_URL", "results_url", "gs://tm-results",
             "Default output location of mosaics (a request's `output` overrides it).", _url),
    Variable("TM_ALLOW_LOCAL_PATHS", "allow_local_paths", "false",
             "Accept local file paths as inputs (the local cloud only): true/false, 1/0, yes/no, on/off.", _bool),
    Variable("TM_MAX_INPUTS", "max_inputs", "1000",
             "Most inputs (scenes, STAC items) one job may have.", _int),
    Variable("TM_MAX_WINDOWS", "max_windows", "2500",
             "Most windows (tiles) one job's output grid may have (an area's bbox and resolution decide how "
             "many).", _int),
    Variable("TM_MAX_REQUEST_BYTES", "max_request_bytes", str(1 << 20), "Largest fanout request body, in bytes.",
             _int),
    Variable("TM_MAX_EVENT_AGE_SECONDS", "max_event_age_seconds", "86400",
             "median drops events older than this.", _int),
    Variable("TM_MAX_ATTEMPTS", "max_attempts", "5",
             "Executed attempts of a window: median counts its own (Pub/Sub's deliveryAttempt counts refusals "
             "too, and is not always sent); after this many failures the window is recorded as failed and "
             "acknowledged.", _int),
    Variable("TM_MOSAIC_LOCK_SECONDS", "mosaic_lock_seconds", "60",
             "The mosaic lock's lease: renewed every third of it while building; a lock not renewed for this "
             "long is stale.", _int),
    Variable("TM_READ_THREADS", "read_threads", "0",
             "Threads reading scenes concurrently; 0 = one per core for local files, 16 for gs:// and https://.",
             _count),
    Variable("TM_LOG_LEVEL", "log_level", "INFO", "DEBUG, INFO, WARNING or ERROR (any case).", _level),
    Variable("TM_MEDIAN_CPU", "median_cpu", "1",
             "vCPUs of one median instance, as deployed (a whole number): the job record's cost estimate "
             "prices them (temporal_median/job/cost.py).", _int),
    Variable("TM_MEDIAN_MEMORY", "median_memory_gib", "2Gi",
             "Memory of one median instance, as deployed (`2Gi`, `512Mi`...), priced likewise.", _memory),
    Variable("TM_MOSAIC_CPU", "mosaic_cpu", "2", "vCPUs of the mosaic instance, as deployed, priced likewise.", _int),
    Variable("TM_MOSAIC_MEMORY", "mosaic_memory_gib", "4Gi",
             "Memory of the mosaic instance, as deployed, priced likewise.", _memory),
)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
