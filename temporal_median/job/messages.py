"""What travels on Pub/Sub: the window message, and a delivery of it decoded from whichever form it came in."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from temporal_median.base.clock import parse_time, utcnow
from temporal_median.base.errors import InvalidRequest, MalformedMessage
from temporal_median.base.grid import RasterGrid, TileId, Window
from temporal_median.base.methods import check_method
from temporal_median.job.ids import check_job_id
from temporal_median.job.paths import JobPaths, check_period_name

MESSAGE_VERSION = 1


@dataclass(frozen=True)
class WindowMessage:
    """One window of one job: the payload of a message on the windows topic.

    A superset of the course's payload (``window``, ``destination``, ``datasets``).
    """

    job_id: str
    tile: TileId
    window: Window
    method: str
    datasets: tuple[str, ...]
    destination: str
    work: str
    raster: RasterGrid | None = None
    #: An area's window: ``datasets`` grouped per acquisition (consecutive runs of indices),
    #: warped onto ``raster``, the output grid. None: every dataset is on ``raster`` as it is.
    observations: tuple | None = None
    #: Composites besides the whole range: (name, first, stop), each the median of the run
    #: ``[first, stop)`` of the samples (datasets, or observations), written to its own tile.
    periods: tuple = ()
    #: Cloud masks: a classification raster per dataset, and the classes whose samples drop.
    masks: tuple | None = None
    exclude: tuple = ()

    def period_tile(self, name: str) -> str:
        """Where a period's tile of this window goes."""
        return str(JobPaths.of(self.work, self.job_id).tile(self.tile, name))

    def to_bytes(self) -> bytes:
        """The message data: compact JSON, a superset of the course's payload."""
        return json.dumps(
            {
                "version": MESSAGE_VERSION,
                "job_id": self.job_id,
                "tile": str(self.tile),
                "window": self.window.as_list(),
                "method": self.method,
                "datasets": list(self.datasets),
                "destination": self.destination,
                "work": self.work,
                "raster": self.raster.to_dict() if self.raster else {},
                **({"observations": [list(g) for g in self.observations]} if self.observations is not None else {}),
                **({"periods": [list(p) for p in self.periods]} if self.periods else {}),
                **({"masks": list(self.masks), "exclude": list(self.exclude)} if self.masks is not None else {}),
            },
            separators=(",", ":"),
        ).encode()

    def attributes(self) -> dict[str, str]:
        """The message attributes: job and tile, for filters and logs."""
        return {"job_id": self.job_id, "tile": str(self.tile)}

    @classmethod
    def from_bytes(cls, data: bytes) -> "WindowMessage":
        """Decode and validate a message's data; MalformedMessage says what is wrong."""
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"message data is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MalformedMessage("message data must be a JSON object")
        try:
            if body.get("version") != MESSAGE_VERSION:
                raise MalformedMessage(f"unsupported message version {body.get('version')!r}")
            datasets = body["datasets"]
            observations = _observations(body.get("observations"), datasets)
            if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
                raise MalformedMessage("'datasets' must be a list of strings")
            if not datasets and observations is None:
                raise MalformedMessage("'datasets' must be a non-empty list of strings")
            if observations is not None and not body.get("raster"):
                raise MalformedMessage("an area window's message needs its output grid ('raster')")
            message = cls(
                job_id=check_job_id(body["job_id"]),
                tile=TileId.parse(body["tile"]),
                window=Window.from_list(body["window"]),
                method=check_method(body["method"]),
                datasets=tuple(datasets),
                destination=str(body["destination"]),
                work=str(body["work"]),
                raster=RasterGrid.from_dict(body["raster"]) if body.get("raster") else None,
                observations=observations,
                periods=_periods(body.get("periods"), len(observations) if observations is not None else len(datasets)),
                masks=_masks(body.get("masks"), datasets),
                exclude=tuple(body.get("exclude") or ()),
            )
        except KeyError as exc:
            raise MalformedMessage(f"message data lacks {exc}") from None
        except InvalidRequest as exc:
            raise MalformedMessage(str(exc)) from None
        paths = JobPaths.of(message.work, message.job_id)
        if message.destination != str(paths.tile(message.tile)):
            raise MalformedMessage(
                f"destination {message.destination!r} is not the tile's place {paths.tile(message.tile)}"
            )
        return message


