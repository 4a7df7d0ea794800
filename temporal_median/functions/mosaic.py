"""The mosaic function's core: when the last tile of a job lands, build its results exactly once."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from temporal_median.base import storage
from temporal_median.base.clock import isoformat, parse_time, utcnow
from temporal_median.base.errors import MosaicBusy, PermanentError, TemporalMedianError, describe
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import Settings
from temporal_median.base.storage import GsUrl
from temporal_median.job.cost import Usage
from temporal_median.job.manifest import Manifest
from temporal_median.job.paths import RESULT_FILES, JobPaths, parse_tile_object
from temporal_median.plan.attempts import collect_attempts

log = get_logger("temporal_median.mosaic")

IGNORED = "ignored"
WAITING = "waiting"
ALREADY_COMPLETE = "already-complete"
CANCELLED = "cancelled"
BUILT = "built"
FAILED = "failed"

#: Drawn after job.json from its attempts, beside the results (best effort).
TIMELINE = "timeline.png"
#: How long the record waits, after the build, for the attempt records being read.
ATTEMPTS_TIMEOUT_SECONDS = 30


def _job_of_object(work: GsUrl, bucket: str, name: str) -> str | None:
    """The job a finalized object may complete: one of its tiles, or fanout's resume marker."""
    parsed = parse_tile_object(work, bucket, name)
    if parsed:
        return parsed[0]
    prefix = f"{work.key.strip('/')}/" if work.key.strip("/") else ""
    if bucket == work.bucket and name.startswith(prefix + "jobs/") and name.endswith("/" + JobPaths.RESUME):
        parts = name[len(prefix) :].split("/")
        if len(parts) == 3:
            return parts[1]
    return None


def handle_object(bucket: str, name: str, settings: Settings) -> str:
    """React to one finalized object; build the job's results if it was the last missing tile.

    Objects that are not tiles (manifests, error records, locks, results) are ignored, so the
    function's own writes never loop. Races between finalize events, and redeliveries, end in
    exactly one build: the builder holds a :class:`Lease`; the others raise MosaicBusy (retried).
    """
    work = GsUrl.parse(settings.work_url)
    job_id = _job_of_object(work, bucket, name)
    if job_id is None:
        return IGNORED
    context = {"job_id": job_id}
    paths = JobPaths.of(settings.work_url, job_id)
    data = storage.read_json(paths.manifest)
    if data is None:
        log.warning(f"object {name} belongs to no known job", extra=context)
        return IGNORED
    manifest = Manifest.from_dict(data)
    record_url = manifest.results.record
    if storage.exists(record_url):
        return ALREADY_COMPLETE
    if storage.exists(paths.cancelled):
        log.info("job cancelled: no mosaic", extra=context)
        return CANCELLED
    tiles = {info.url.key.rsplit("/", 1)[-1]: info for info in storage.list_objects(paths.tiles)}
    expected = {f"{tile}.tif" for tile in manifest.grid.tile_ids()}
    missing = expected - set(tiles)
    if missing:
        log.debug(f"{len(expected) - len(missing)} of {len(expected)} tiles present", extra=context)
        return WAITING
    lease = Lease.take(paths.lock, settings.mosaic_lock_seconds)
    try:
        if storage.exists(record_url):
            return ALREADY_COMPLETE
        _build(manifest, paths, [tiles[name] for name in sorted(expected)], record_url, settings)
    except PermanentError as exc:
        # A retry would fail the same way (a corrupt or mismatched tile): record it for the job's
        # status and stop; posting the job again makes mosaic try again.
        _record_failure(paths, exc)
        log.error(f"mosaic failed permanently: {exc}", extra={**context, "code": exc.code})
        return FAILED
    except Exception as exc:
        _record_failure(paths, exc)
        log.exception(f"mosaic failed, the event will be retried: {describe(exc)}", extra=context)
        raise
    finally:
        # Released whatever happened (even if the error record could not be written), so a
        # retried event, or a re-post, can take it again.
        lease.release()
    storage.delete(paths.mosaic_error)
    return BUILT


def _record_failure(paths: JobPaths, exc: BaseException) -> None:
    """Write the mosaic's error record for the job status; best effort, the caller's error matters more."""
    body = {"error": describe(exc), "code": getattr(exc, "code", "internal"), "time": isoformat(utcnow())}
    try:
        storage.put_json(paths.mosaic_error, body)
    except TemporalMedianError as record_error:
        log.error(f"could not record the mosaic's failure: {record_error}")


