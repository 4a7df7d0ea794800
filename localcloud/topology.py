"""The local cloud's one declarative description: buckets, topics, subscriptions, triggers, functions.

Parsed from TOML (see localcloud/topology.toml for the pipeline's, with every key explained) into
frozen value objects. Ports are overridable from the environment (LOCALCLOUD_PUBSUB_PORT,
LOCALCLOUD_STORAGE_PORT, LOCALCLOUD_<FUNCTION>_PORT); port 0 means "any free port".
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .push_formats import CLOUDEVENT, OBJECT_FINALIZED, PUBSUB, STORAGE_FINALIZED
from .push_formats import STORAGE_EVENT_TYPES as _NOTIFICATION_EVENT_TYPES
from .topology_toml import Table, TopologyError, deep_merge  # the last two imported from here too

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.toml")
SIGNATURE_TYPES = ("http", "cloudevent")
# Which Pub/Sub emulator runs: Google's (gcloud beta emulators pubsub) when installed, else ours.
EMULATOR_CHOICES = ("auto", "google", "builtin")
EMULATOR_ENV = "LOCALCLOUD_PUBSUB_EMULATOR"
# Eventarc's Cloud Storage event types and the GCS notification eventType each comes from.
STORAGE_EVENT_TYPES = {ce_type: gcs_type for gcs_type, ce_type in _NOTIFICATION_EVENT_TYPES.items()}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9\-_.]{1,61}[a-z0-9]$")
_FUNCTION = re.compile(r"^[a-z][a-z0-9\-_]{0,62}$")


@dataclass(frozen=True)
class Subscription:
    """A Pub/Sub subscription; push when it has an endpoint or a function, pull otherwise."""

    name: str
    topic: str
    push_function: str = ""
    push_endpoint: str = ""
    format: str = PUBSUB
    filter: str = ""
    ack_deadline_seconds: int = 10
    push_ack_deadline_seconds: float | None = None
    min_backoff_seconds: float = 10.0
    max_backoff_seconds: float = 600.0
    dead_letter_topic: str = ""
    max_delivery_attempts: int = 5
    max_concurrency: int = 1
    # Storage triggers only: what the Eventarc adapter delivers (bucket, CloudEvent type).
    bucket: str = ""
    event_type: str = ""

    @property
    def is_push(self) -> bool:
        return bool(self.push_function or self.push_endpoint)

    @property
    def via_eventarc(self) -> bool:
        """Delivered as CloudEvents through the local Eventarc adapter (a plain push to it)."""
        return self.is_push and self.format != PUBSUB


@dataclass(frozen=True)
class Function:
    """A function served on 127.0.0.1 as Cloud Run serves it: a front end admitting at most
    ``max_instances x concurrency`` requests, each instance a functions-framework process."""

    name: str
    source: Path
    target: str
    signature_type: str
    port: int
    max_instances: int
    concurrency: int
    timeout_seconds: float = 540.0
    pending_timeout_seconds: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def port_env_var(self) -> str:
        return port_env_var(self.name)

    # The names of the gunicorn era, still read by benchmarks.
    @property
    def workers(self) -> int:
        return self.max_instances

    @property
    def threads(self) -> int:
        return self.concurrency


def port_env_var(function_name: str) -> str:
    """The environment variable that overrides a function server's port."""
    return "LOCALCLOUD_" + re.sub(r"[^A-Z0-9]", "_", function_name.upper()) + "_PORT"


