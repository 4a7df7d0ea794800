"""Jobs: the request fanout accepts, the manifest, the window message, and where a job's objects live."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import InvalidRequest, MalformedMessage, RequestTooLarge
from .grid import DEFAULT_TILE_SIZE, Grid, TileId, Window
from .methods import DEFAULT_METHOD, check_method
from .settings import Settings
from .storage import INPUT_SUFFIXES, GsUrl

MESSAGE_VERSION = 1
_JOB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_REQUEST_KEYS = {"inputs", "output", "tile_size", "method", "job_id"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 times as Pub/Sub and CloudEvents write them (nanoseconds allowed)."""
    if not isinstance(text, str) or not text:
        raise MalformedMessage(f"not a timestamp: {text!r}")
    cleaned = text.strip().replace("Z", "+00:00")
    # Python parses at most microseconds; Pub/Sub sends nanoseconds.
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", cleaned)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise MalformedMessage(f"not a timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_job_id(job_id) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InvalidRequest(
            f"job_id must be 3 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit; got {job_id!r}"
        )
    return job_id


def check_input_url(url, allow_local: bool) -> str:
    """Validate one input location: gs://, https:// or (locally) an absolute path."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise InvalidRequest(f"an input must be a non-empty string of at most 2048 characters, got {url!r}")
    if url.startswith("gs://"):
        GsUrl.parse(url)
    elif url.startswith("https://"):
        pass
    elif url.startswith("/"):
        if not allow_local:
            raise InvalidRequest(f"local paths are not allowed here (only gs:// and https://): {url!r}")
        if ".." in url.split("/"):
            raise InvalidRequest(f"'..' is not allowed in {url!r}")
    else:
        raise InvalidRequest(
            "inputs must be gs:// or https:// URLs" + (" or absolute paths" if allow_local else "") + f", got {url!r}"
        )
    return url


@dataclass(frozen=True)
class JobRequest:
    """What a POST to fanout asks for, validated; the inputs are not listed yet."""

    inputs: str | tuple[str, ...]
    output: str
    tile_size: int = DEFAULT_TILE_SIZE
    method: str = DEFAULT_METHOD
    job_id: str | None = None

    @classmethod
    def from_json(cls, body, settings: Settings) -> "JobRequest":
        """Validate a decoded JSON body; raise InvalidRequest naming the bad field."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        unknown = set(body) - _REQUEST_KEYS
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_REQUEST_KEYS))}")
        if "inputs" not in body:
            raise InvalidRequest("'inputs' is required: a gs:// prefix or a list of raster URLs")
        inputs = body["inputs"]
        allow_local = settings.allow_local_paths
        if isinstance(inputs, str):
            inputs = check_input_url(inputs, allow_local)
            if inputs.startswith("https://"):
                raise InvalidRequest("an https:// input cannot be listed; give an explicit list of URLs")
        elif isinstance(inputs, list):
            if not inputs:
                raise InvalidRequest("'inputs' is an empty list")
            if len(inputs) > settings.max_inputs:
                raise RequestTooLarge(f"{len(inputs)} inputs; at most {settings.max_inputs} are allowed")
            for url in inputs:
                check_input_url(url, allow_local)
                if not url.lower().endswith(INPUT_SUFFIXES):
                    raise InvalidRequest(f"inputs must be GeoTIFFs ending in .tif or .tiff, got {url!r}")
            if len(set(inputs)) != len(inputs):
                raise InvalidRequest("'inputs' lists the same file twice")
            inputs = tuple(inputs)
        else:
            raise InvalidRequest("'inputs' must be a gs:// prefix (string) or a list of URLs")
        output = body.get("output", settings.results_url)
        if not isinstance(output, str) or not output.startswith("gs://"):
            raise InvalidRequest(f"'output' must be a gs:// location, got {output!r}")
        GsUrl.parse(output)
        tile_size = body.get("tile_size", DEFAULT_TILE_SIZE)
        if not isinstance(tile_size, int) or isinstance(tile_size, bool):
            raise InvalidRequest(f"'tile_size' must be an integer, got {tile_size!r}")
        Grid(1, 1, tile_size)  # validates the range
        method = check_method(body.get("method", DEFAULT_METHOD))
        job_id = body.get("job_id")
        if job_id is not None:
            check_job_id(job_id)
        return cls(inputs, output.rstrip("/"), tile_size, method, job_id)

    def derive_job_id(self, datasets: tuple[str, ...]) -> str:
        """The given job id, or one derived from the listed inputs and the parameters (idempotent POSTs)."""
        if self.job_id:
            return self.job_id
        key = json.dumps(
            {"datasets": list(datasets), "tile_size": self.tile_size, "method": self.method, "output": self.output},
            sort_keys=True,
        )
        return "job-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JobPaths:
    """Where a job's objects live: manifest, tiles and error records under the work location."""

    work: GsUrl
    job_id: str

    @classmethod
    def of(cls, work_url: str, job_id: str) -> "JobPaths":
        return cls(GsUrl.parse(work_url), check_job_id(job_id))

    @property
    def root(self) -> GsUrl:
        return self.work.join("jobs", self.job_id)

    @property
    def manifest(self) -> GsUrl:
        return self.root.join("manifest.json")

    @property
    def tiles(self) -> GsUrl:
        return GsUrl(self.work.bucket, self.root.join("tiles").key + "/")

    def tile(self, tile: TileId) -> GsUrl:
        return self.root.join("tiles", f"{tile}.tif")

    @property
    def errors(self) -> GsUrl:
        return GsUrl(self.work.bucket, self.root.join("errors").key + "/")

    def error(self, tile: TileId, attempt: int | None) -> GsUrl:
        suffix = "permanent" if attempt is None else f"attempt-{attempt:03d}"
        return self.root.join("errors", f"{tile}.{suffix}.json")

    @property
    def cancelled(self) -> GsUrl:
        return self.root.join("cancelled.json")

    @property
    def lock(self) -> GsUrl:
        return self.root.join("mosaic.lock")

    @property
    def mosaic_error(self) -> GsUrl:
        return self.root.join("mosaic-error.json")


