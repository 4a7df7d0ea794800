"""The mosaic function's core: when the last tile of a job lands, build its results exactly once."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from temporal_median.base import storage
from temporal_median.base.clock import isoformat, parse_time, utcnow
from temporal_median.base.errors import PermanentError, TemporalMedianError, describe
from temporal_median.base.lease import Lease
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import Settings
from temporal_median.base.storage import GsUrl
from temporal_median.functions.publish import publish_job, put_item
from temporal_median.job.cost import Usage
from temporal_median.job.manifest import Manifest
from temporal_median.job.paths import RESULT_FILES, JobPaths, ResultPaths, parse_tile_object
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


#: Manifests kept per instance, by (URL, generation): for this many jobs.
MANIFEST_CACHE_JOBS = 64
_MANIFESTS: dict[tuple[str, int], Manifest] = {}

#: A finalized object that asks for every composite to be looked at (fanout's resume marker).
EVERY = "every"


def _target_of_object(work: GsUrl, bucket: str, name: str) -> tuple[str, str | None] | None:
    """(job id, composite) a finalized object may complete: a tile's composite (None for the
    whole range, else its period), or :data:`EVERY` for fanout's resume marker."""
    parsed = parse_tile_object(work, bucket, name)
    if parsed:
        return parsed[0], parsed[2]
    prefix = f"{work.key.strip('/')}/" if work.key.strip("/") else ""
    if bucket == work.bucket and name.startswith(prefix + "jobs/") and name.endswith("/" + JobPaths.RESUME):
        parts = name[len(prefix) :].split("/")
        if len(parts) == 3:
            return parts[1], EVERY
    return None


def handle_object(bucket: str, name: str, settings: Settings) -> str:
    """React to one finalized object; build a composite's results if it was its last missing tile.

    A job has one composite for its whole date range and one per period, each built by the
    invocation that sees its last tile land (so the periods' mosaics run side by side). Objects
    that are not tiles (manifests, error records, locks, results) are ignored, so the function's
    own writes never loop. Races between finalize events, and redeliveries, end in exactly one
    build per composite: the builder holds a :class:`Lease`; the others raise MosaicBusy
    (retried). The invocation that completes the last composite publishes the job's STAC
    collection and timelapse.
    """
    work = GsUrl.parse(settings.work_url)
    target = _target_of_object(work, bucket, name)
    if target is None:
        return IGNORED
    job_id, composite = target
    context = {"job_id": job_id}
    paths = JobPaths.of(settings.work_url, job_id)
    manifest = _manifest(paths)
    if manifest is None:
        log.warning(f"object {name} belongs to no known job", extra=context)
        return IGNORED
    names = [None, *(p.name for p in manifest.periods)]
    if composite != EVERY and composite not in names:
        log.warning(f"object {name} is a tile of no period of the job", extra=context)
        return IGNORED
    listed = {}
    if composite != EVERY:
        # Most tiles are not their composite's last: one listing says so, before anything else
        # is looked up (a monthly job sends thirteen of these events per window).
        listed[composite] = _tiles(paths, composite)
        if _missing(manifest, listed[composite]):
            return WAITING
    if storage.exists(manifest.results.collection):
        return ALREADY_COMPLETE
    if storage.exists(paths.cancelled):
        log.info("job cancelled: no mosaic", extra=context)
        return CANCELLED
    outcomes = [_composite(manifest, paths, n, settings, listed.get(n))
                for n in (names if composite == EVERY else [composite])]
    if all(storage.exists(ResultPaths.of(manifest.output, job_id, n).record) for n in names):
        publish_job(manifest, names)
    for outcome in (FAILED, BUILT, WAITING):
        if outcome in outcomes:
            return outcome
    return ALREADY_COMPLETE


def _manifest(paths: JobPaths) -> Manifest | None:
    """The job's manifest, downloaded and parsed once per instance and generation (a tile event
    of a monthly job comes thirteen times per window; the generation is one metadata read)."""
    generation = storage.generation(paths.manifest)
    if generation is None:
        return None
    key = (str(paths.manifest), generation)
    manifest = _MANIFESTS.get(key)
    if manifest is None:
        data = storage.read_json(paths.manifest)
        if data is None:
            return None
        manifest = Manifest.from_dict(data)
        if len(_MANIFESTS) >= MANIFEST_CACHE_JOBS:
            _MANIFESTS.pop(next(iter(_MANIFESTS)), None)
        _MANIFESTS[key] = manifest
    return manifest


def _tiles(paths: JobPaths, period: str | None) -> dict:
    """A composite's tiles in the work bucket, by file name (one listing)."""
    return {info.url.key.rsplit("/", 1)[-1]: info for info in storage.list_objects(paths.tiles_of(period))}