class Lease:
    """The mosaic lock, held by one invocation and renewed in the background while it builds.

    The lock object is created with ifGenerationMatch=0, and renewed (rewritten with a new
    time) every third of ``seconds`` with a generation precondition. A holder that dies (killed,
    out of memory, past its timeout) stops renewing: after ``seconds`` the lock is stale and the
    next event takes it over, atomically, with a generation precondition too. An event that
    finds a live lock raises MosaicBusy, so it is redelivered rather than acknowledged: if the
    holder then dies, that redelivery finishes the job.
    """

    def __init__(self, url: GsUrl, generation: int, body: dict, seconds: int) -> None:
        self.url, self.generation, self.body, self.seconds = url, generation, body, seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="tm-lease", daemon=True)
        self._thread.start()

    @classmethod
    def take(cls, url: GsUrl, seconds: int) -> "Lease":
        """Take the lock at ``url`` (creating it, or taking over a stale one); MosaicBusy if it is live."""
        body = {"holder": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}", "time": isoformat(utcnow())}
        generation = storage.create_json_generation(url, body)
        if generation is None:
            held = storage.read_json_generation(url)
            if held is None:
                raise MosaicBusy(f"{url} was released meanwhile: retry")
            value, current = held
            renewed = value.get("time", "1970-01-01T00:00:00Z") if isinstance(value, dict) else "1970-01-01T00:00:00Z"
            age = (utcnow() - parse_time(renewed)).total_seconds()
            if age <= seconds:
                holder = value.get("holder") if isinstance(value, dict) else None
                raise MosaicBusy(f"the mosaic is being built by {holder} (lock renewed {age:.0f} s ago): retry")
            # The holder died without releasing it: take it over atomically.
            generation = storage.replace_json_if_generation(url, body, current)
            if generation is None:
                raise MosaicBusy(f"{url} was taken over by another invocation: retry")
            log.warning(f"took over a stale mosaic lock of {value.get('holder')} (not renewed for {age:.0f} s)")
        return cls(url, generation, body, seconds)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                generation = storage.replace_json_if_generation(self.url, {**self.body, "time": isoformat(utcnow())}, self.generation)
            except TemporalMedianError as exc:
                log.warning(f"could not renew the mosaic lock, will try again: {exc}")
                continue
            if generation is None:
                self.lost = True
                log.warning("the mosaic lock was taken over: another invocation builds the same results")
                return
            self.generation = generation

    def release(self) -> None:
        """Stop renewing and delete the lock (if it is still ours)."""
        self._stop.set()
        self._thread.join()
        storage.delete(self.url, if_generation=self.generation)