_TILE_OBJECT = re.compile(r"^(?P<prefix>.*)jobs/(?P<job>[a-z0-9][a-z0-9-]{2,62})/tiles/(?P<tile>r\d{3,}_c\d{3,})\.tif$")
_ERROR_OBJECT = re.compile(r"^(?P<tile>r\d{3,}_c\d{3,})\.(?P<kind>permanent|attempt-(?P<attempt>\d+))\.json$")


def parse_tile_object(work: GsUrl, bucket: str, name: str) -> tuple[str, TileId] | None:
    """(job id, tile id) if ``gs://bucket/name`` is a tile of a job under ``work``, else None."""
    if bucket != work.bucket:
        return None
    match = _TILE_OBJECT.match(name)
    if not match:
        return None
    expected_prefix = f"{work.key.strip('/')}/" if work.key.strip("/") else ""
    if match.group("prefix") != expected_prefix:
        return None
    return match.group("job"), TileId.parse(match.group("tile"))


def parse_error_object(name: str) -> tuple[TileId, int | None] | None:
    """(tile id, attempt or None for permanent) of an error record's base name."""
    match = _ERROR_OBJECT.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    attempt = match.group("attempt")
    return TileId.parse(match.group("tile")), (None if attempt is None else int(attempt))


@dataclass(frozen=True)
class Manifest:
    """Everything about a job, written by fanout before it publishes anything."""

    job_id: str
    datasets: tuple[str, ...]
    grid: Grid
    raster: dict  # temporal_median.rasterio_io.RasterGrid.to_dict()
    method: str
    output: str
    created: str
    work: str

    @property
    def results(self) -> GsUrl:
        return GsUrl.parse(self.output).join(self.job_id)

    def to_dict(self) -> dict:
        return {
            "version": MESSAGE_VERSION,
            "job_id": self.job_id,
            "datasets": list(self.datasets),
            "grid": self.grid.to_dict(),
            "raster": self.raster,
            "method": self.method,
            "output": self.output,
            "created": self.created,
            "work": self.work,
            "tiles": len(self.grid),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        try:
            return cls(
                job_id=check_job_id(data["job_id"]),
                datasets=tuple(data["datasets"]),
                grid=Grid.from_dict(data["grid"]),
                raster=dict(data["raster"]),
                method=check_method(data["method"]),
                output=str(data["output"]),
                created=str(data["created"]),
                work=str(data["work"]),
            )
        except (KeyError, TypeError) as exc:
            raise MalformedMessage(f"job manifest is missing or has a bad field: {exc}") from exc

    def same_job(self, other: "Manifest") -> bool:
        """True if both describe the same computation (times aside)."""
        mine, theirs = self.to_dict(), other.to_dict()
        mine.pop("created")
        theirs.pop("created")
        return mine == theirs

    def message(self, tile: TileId) -> "WindowMessage":
        paths = JobPaths.of(self.work, self.job_id)
        return WindowMessage(
            job_id=self.job_id,
            tile=tile,
            window=self.grid.window(tile),
            method=self.method,
            datasets=self.datasets,
            destination=str(paths.tile(tile)),
            work=self.work,
            raster=self.raster,
        )


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
    raster: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
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
                "raster": self.raster,
            },
            separators=(",", ":"),
        ).encode()

    def attributes(self) -> dict[str, str]:
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
            if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
                raise MalformedMessage("'datasets' must be a non-empty list of strings")
            message = cls(
                job_id=check_job_id(body["job_id"]),
                tile=TileId.parse(body["tile"]),
                window=Window.from_list(body["window"]),
                method=check_method(body["method"]),
                datasets=tuple(datasets),
                destination=str(body["destination"]),
                work=str(body["work"]),
                raster=dict(body.get("raster") or {}),
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
