"""What clients may ask of the emulator: resource names, limits, and a subscription's validated settings.

Everything here raises RpcError, the gRPC status a client gets back, with Pub/Sub's own limits.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from urllib.parse import urlsplit

import grpc
from google.pubsub_v1 import types as t

from ..push_formats import FORMAT_ATTRIBUTE, FORMATS, PUBSUB
from .filter import compile_filter

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEFAULT_ACK_DEADLINE = 10
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 600.0
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5

# Endpoint settings real Pub/Sub does not have; all live in push_config.attributes.
CONCURRENCY_ATTRIBUTE = "x-localcloud-max-concurrency"
ACK_DEADLINE_ATTRIBUTE = "x-localcloud-ack-deadline-seconds"
_KNOWN_PUSH_ATTRIBUTES = {FORMAT_ATTRIBUTE, CONCURRENCY_ATTRIBUTE, ACK_DEADLINE_ATTRIBUTE, "x-goog-version"}

_ID = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
TOPIC_NAME = re.compile(rf"^projects/([a-z][a-z0-9\-]{{4,28}}[a-z0-9]|[A-Za-z0-9\-_.:]+)/topics/({_ID})$")
SUB_NAME = re.compile(rf"^projects/([a-z][a-z0-9\-]{{4,28}}[a-z0-9]|[A-Za-z0-9\-_.:]+)/subscriptions/({_ID})$")
_PROJECT_NAME = re.compile(r"^projects/([A-Za-z0-9\-_.:]+)$")
DELETED_TOPIC = "_deleted-topic_"


class RpcError(Exception):
    """An error answered to the client with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_name(pattern: re.Pattern, name: str, kind: str) -> None:
    match = pattern.match(name)
    if match is None:
        raise RpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid {kind} name {name!r}: expected projects/PROJECT/{pattern.pattern.split('/')[-2]}/ID, the ID "
            "3-255 characters of letters, digits and -_.~+% starting with a letter",
        )
    if match.group(2).lower().startswith("goog"):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{kind} id may not start with 'goog': {name!r}")


def check_project(project: str) -> None:
    if not _PROJECT_NAME.match(project):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid project name {project!r}")


def _seconds(duration: dt.timedelta | None, default: float) -> float:
    return default if duration is None else duration.total_seconds()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SubscriptionConfig:
    """The parts of a Subscription the delivery loop reads, validated once."""

    def __init__(self, sub: t.Subscription, default_concurrency: int) -> None:
        push = sub.push_config
        self.endpoint = push.push_endpoint
        attrs = dict(push.attributes)
        unknown = sorted(k for k in attrs if k.startswith("x-") and k not in _KNOWN_PUSH_ATTRIBUTES)
        if unknown:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown push_config attributes: {unknown}")
        self.format = attrs.get(FORMAT_ATTRIBUTE, PUBSUB)
        if self.format not in FORMATS:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{FORMAT_ATTRIBUTE} must be one of {', '.join(FORMATS)}, got {self.format!r}",
            )
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"push_endpoint is not an http(s) URL: {self.endpoint!r}")
            # An offline tool: never POST anywhere but this machine.
            if not _is_loopback(parts.hostname):
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"push_endpoint must be on this machine (loopback), got host {parts.hostname!r}",
                )
        if "no_wrapper" in push:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "push_config.no_wrapper is not supported by localcloud")
        self.concurrency = self._positive_int(attrs, CONCURRENCY_ATTRIBUTE, default_concurrency)
        self.ack_deadline = float(sub.ack_deadline_seconds)
        if ACK_DEADLINE_ATTRIBUTE in attrs:
            try:
                self.ack_deadline = float(attrs[ACK_DEADLINE_ATTRIBUTE])
            except ValueError:
                self.ack_deadline = -1.0
            if not 0 < self.ack_deadline <= 600:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{ACK_DEADLINE_ATTRIBUTE} must be a number of seconds in (0, 600], got {attrs[ACK_DEADLINE_ATTRIBUTE]!r}",
                )
        retry = sub.retry_policy if "retry_policy" in sub else None
        self.min_backoff = _seconds(retry.minimum_backoff if retry and "minimum_backoff" in retry else None, DEFAULT_MIN_BACKOFF)
        self.max_backoff = _seconds(retry.maximum_backoff if retry and "maximum_backoff" in retry else None, DEFAULT_MAX_BACKOFF)
        if not (0 <= self.min_backoff <= 600 and 0 <= self.max_backoff <= 600):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "retry_policy backoffs must be within 0..600 s")
        if self.min_backoff > self.max_backoff:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "retry_policy.minimum_backoff exceeds maximum_backoff")
        dead = sub.dead_letter_policy if "dead_letter_policy" in sub else None
        self.dead_letter_topic = dead.dead_letter_topic if dead else ""
        self.max_attempts = (dead.max_delivery_attempts or DEFAULT_MAX_DELIVERY_ATTEMPTS) if dead else 0
        try:
            self.filter = compile_filter(sub.filter)
        except ValueError as exc:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    @staticmethod
    def _positive_int(attrs: dict, key: str, default: int) -> int:
        if key not in attrs:
            return default
        value = attrs[key]
        if not value.isdigit() or int(value) < 1:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{key} must be a positive integer, got {value!r}")
        return int(value)

    def backoff(self, attempts: int) -> float:
        """Exponential backoff after the given number of failed attempts, within the retry policy."""
        return min(self.max_backoff, self.min_backoff * (2 ** max(0, attempts - 1)))