@dataclass(frozen=True)
class Topology:
    """Everything the local cloud creates, from one TOML file."""

    path: Path | None
    project: str
    pubsub_port: int
    pubsub_emulator: str
    default_concurrency: int
    eventarc_port: int
    storage_enabled: bool
    storage_port: int
    notifications_topic: str
    buckets: tuple[str, ...]
    topics: tuple[str, ...]
    subscriptions: tuple[Subscription, ...]
    functions: tuple[Function, ...]
    function_env: Mapping[str, str]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        overrides: Mapping | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> "Topology":
        """Read a topology file (default: localcloud/topology.toml), with optional deep-merged overrides."""
        path = Path(path) if path is not None else DEFAULT_TOPOLOGY
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise TopologyError(f"topology file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TopologyError(f"{path}: {exc}") from None
        return cls.from_dict(deep_merge(data, overrides or {}), path=path, environ=environ)

    @classmethod
    def from_dict(
        cls, data: Mapping, *, path: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> "Topology":
        """Build from parsed TOML; relative paths resolve against ``root`` (itself relative to the file)."""
        environ = os.environ if environ is None else environ
        cpus = os.cpu_count() or 1
        where = str(path) if path else "topology"
        top = Table(dict(data), where)
        project = top.get("project", str, "local-project")
        base = path.parent if path else Path.cwd()
        root = (base / top.get("root", str, ".")).resolve()

        pubsub = Table(top.get("pubsub", dict, {}), f"{where} [pubsub]")
        pubsub_port = pubsub.port("port", 8685, "LOCALCLOUD_PUBSUB_PORT", environ)
        default_concurrency = pubsub.count("default_max_concurrency", "cpu", cpus)
        pubsub_emulator = pubsub.get("emulator", str, "auto")
        if environ.get(EMULATOR_ENV):
            pubsub_emulator = environ[EMULATOR_ENV]
        if pubsub_emulator not in EMULATOR_CHOICES:
            raise TopologyError(
                f"{where} [pubsub].emulator (or {EMULATOR_ENV}) must be one of {EMULATOR_CHOICES}, got {pubsub_emulator!r}"
            )
        pubsub.done()

        eventarc = Table(top.get("eventarc", dict, {}), f"{where} [eventarc]")
        eventarc_port = eventarc.port("port", 0, "LOCALCLOUD_EVENTARC_PORT", environ)
        eventarc.done()

        storage = Table(top.get("storage", dict, {}), f"{where} [storage]")
        storage_enabled = storage.get("enabled", bool, True)
        storage_port = storage.port("port", 8686, "LOCALCLOUD_STORAGE_PORT", environ)
        notifications_topic = storage.get("notifications_topic", str, "gcs-notifications")
        storage.done()

        buckets = tuple(top.get("buckets", list, []))
        for bucket in buckets:
            if not isinstance(bucket, str) or not _BUCKET.match(bucket):
                raise TopologyError(f"{where}: invalid bucket name {bucket!r}")
        topics = list(top.get("topics", list, []))
        if storage_enabled and notifications_topic not in topics:
            topics.append(notifications_topic)
        for topic in topics:
            if not isinstance(topic, str) or not _NAME.match(topic):
                raise TopologyError(f"{where}: invalid topic id {topic!r}")

        function_env = top.get("function_env", dict, {})
        functions = []
        for name, spec in top.get("functions", dict, {}).items():
            functions.append(_function(name, spec, f"{where} [functions.{name}]", root, cpus, environ))
        function_names = {f.name for f in functions}

        subscriptions = []
        for name, spec in top.get("subscriptions", dict, {}).items():
            subscriptions.append(_subscription(name, spec, f"{where} [subscriptions.{name}]", cpus))
        for name, spec in top.get("triggers", dict, {}).items():
            if not storage_enabled:
                raise TopologyError(f"{where} [triggers.{name}]: storage triggers need [storage] enabled")
            subscriptions.append(_trigger(name, spec, f"{where} [triggers.{name}]", cpus, notifications_topic))
        top.done()

        for sub in subscriptions:
            for topic in (sub.topic, sub.dead_letter_topic):
                if topic and topic not in topics:
                    raise TopologyError(f"{where}: subscription {sub.name} names undeclared topic {topic!r}")
            if sub.push_function and sub.push_function not in function_names:
                raise TopologyError(f"{where}: subscription {sub.name} pushes to undeclared function {sub.push_function!r}")
        uses_eventarc = any(s.via_eventarc for s in subscriptions)
        ports = [p for p in [pubsub_port, storage_port if storage_enabled else 0, eventarc_port if uses_eventarc else 0]
                 + [f.port for f in functions] if p]
        if len(ports) != len(set(ports)):
            raise TopologyError(f"{where}: two parts share a port: {sorted(ports)}")
        return cls(
            path=path,
            project=project,
            pubsub_port=pubsub_port,
            pubsub_emulator=pubsub_emulator,
            default_concurrency=default_concurrency,
            eventarc_port=eventarc_port,
            storage_enabled=storage_enabled,
            storage_port=storage_port,
            notifications_topic=notifications_topic,
            buckets=buckets,
            topics=tuple(topics),
            subscriptions=tuple(subscriptions),
            functions=tuple(functions),
            function_env={str(k): str(v) for k, v in function_env.items()},
        )

    @property
    def uses_eventarc(self) -> bool:
        """True when some subscription delivers CloudEvents, i.e. the Eventarc adapter must run."""
        return any(s.via_eventarc for s in self.subscriptions)

    def function(self, name: str) -> Function:
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(f"no function {name!r} in the topology; it has {[f.name for f in self.functions]}")


def _function(name: str, spec: Any, where: str, root: Path, cpus: int, environ: Mapping[str, str]) -> Function:
    if not _FUNCTION.match(name):
        raise TopologyError(f"{where}: invalid function name {name!r}")
    table = Table(spec, where)
    source = table.get("source", str)
    if not source:
        raise TopologyError(f"{where}.source is required (path of the function's main.py)")
    signature_type = table.get("signature_type", str, "http")
    if signature_type not in SIGNATURE_TYPES:
        raise TopologyError(f"{where}.signature_type must be one of {SIGNATURE_TYPES}, got {signature_type!r}")
    # max_instances / concurrency, as Cloud Run names them; workers / threads are older aliases.
    for new, old in (("max_instances", "workers"), ("concurrency", "threads")):
        if new in table.data and old in table.data:
            raise TopologyError(f"{where}: give {new} or its alias {old}, not both")
    max_instances = table.count("max_instances" if "max_instances" in table.data else "workers", 1, cpus)
    concurrency = table.count("concurrency" if "concurrency" in table.data else "threads", 1, cpus)
    table.used.update({"max_instances", "workers", "concurrency", "threads"})
    function = Function(
        name=name,
        source=(root / source).resolve(),
        target=table.get("target", str, name),
        signature_type=signature_type,
        port=table.port("port", 0, port_env_var(name), environ),
        max_instances=max_instances,
        concurrency=concurrency,
        timeout_seconds=table.number("timeout_seconds", 540, 0.01, 3600),
        pending_timeout_seconds=table.number("pending_timeout_seconds", 10, 0, 600),
        env={str(k): str(v) for k, v in table.get("env", dict, {}).items()},
    )
    table.done()
    return function


def _delivery_settings(table: Table, cpus: int) -> dict:
    push_deadline = table.get("push_ack_deadline_seconds", (int, float))
    if push_deadline is not None and not 0 < push_deadline <= 600:
        raise TopologyError(f"{table.where}.push_ack_deadline_seconds must be within (0, 600], got {push_deadline}")
    settings = dict(
        ack_deadline_seconds=int(table.number("ack_deadline_seconds", 10, 10, 600)),
        push_ack_deadline_seconds=None if push_deadline is None else float(push_deadline),
        min_backoff_seconds=table.number("min_backoff_seconds", 10.0, 0, 600),
        max_backoff_seconds=table.number("max_backoff_seconds", 600.0, 0, 600),
        dead_letter_topic=table.get("dead_letter_topic", str, ""),
        max_delivery_attempts=int(table.number("max_delivery_attempts", 5, 5, 100)),
        max_concurrency=table.count("max_concurrency", "cpu", cpus),
    )
    if settings["min_backoff_seconds"] > settings["max_backoff_seconds"]:
        raise TopologyError(f"{table.where}: min_backoff_seconds exceeds max_backoff_seconds")
    return settings


def _subscription(name: str, spec: Any, where: str, cpus: int) -> Subscription:
    if not _NAME.match(name):
        raise TopologyError(f"{where}: invalid subscription id {name!r}")
    table = Table(spec, where)
    fmt = table.get("format", str, PUBSUB)
    if fmt not in (PUBSUB, CLOUDEVENT):
        raise TopologyError(f"{where}.format must be one of {(PUBSUB, CLOUDEVENT)}, got {fmt!r}")
    sub = Subscription(
        name=name,
        topic=table.get("topic", str, ""),
        push_function=table.get("push_function", str, ""),
        push_endpoint=table.get("push_endpoint", str, ""),
        format=fmt,
        filter=table.get("filter", str, ""),
        **_delivery_settings(table, cpus),
    )
    table.done()
    if not sub.topic:
        raise TopologyError(f"{where}.topic is required")
    if sub.push_function and sub.push_endpoint:
        raise TopologyError(f"{where}: give push_function or push_endpoint, not both")
    return sub


def _trigger(name: str, spec: Any, where: str, cpus: int, notifications_topic: str) -> Subscription:
    """An Eventarc Cloud Storage trigger, realised as Eventarc does: a filtered push subscription."""
    table = Table(spec, where)
    bucket = table.get("bucket", str, "")
    if not _BUCKET.match(bucket):
        raise TopologyError(f"{where}.bucket must be a bucket name, got {bucket!r}")
    event_type = table.get("event_type", str, OBJECT_FINALIZED)
    if event_type not in STORAGE_EVENT_TYPES:
        raise TopologyError(f"{where}.event_type must be one of {sorted(STORAGE_EVENT_TYPES)}, got {event_type!r}")
    sub = Subscription(
        name=f"eventarc-{name}",
        topic=notifications_topic,
        push_function=table.get("function", str, ""),
        push_endpoint=table.get("endpoint", str, ""),
        format=STORAGE_FINALIZED,
        # As Eventarc's own subscription. Google's emulator stores a filter but does not apply it,
        # so the adapter checks bucket and event type again (and acknowledges the others).
        filter=f'attributes.bucketId = "{bucket}" AND attributes.eventType = "{STORAGE_EVENT_TYPES[event_type]}"',
        bucket=bucket,
        event_type=event_type,
        **_delivery_settings(table, cpus),
    )
    table.done()
    if not sub.is_push:
        raise TopologyError(f"{where}: a trigger needs a function or an endpoint")
    return sub
