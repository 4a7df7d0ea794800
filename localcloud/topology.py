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

from .push_formats import FORMATS, PUBSUB, STORAGE_FINALIZED

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.toml")
SIGNATURE_TYPES = ("http", "cloudevent")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9\-_.]{1,61}[a-z0-9]$")
_FUNCTION = re.compile(r"^[a-z][a-z0-9\-_]{0,62}$")


class TopologyError(ValueError):
    """The topology file is invalid; the message names the file, the table and the key."""


def _merge(base: dict, overrides: Mapping) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Table:
    """Typed access to one TOML table that reports unknown keys and bad values by name."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise TopologyError(f"{where} must be a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple, default: Any = None) -> Any:
        self.used.add(key)
        value = self.data.get(key, default)
        # bool is an int subclass: accept it only where a bool is asked for.
        if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            raise TopologyError(f"{self.where}.{key} has the wrong type: {value!r}")
        return value

    def number(self, key: str, default: float, minimum: float, maximum: float) -> float:
        value = self.get(key, (int, float), default)
        if not minimum <= value <= maximum:
            raise TopologyError(f"{self.where}.{key} must be within {minimum}..{maximum}, got {value}")
        return float(value)

    def count(self, key: str, default: int | str, cpu_count: int, minimum: int = 1) -> int:
        """An integer, or "cpu" for the number of cores."""
        value = self.get(key, (int, str), default)
        if value == "cpu":
            return cpu_count
        if not isinstance(value, int) or value < minimum:
            raise TopologyError(f"{self.where}.{key} must be an integer >= {minimum} or \"cpu\", got {value!r}")
        return value

    def port(self, key: str, default: int, env_name: str, environ: Mapping[str, str]) -> int:
        value: Any = self.get(key, int, default)
        if env_name in environ:
            try:
                value = int(environ[env_name])
            except ValueError:
                raise TopologyError(f"{env_name} must be a port number, got {environ[env_name]!r}") from None
        if not 0 <= value <= 65535:
            raise TopologyError(f"{self.where}.{key} (or {env_name}) must be a port 0..65535, got {value}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise TopologyError(f"{self.where}: unknown keys {unknown}")


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

    @property
    def is_push(self) -> bool:
        return bool(self.push_function or self.push_endpoint)


@dataclass(frozen=True)
class Function:
    """A function served by functions-framework on 127.0.0.1."""

    name: str
    source: Path
    target: str
    signature_type: str
    port: int
    workers: int
    threads: int
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def port_env_var(self) -> str:
        return port_env_var(self.name)


def port_env_var(function_name: str) -> str:
    """The environment variable that overrides a function server's port."""
    return "LOCALCLOUD_" + re.sub(r"[^A-Z0-9]", "_", function_name.upper()) + "_PORT"


@dataclass(frozen=True)
class Topology:
    """Everything the local cloud creates, from one TOML file."""

    path: Path | None
    project: str
    pubsub_port: int
    default_concurrency: int
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
        return cls.from_dict(_merge(data, overrides or {}), path=path, environ=environ)

    @classmethod
    def from_dict(
        cls, data: Mapping, *, path: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> "Topology":
        """Build from parsed TOML; relative paths resolve against ``root`` (itself relative to the file)."""
        environ = os.environ if environ is None else environ
        cpus = os.cpu_count() or 1
        where = str(path) if path else "topology"
        top = _Table(dict(data), where)
        project = top.get("project", str, "local-project")
        base = path.parent if path else Path.cwd()
        root = (base / top.get("root", str, ".")).resolve()

        pubsub = _Table(top.get("pubsub", dict, {}), f"{where} [pubsub]")
        pubsub_port = pubsub.port("port", 8685, "LOCALCLOUD_PUBSUB_PORT", environ)
        default_concurrency = pubsub.count("default_max_concurrency", "cpu", cpus)
        pubsub.done()

        storage = _Table(top.get("storage", dict, {}), f"{where} [storage]")
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
        ports = [p for p in [pubsub_port, storage_port if storage_enabled else 0] + [f.port for f in functions] if p]
        if len(ports) != len(set(ports)):
            raise TopologyError(f"{where}: two parts share a port: {sorted(ports)}")
        return cls(
            path=path,
            project=project,
            pubsub_port=pubsub_port,
            default_concurrency=default_concurrency,
            storage_enabled=storage_enabled,
            storage_port=storage_port,
            notifications_topic=notifications_topic,
            buckets=buckets,
            topics=tuple(topics),
            subscriptions=tuple(subscriptions),
            functions=tuple(functions),
            function_env={str(k): str(v) for k, v in function_env.items()},
        )

    def function(self, name: str) -> Function:
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(f"no function {name!r} in the topology; it has {[f.name for f in self.functions]}")


def _function(name: str, spec: Any, where: str, root: Path, cpus: int, environ: Mapping[str, str]) -> Function:
    if not _FUNCTION.match(name):
        raise TopologyError(f"{where}: invalid function name {name!r}")
    table = _Table(spec, where)
    source = table.get("source", str)
    if not source:
        raise TopologyError(f"{where}.source is required (path of the function's main.py)")
    signature_type = table.get("signature_type", str, "http")
    if signature_type not in SIGNATURE_TYPES:
        raise TopologyError(f"{where}.signature_type must be one of {SIGNATURE_TYPES}, got {signature_type!r}")
    function = Function(
        name=name,
        source=(root / source).resolve(),
        target=table.get("target", str, name),
        signature_type=signature_type,
        port=table.port("port", 0, port_env_var(name), environ),
        workers=table.count("workers", 1, cpus),
        threads=table.count("threads", 1, cpus),
        env={str(k): str(v) for k, v in table.get("env", dict, {}).items()},
    )
    table.done()
    return function


def _delivery_settings(table: _Table, cpus: int) -> dict:
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
    table = _Table(spec, where)
    fmt = table.get("format", str, PUBSUB)
    if fmt not in FORMATS:
        raise TopologyError(f"{where}.format must be one of {FORMATS}, got {fmt!r}")
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
    table = _Table(spec, where)
    bucket = table.get("bucket", str, "")
    if not _BUCKET.match(bucket):
        raise TopologyError(f"{where}.bucket must be a bucket name, got {bucket!r}")
    event_type = table.get("event_type", str, "google.cloud.storage.object.v1.finalized")
    if event_type != "google.cloud.storage.object.v1.finalized":
        raise TopologyError(f"{where}.event_type: only google.cloud.storage.object.v1.finalized is emulated")
    sub = Subscription(
        name=f"eventarc-{name}",
        topic=notifications_topic,
        push_function=table.get("function", str, ""),
        push_endpoint=table.get("endpoint", str, ""),
        format=STORAGE_FINALIZED,
        filter=f'attributes.bucketId = "{bucket}" AND attributes.eventType = "OBJECT_FINALIZE"',
        **_delivery_settings(table, cpus),
    )
    table.done()
    if not sub.is_push:
        raise TopologyError(f"{where}: a trigger needs a function or an endpoint")
    return sub
