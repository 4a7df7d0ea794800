"""The median function's core: one window message in, one tile out, idempotent and retry-aware."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from temporal_median.base import storage
from temporal_median.base.clock import isoformat, utcnow
from temporal_median.base.errors import (
    AttemptsExhausted,
    InvalidRequest,
    MalformedMessage,
    PermanentError,
    TemporalMedianError,
    TransientError,
    describe,
    policy,
)
from temporal_median.base.grid import TileId
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import Settings
from temporal_median.base.storage import GsUrl
from temporal_median.job.ids import check_input_url
from temporal_median.job.messages import Delivery, WindowMessage
from temporal_median.job.paths import JobPaths, parse_attempt_object, parse_error_object
from temporal_median.plan.attempts import done_url, instance_id

#: Period tiles uploaded at once (storage's client pools 10 connections per host).
PERIOD_UPLOADS = 8

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
        for url in (*message.datasets, *(message.masks or ())):
            # Local paths only where they were allowed (the local cloud), whoever published.
            check_input_url(url, settings.allow_local_paths)
    except (MalformedMessage, InvalidRequest) as exc:
        _record_malformed(delivery, MalformedMessage(str(exc)), settings)
        return FAILED
    context = {"job_id": message.job_id, "tile": str(message.tile), "fields": {"delivery_attempt": delivery.attempt}}
    paths = JobPaths.of(message.work, message.job_id)
    attempt = 0
    try:
        if storage.exists(paths.cancelled):
            log.info("job cancelled: acknowledging without work", extra=context)
            return CANCELLED
        if storage.exists(GsUrl.parse(message.destination)):
            log.info("tile exists already: redelivery acknowledged without work", extra=context)
            return ALREADY_DONE
        attempt, claim = _claim_attempt(paths, message.tile, delivery)
        context["attempt"] = attempt
        if attempt > settings.max_attempts:
            raise AttemptsExhausted(_exhausted_reason(paths, message.tile, settings.max_attempts))
        created, stats = _compute_and_upload(message, settings, started)
    except PermanentError as exc:
        if attempt:
            outcome = "exhausted" if isinstance(exc, AttemptsExhausted) else "failed"
            _end_attempt(paths, message.tile, attempt, claim, outcome, started, error=exc)
        _record_error(paths, message.tile, None, exc)
        log.error(f"tile failed permanently: {exc}", extra={**context, "code": exc.code})
        return FAILED
    except Exception as exc:
        if attempt >= settings.max_attempts:
            # The window's last attempt: record it as failed and acknowledge, no redelivery.
            _end_attempt(paths, message.tile, attempt, claim, "exhausted", started, error=exc)
            exhausted = AttemptsExhausted(f"{settings.max_attempts} attempts failed (TM_MAX_ATTEMPTS); the last: {describe(exc)}")
            _record_error(paths, message.tile, None, exhausted)
            log.error(f"tile failed on its last attempt: {describe(exc)}", extra={**context, "code": exhausted.code})
            return FAILED
        # Transient or unexpected: let Pub/Sub redeliver; status learns of the attempt.
        if attempt:
            _end_attempt(paths, message.tile, attempt, claim, "retried", started, error=exc)
        try:
            if attempt:
                _record_error(paths, message.tile, attempt, exc)
        except TemporalMedianError:
            pass
        log_error = log.exception if policy(exc).bug else log.error
        log_error(f"tile failed, will be retried: {exc}", extra={**context, "code": getattr(exc, "code", "internal")})
        raise
    _end_attempt(paths, message.tile, attempt, claim, "written" if created else "already-done", started,
                 bytes_read=stats.bytes_read)
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "tile written" if created else "tile written by another delivery first",
        extra={**context, "seconds": seconds, "fields": {"bytes_read": stats.bytes_read}},
    )
    return WRITTEN if created else ALREADY_DONE


def _claim_attempt(paths: JobPaths, tile: TileId, delivery: Delivery) -> tuple[int, dict]:
    """Number this execution of a window: one more than the attempts already claimed.

    Pub/Sub's ``deliveryAttempt`` cannot serve: Google's emulator does not send it, and in
    the cloud it also counts pushes Cloud Run refused (429) that never ran. The record is
    claimed before any work, so an instance that dies mid-tile (killed, out of memory, timed
    out) has used its attempt too; create-only, so concurrent deliveries never share a number.
    It also says which instance ran the attempt, for the job's timeline; its ``token`` ties
    it to the record of its end (:func:`_end_attempt`). Returns the number and the record.
    """
    number = sum(1 for info in storage.list_objects(paths.attempts_of(tile)) if parse_attempt_object(info.url.key)) + 1
    record = {"message_id": delivery.message_id, "delivery_attempt": delivery.attempt, "started": isoformat(utcnow()),
              "instance": instance_id(), "token": uuid.uuid4().hex}
    while not storage.create_json(paths.attempt(tile, number), record):
        number += 1
    return number, record


def _end_attempt(paths: JobPaths, tile: TileId, attempt: int, claim: dict, outcome: str, started: float, *,
                 bytes_read: int | None = None, error: BaseException | None = None) -> None:
    """Record how attempt ``attempt`` ended, beside its claim (which is create-only, so not rewritten).

    Best effort: the timeline is a record, not the work, so a failure here is logged and the
    tile's outcome stands (at-least-once delivery is unchanged: nothing here answers Pub/Sub).
    """
    record = {"token": claim.get("token"), "ended": isoformat(utcnow()), "outcome": outcome,
              "seconds": round(time.monotonic() - started, 3), "bytes_read": bytes_read,
              "error": describe(error) if error is not None else None, "instance": claim.get("instance")}
    try:
        storage.create_json(done_url(paths, tile, attempt), record)
    except Exception as exc:  # noqa: BLE001 - recording must never fail a tile
        log.warning(f"could not record the end of attempt {attempt}: {describe(exc)}",
                    extra={"job_id": paths.job_id, "tile": str(tile)})


def _exhausted_reason(paths: JobPaths, tile: TileId, max_attempts: int) -> str:
    """Why a window gave up: its last recorded error, and how many attempts died without one."""
    errors = {}
    for info in storage.list_objects(paths.errors):
        parsed = parse_error_object(info.url.key)
        if parsed and parsed[0] == tile and parsed[1] is not None:
            errors[parsed[1]] = info.url
    reason = f"{max_attempts} attempts failed (TM_MAX_ATTEMPTS)"
    if errors:
        last = max(errors)
        record = storage.read_json(errors[last]) or {}
        reason += f"; the last recorded error (attempt {last}): {record.get('error', 'unknown')}"
    silent = max_attempts - len([n for n in errors if n <= max_attempts])
    if silent > 0:
        reason += (
            f"; {silent} attempt(s) ended without an error record: the instance died "
            "(killed, out of memory, or past its timeout)"
        )
    return reason


def _compute_and_upload(message: WindowMessage, settings: Settings, started: float):
    # GDAL and the kernels load on the first window, not for skipped or cancelled deliveries.
    from temporal_median.compute.area import compute_area_tile
    from temporal_median.compute.tile import compute_tile

    workdir = tempfile.mkdtemp(prefix=f"tile-{message.tile}-")
    try:
        path = os.path.join(workdir, f"{message.tile}.tif")
        # Each period's tile beside the whole range's, from the same reads.
        periods = [(name, first, stop, os.path.join(workdir, f"{name}.tif")) for name, first, stop in message.periods]
        options = dict(method=message.method, max_workers=settings.read_threads or None, periods=periods,
                       masks=message.masks, exclude=message.exclude)
        if message.observations is None:
            stats = compute_tile(list(message.datasets), message.window, path, expected=message.raster, **options)
        else:
            stats = compute_area_tile(
                list(message.datasets), message.observations, message.raster, message.window, path, **options
            )
        metadata = {
            "bytes_read": str(stats.bytes_read),
            "valid_fraction": f"{stats.valid_fraction:.6f}",
            "seconds_read": f"{stats.seconds_read:.3f}",
            "seconds_median": f"{stats.seconds_median:.3f}",
            "seconds_write": f"{stats.seconds_write:.3f}",
            # The whole request so far (checks, reads, median, write): what Cloud Run bills.
            "seconds": f"{time.monotonic() - started:.3f}",
        }
        # Create-only: a concurrent delivery of the same window cannot overwrite or tear the tile.
        # The periods' tiles first, the whole range's last: its presence means the window is done.
        # The periods' uploads side by side: each is mostly waiting on storage, and twelve in a
        # row would add a dozen round trips to every window of a monthly job.
        with ThreadPoolExecutor(max_workers=PERIOD_UPLOADS) as pool:
            uploads = [pool.submit(storage.create_file, GsUrl.parse(message.period_tile(name)), local, "image/tiff",
                                   metadata=metadata) for name, _, _, local in periods]
            for upload in uploads:
                upload.result()
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
