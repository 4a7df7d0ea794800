"""The median function's core: one window message in, one tile out, idempotent and retry-aware."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from . import storage
from .errors import InvalidRequest, MalformedMessage, PermanentError, TemporalMedianError, TransientError, describe
from .grid import TileId
from .clock import isoformat, utcnow
from .messages import Delivery, WindowMessage
from .paths import JobPaths
from .request import check_input_url
from .logs import get_logger
from .settings import Settings
from .storage import GsUrl

log = get_logger("temporal_median.median")

# What handle_delivery returns; all of them acknowledge the message.
WRITTEN = "written"
ALREADY_DONE = "already-done"
CANCELLED = "cancelled"
TOO_OLD = "too-old"
FAILED = "failed-permanently"


def handle_delivery(delivery: Delivery, settings: Settings) -> str:
    """Compute and store the tile a delivery asks for.

    Returns one of the outcomes above when the message should be acknowledged. Raises
    TransientError (or any unexpected exception) when Pub/Sub should redeliver it; an error
    record is written for the job's status either way.
    """
    started = time.monotonic()
    age = (utcnow() - delivery.publish_time).total_seconds()
    if age > settings.max_event_age_seconds:
        log.warning(
            "dropping a window message older than TM_MAX_EVENT_AGE_SECONDS",
            extra={"message_id": delivery.message_id, "fields": {"age_seconds": round(age)}},
        )
        return TOO_OLD
    try:
        message = WindowMessage.from_bytes(delivery.data)
        if message.work.rstrip("/") != settings.work_url.rstrip("/"):
            # A message may only write where this deployment keeps its tiles.
            raise MalformedMessage(f"message work location {message.work} is not {settings.work_url}")
        for url in message.datasets:
            # Local paths only where they were allowed (the local cloud), whoever published.
            check_input_url(url, settings.allow_local_paths)
    except (MalformedMessage, InvalidRequest) as exc:
        _record_malformed(delivery, MalformedMessage(str(exc)), settings)
        return FAILED
    context = {"job_id": message.job_id, "tile": str(message.tile), "attempt": delivery.attempt}
    paths = JobPaths.of(message.work, message.job_id)
    try:
        if storage.exists(paths.cancelled):
            log.info("job cancelled: acknowledging without work", extra=context)
            return CANCELLED
        if storage.exists(GsUrl.parse(message.destination)):
            log.info("tile exists already: redelivery acknowledged without work", extra=context)
            return ALREADY_DONE
        created, stats = _compute_and_upload(message, settings)
    except PermanentError as exc:
        _record_error(paths, message.tile, None, exc)
        log.error(f"tile failed permanently: {exc}", extra={**context, "code": exc.code})
        return FAILED
    except Exception as exc:
        # Transient or unexpected: let Pub/Sub redeliver; status learns of the attempt.
        try:
            _record_error(paths, message.tile, delivery.attempt or 0, exc)
        except TemporalMedianError:
            pass
        log.error(f"tile failed, will be retried: {exc}", extra={**context, "code": getattr(exc, "code", "internal")})
        raise
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "tile written" if created else "tile written by another delivery first",
        extra={**context, "seconds": seconds, "fields": {"bytes_read": stats.bytes_read}},
    )
    return WRITTEN if created else ALREADY_DONE


def _compute_and_upload(message: WindowMessage, settings: Settings):
    from .tiles import compute_tile

    workdir = tempfile.mkdtemp(prefix=f"tile-{message.tile}-")
    try:
        path = os.path.join(workdir, f"{message.tile}.tif")
        stats = compute_tile(
            list(message.datasets),
            message.window,
            path,
            method=message.method,
            max_workers=settings.read_threads or None,
            expected=message.raster,
        )
        metadata = {
            "bytes_read": str(stats.bytes_read),
            "valid_fraction": f"{stats.valid_fraction:.6f}",
            "seconds_read": f"{stats.seconds_read:.3f}",
            "seconds_median": f"{stats.seconds_median:.3f}",
            "seconds_write": f"{stats.seconds_write:.3f}",
        }
        # Create-only: a concurrent delivery of the same window cannot overwrite or tear the tile.
        created = storage.create_file(GsUrl.parse(message.destination), path, "image/tiff", metadata=metadata)
        return created, stats
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record_error(paths: JobPaths, tile: TileId, attempt: int | None, exc: BaseException) -> None:
    storage.create_json(
        paths.error(tile, attempt),
        {
            "tile": str(tile),
            "attempt": attempt,
            "permanent": attempt is None,
            "code": getattr(exc, "code", "internal"),
            "error": describe(exc),
            "time": isoformat(utcnow()),
        },
    )


def _record_malformed(delivery: Delivery, exc: MalformedMessage, settings: Settings) -> None:
    """Log a malformed message, and record it under its job when its attributes name one of ours."""
    attributes = delivery.attributes
    log.error(
        f"malformed window message acknowledged without work: {exc}",
        extra={"message_id": delivery.message_id, "job_id": attributes.get("job_id"), "tile": attributes.get("tile")},
    )
    try:
        paths = JobPaths.of(settings.work_url, attributes["job_id"])
        tile = TileId.parse(attributes["tile"])
    except (KeyError, TemporalMedianError):
        return
    try:
        if storage.exists(paths.manifest):
            _record_error(paths, tile, None, exc)
    except TransientError:
        pass