def _observations(value, datasets) -> tuple | None:
    """An area window's observations: lists of dataset indices in consecutive runs, or None."""
    if value is None:
        return None
    count = len(datasets) if isinstance(datasets, list) else -1
    if not isinstance(value, list) or not all(isinstance(g, list) and g for g in value):
        raise MalformedMessage("'observations' must be a list of non-empty lists of dataset indices")
    flat = [i for group in value for i in group]
    if flat != list(range(count)):
        raise MalformedMessage(f"'observations' must group the {count} datasets' indices in consecutive runs")
    return tuple(tuple(group) for group in value)


def _periods(value, n: int) -> tuple:
    """A window's period runs: [name, first, stop] with 0 <= first <= stop <= n, names unique."""
    if value is None:
        return ()
    try:
        runs = tuple((check_period_name(name), int(first), int(stop)) for name, first, stop in value)
    except (TypeError, ValueError, InvalidRequest) as exc:
        raise MalformedMessage(f"'periods' must be [name, first, stop] runs: {exc}") from None
    if len({name for name, _, _ in runs}) != len(runs) or not all(0 <= a <= b <= n for _, a, b in runs):
        raise MalformedMessage(f"'periods' must be distinct runs inside the {n} samples, got {value!r}")
    return runs


def _masks(value, datasets) -> tuple | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != len(datasets) or not all(isinstance(m, str) and m for m in value):
        raise MalformedMessage("'masks' must be one URL per dataset")
    return tuple(value)


@dataclass(frozen=True)
class Delivery:
    """One delivery of a Pub/Sub message, in whichever form it came."""

    data: bytes
    attributes: dict
    message_id: str
    publish_time: datetime
    attempt: int | None
    form: str  # "push-envelope", "cloudevent-binary", "cloudevent-structured"

    @classmethod
    def from_pubsub_json(cls, message: dict, attempt, form: str) -> "Delivery":
        """A delivery from a Pub/Sub message object as JSON (push envelope or CloudEvent data)."""
        if not isinstance(message, dict):
            raise MalformedMessage("'message' must be an object")
        message_id = message.get("messageId") or message.get("message_id")
        if not message_id:
            raise MalformedMessage("the Pub/Sub message has no messageId")
        try:
            data = base64.b64decode(message.get("data") or "", validate=True)
        except (ValueError, TypeError) as exc:
            raise MalformedMessage(f"message.data is not base64: {exc}") from None
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise MalformedMessage("message.attributes must be an object")
        publish = message.get("publishTime") or message.get("publish_time")
        if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1):
            raise MalformedMessage(f"deliveryAttempt must be a positive integer, got {attempt!r}")
        return cls(data, dict(attributes), str(message_id), parse_time(publish) if publish else utcnow(), attempt, form)

    @classmethod
    def from_http(cls, headers, body: bytes) -> "Delivery":
        """Decode a push request: a raw push envelope, or a messagePublished CloudEvent (binary or structured)."""
        from cloudevents.exceptions import GenericException
        from cloudevents.http import from_http

        lowered = {k.lower(): v for k, v in dict(headers).items()}
        is_structured = lowered.get("content-type", "").startswith("application/cloudevents+json")
        if "ce-specversion" in lowered or is_structured:
            try:
                event = from_http(dict(headers), body)
            except GenericException as exc:
                raise MalformedMessage(f"not a valid CloudEvent: {exc}") from None
            if event["type"] != "google.cloud.pubsub.topic.v1.messagePublished":
                raise MalformedMessage(f"unexpected CloudEvent type {event['type']!r}")
            data = event.data
            if isinstance(data, (bytes, str)):
                try:
                    data = json.loads(data)
                except ValueError:
                    raise MalformedMessage("CloudEvent data is not JSON") from None
            if not isinstance(data, dict) or "message" not in data:
                raise MalformedMessage("messagePublished CloudEvent data has no 'message'")
            form = "cloudevent-structured" if is_structured else "cloudevent-binary"
            return cls.from_pubsub_json(data["message"], data.get("deliveryAttempt"), form)
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedMessage("the request body is neither a CloudEvent nor a JSON push envelope") from None
        if not isinstance(envelope, dict) or "message" not in envelope:
            raise MalformedMessage("a push envelope must be a JSON object with 'message'")
        return cls.from_pubsub_json(envelope["message"], envelope.get("deliveryAttempt"), "push-envelope")