def _build(manifest: Manifest, paths: JobPaths, tiles: list, record_url: GsUrl, settings: Settings) -> None:
    # rasterio and GDAL load only when the last tile lands, not for every other tile event.
    from temporal_median.assembly.cog import build_mosaic
    from temporal_median.raster.gdal import forget_remote_files, to_gdal_path

    # GDAL caches remote files per process; a tile replaced since an earlier attempt on this
    # instance must be read afresh.
    forget_remote_files()
    started = time.monotonic()
    started_at = utcnow()
    cpu_started = time.process_time()
    raster = manifest.raster
    workdir = tempfile.mkdtemp(prefix=f"mosaic-{manifest.job_id}-")
    # The attempts are read while the COG is built (small objects, read 16 at a time).
    collector = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tm-attempts")
    attempts = collector.submit(collect_attempts, paths, len(tiles))
    collector.shutdown(wait=False)
    try:
        result = build_mosaic(
            [to_gdal_path(str(info.url)) for info in tiles],
            workdir,
            width=raster.width,
            height=raster.height,
            transform=raster.transform,
            crs=raster.crs,
            name="median",
            tile_size=manifest.grid.tile_size,
        )
        built = time.monotonic()
        results = manifest.results
        for url, path in ((results.cog, result.cog_path), (results.vrt, result.vrt_path),
                          (results.quicklook, result.quicklook_path)):
            storage.put_file(url, path, RESULT_FILES[url.key.rsplit("/", 1)[-1]])
        completed = utcnow()
        completed_monotonic = time.monotonic()
        seconds_mosaic = completed_monotonic - started
        record = {
            "job_id": manifest.job_id,
            "state": "complete",
            "tiles": len(tiles),
            "inputs": len(manifest.datasets),
            "method": manifest.method,
            "width": raster.width,
            "height": raster.height,
            "crs": raster.crs,
            "transform": list(raster.transform),
            "tile_size": manifest.grid.tile_size,
            "created": manifest.created,
            "completed": isoformat(completed),
            "seconds_fanout_to_mosaic": round((completed - parse_time(manifest.created)).total_seconds(), 3),
            "seconds_mosaic": round(seconds_mosaic, 3),
            # Of which: reading the tiles and writing the results locally, then uploading them.
            "seconds_mosaic_build": round(built - started, 3),
            "seconds_mosaic_upload": round(completed_monotonic - built, 3),
            # CPU seconds of the instance's process over the same span, all threads (GDAL
            # compresses on every core): what the mosaic costs the machine, not only the wait.
            "cpu_seconds_mosaic": round(time.process_time() - cpu_started, 3),
            # The COG's full resolution is the tiles' blocks, copied as they are; otherwise why not.
            "full_resolution": "tile blocks copied" if result.recompressed is None
            else f"compressed again: {result.recompressed}",
            "bytes_read": sum(_figure(info, "bytes_read") for info in tiles),
            "bytes_tiles": sum(info.size for info in tiles),
            "outputs": {name: str(results.join(name)) for name in (*RESULT_FILES, TIMELINE)},
            "manifest": str(paths.manifest),
            "cost_estimate": _usage(manifest, tiles, seconds_mosaic, settings).estimate(),
            "mosaic_started": isoformat(started_at),
            **_attempts(attempts, manifest.job_id),
        }
        # The record goes last: its presence means every output is in place (the timeline,
        # drawn from it, follows: a diagnostic, it never delays nor fails the results).
        storage.put_json(record_url, record)
        log.info("mosaic built", extra={"job_id": manifest.job_id, "seconds": record["seconds_mosaic"]})
        _draw_timeline(record, results.join(TIMELINE), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _attempts(pending, job_id: str) -> dict:
    """The record's ``attempts`` (each window's executions: instance, start, end, outcome) and
    whether the listing was cut short; none if they could not be read (never fails the mosaic)."""
    try:
        attempts, truncated = pending.result(timeout=ATTEMPTS_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - a record without its timeline beats no record
        log.warning(f"could not read the attempt records: {describe(exc)}", extra={"job_id": job_id})
        return {"attempts": None, "attempts_truncated": None}
    return {"attempts": attempts, "attempts_truncated": truncated}


def _draw_timeline(record: dict, url: GsUrl, workdir: str) -> None:
    """Draw the job's timeline (temporal_median.plan.timeline) and upload it beside the results;
    best effort: a failure is logged, the job is complete either way."""
    if not record.get("attempts"):
        return
    try:
        # matplotlib loads here only, after the results are in place.
        from temporal_median.plan.timeline import draw_timeline

        path = os.path.join(workdir, TIMELINE)
        draw_timeline(record, path)
        storage.put_file(url, path, "image/png")
    except Exception as exc:  # noqa: BLE001 - the timeline is a diagnostic, never a failure
        log.warning(f"could not draw the job's timeline: {describe(exc)}", extra={"job_id": record.get("job_id")})


def _figure(info, name: str) -> float:
    """A figure median stored in a tile's metadata (0 if absent: a tile from an older version)."""
    try:
        return float(info.metadata.get(name, 0) or 0)
    except ValueError:
        return 0.0


def _usage(manifest: Manifest, tiles: list, seconds_mosaic: float, settings: Settings) -> Usage:
    """The job's usage from the tiles' measured figures; reads counted at one open and one
    ranged read per scene and window (the minimum: wider windows make more)."""
    scenes = len(manifest.datasets)
    return Usage(
        windows=len(tiles),
        scenes=scenes,
        median_seconds=sum(_figure(info, "seconds") for info in tiles),
        median_cpu=settings.median_cpu,
        median_gib=settings.median_memory_gib,
        mosaic_seconds=seconds_mosaic,
        mosaic_cpu=settings.mosaic_cpu,
        mosaic_gib=settings.mosaic_memory_gib,
        input_reads=2 * scenes * len(tiles),
        bytes_read=int(sum(_figure(info, "bytes_read") for info in tiles)),
        message_bytes=sum(len(manifest.message(tile).to_bytes()) for tile in manifest.grid.tile_ids()),
    )