def _expected(manifest: Manifest) -> set[str]:
    """The file names of a composite's tiles."""
    return {f"{tile}.tif" for tile in manifest.grid.tile_ids()}


def _missing(manifest: Manifest, tiles: dict) -> set[str]:
    """The file names of the composite's tiles not in ``tiles``."""
    return _expected(manifest) - set(tiles)


def _composite(manifest: Manifest, paths: JobPaths, period: str | None, settings: Settings,
               tiles: dict | None = None) -> str:
    """Build one composite if all its tiles are there and nobody has (the whole range: None)."""
    record_url = ResultPaths.of(manifest.output, manifest.job_id, period).record
    context = {"job_id": manifest.job_id, **({"fields": {"period": period}} if period else {})}
    if storage.exists(record_url):
        return ALREADY_COMPLETE
    tiles = _tiles(paths, period) if tiles is None else tiles
    missing = _missing(manifest, tiles)
    if missing:
        log.debug(f"{len(manifest.grid) - len(missing)} of {len(manifest.grid)} tiles present", extra=context)
        return WAITING
    lease = Lease.take(paths.lock_of(period), settings.mosaic_lock_seconds)
    try:
        if storage.exists(record_url):
            return ALREADY_COMPLETE
        _build(manifest, paths, period, [tiles[name] for name in sorted(_expected(manifest))], settings)
    except PermanentError as exc:
        # A retry would fail the same way (a corrupt or mismatched tile): record it for the job's
        # status and stop; posting the job again makes mosaic try again.
        _record_failure(paths, period, exc)
        log.error(f"mosaic failed permanently: {exc}", extra={**context, "code": exc.code})
        return FAILED
    except Exception as exc:
        _record_failure(paths, period, exc)
        log.exception(f"mosaic failed, the event will be retried: {describe(exc)}", extra=context)
        raise
    finally:
        # Released whatever happened (even if the error record could not be written), so a
        # retried event, or a re-post, can take it again.
        lease.release()
    storage.delete(paths.mosaic_error_of(period))
    return BUILT


def _record_failure(paths: JobPaths, period: str | None, exc: BaseException) -> None:
    """Write a composite's mosaic error record for the job status; best effort, the caller's error matters more."""
    body = {"error": describe(exc), "code": getattr(exc, "code", "internal"), "time": isoformat(utcnow())}
    try:
        storage.put_json(paths.mosaic_error_of(period), body)
    except TemporalMedianError as record_error:
        log.error(f"could not record the mosaic's failure: {record_error}")


def _build(manifest: Manifest, paths: JobPaths, period: str | None, tiles: list, settings: Settings) -> None:
    """Build one composite's results from its tiles: COG, VRT, quicklook, STAC item, then its record."""
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
    results = ResultPaths.of(manifest.output, manifest.job_id, period)
    attempts = None
    if period is None:
        # The job's attempts (its timeline), with the whole range's composite only; read while
        # the COG is built (small objects, read 16 at a time).
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
        for url, path in ((results.cog, result.cog_path), (results.vrt, result.vrt_path),
                          (results.quicklook, result.quicklook_path)):
            storage.put_file(url, path, RESULT_FILES[url.key.rsplit("/", 1)[-1]])
        put_item(manifest, period, result.cog_path, results)
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
            "outputs": {name: str(results.join(name)) for name in (*RESULT_FILES, "item.json", *((TIMELINE,) if period is None else ()))},
            "manifest": str(paths.manifest),
            "cost_estimate": _usage(manifest, tiles if period is None else [], seconds_mosaic, settings).estimate(),
            "mosaic_started": isoformat(started_at),
            **(_period_fields(manifest, period) if period else {}),
            **(_attempts(attempts, manifest.job_id) if attempts else {}),
        }
        # The record goes last: its presence means every output is in place (the timeline,
        # drawn from it, follows: a diagnostic, it never delays nor fails the results).
        storage.put_json(results.record, record)
        log.info("mosaic built", extra={"job_id": manifest.job_id, "seconds": record["seconds_mosaic"],
                                        **({"fields": {"period": period}} if period else {})})
        if period is None:
            _draw_timeline(record, results.join(TIMELINE), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _period_fields(manifest: Manifest, period: str) -> dict:
    """A period's record: which period, and which of the job's scenes are in it."""
    found = next(p for p in manifest.periods if p.name == period)
    return {
        "period": found.to_dict(),
        "inputs": sum(found.start.isoformat() <= day <= found.end.isoformat() for day in manifest.days),
        # Its windows were computed from the whole range's reads: their bytes and seconds are in
        # the whole range's record; this record's cost is its own mosaic's.
        "bytes_read": 0,
    }


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
    scenes = len(manifest.datasets) if tiles else 0
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
        message_bytes=sum(len(manifest.message(tile).to_bytes()) for tile in manifest.grid.tile_ids()) if tiles else 0,
    )
