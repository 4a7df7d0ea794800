"""Reading the topology's TOML: typed tables whose errors name the file, table and key; deep-merged overrides."""

from __future__ import annotations

from typing import Any, Mapping


class TopologyError(ValueError):
    """The topology file is invalid; the message names the file, the table and the key."""


def deep_merge(base: Mapping, overrides: Mapping) -> dict:
    """``base`` with ``overrides`` merged in, table by table (as Topology.load applies overrides)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Table:
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
