"""Fanout's core: list and check the inputs, write the manifest, publish the windows; job status and cancel."""

from __future__ import annotations

import functools
import glob
import os
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from temporal_median.base import storage
from temporal_median.base.clock import isoformat, parse_time, utcnow
from temporal_median.base.errors import (
    GridMismatch,
    InputUnreadable,
    InvalidRequest,
    JobConflict,
    JobNotFound,
    NoInputs,
    RequestTooLarge,
    TransientError,
)
from temporal_median.base.grid import Grid, TileId
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import Settings
from temporal_median.base.storage import INPUT_SUFFIXES, GsUrl
from temporal_median.job.manifest import Manifest
from temporal_median.job.masks import is_mask_name
from temporal_median.job.paths import JobPaths, ResultPaths, parse_attempt_object, parse_error_object
from temporal_median.job.periods import Period, periods_between
from temporal_median.job.request import JobRequest
from temporal_median.scenes.scene import Scene
from temporal_median.scenes.selection import SelectionResult, select

log = get_logger("temporal_median.fanout")

PUBLISH_TIMEOUT_SECONDS = 120

@functools.lru_cache(maxsize=1)
def publisher():
    """The process's Pub/Sub publisher, batching up to 100 messages (honours PUBSUB_EMULATOR_HOST)."""
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_bytes=8 << 20, max_latency=0.05)
    )


def list_inputs(request: JobRequest, settings: Settings) -> tuple[str, ...]:
    """The job's rasters in acquisition order: a listed prefix sorted by name, or the explicit list as given."""
    if isinstance(request.inputs, tuple):
        return request.inputs
    location = request.inputs
    if location.startswith("gs://"):
        prefix = GsUrl.parse(location)
        found = [
            str(info.url)
            for info in storage.list_objects(prefix)
            if info.url.key.lower().endswith(INPUT_SUFFIXES) and "/" not in info.url.key[len(prefix.key) :].strip("/")
            and not is_mask_name(info.url.key)
        ]
    else:
        if not os.path.isdir(location):
            raise InputUnreadable(f"input directory {location} does not exist")
        found = sorted(
            path
            for path in glob.glob(os.path.join(glob.escape(location), "*"))
            if path.lower().endswith(INPUT_SUFFIXES) and os.path.isfile(path) and not is_mask_name(path)
        )
    found.sort(key=lambda url: url.rsplit("/", 1)[-1])
    if not found:
        raise NoInputs(f"no .tif or .tiff file directly under {location}")
    if len(found) > settings.max_inputs:
        raise RequestTooLarge(f"{location} holds {len(found)} rasters; at most {settings.max_inputs} are allowed")
    return tuple(found)


def choose_scenes(request: JobRequest, settings: Settings) -> SelectionResult:
    """The job's scenes in acquisition order: STAC items or the listed rasters, as the request's
    date range and cloud ceiling select them, each dropped scene with its reason.

    Raises
    ------
    NoInputs
        If no scene is left.
    InvalidRequest, InputUnreadable, StorageUnavailable, RequestTooLarge
        From the STAC source, the listing, or a cloud estimate that cannot read its scene.
    """
    if request.stac is not None:
        scenes = request.stac.scenes()
    else:
        scenes = tuple(Scene.from_url(url) for url in list_inputs(request, settings))
    result = select(scenes, request.selection, max_workers=settings.read_threads or None)
    if not result.kept:
        reasons = "; ".join(f"{d.scene.name}: {d.reason}" for d in result.dropped[:5])
        raise NoInputs(f"no scene is left after the selection ({len(result.dropped)} dropped: {reasons})")
    if len(result.kept) > settings.max_inputs:
        raise RequestTooLarge(f"{len(result.kept)} scenes selected; at most {settings.max_inputs} are allowed")
    return result


@dataclass(frozen=True)
class StartResult:
    """What fanout answers to a POST."""

    manifest: Manifest
    published: int
    already_done: int
    #: Scenes this request's selection dropped (a re-post with other criteria may drop others
    #: than the manifest's first request did: the job is the same when the kept scenes are).
    dropped: int

    def to_dict(self, settings: Settings) -> dict:
        paths = JobPaths.of(settings.work_url, self.manifest.job_id)
        return {
            "job_id": self.manifest.job_id,
            "tiles": len(self.manifest.grid),
            "published": self.published,
            "already_done": self.already_done,
            "method": self.manifest.method,
            "inputs": len(self.manifest.datasets),
            "dropped": self.dropped,
            "status": f"/jobs/{self.manifest.job_id}",
            "manifest": str(paths.manifest),
            "tiles_location": str(paths.tiles),
            "results": str(self.manifest.results),
            "periods": [p.name for p in self.manifest.periods],
            "empty_periods": [p["name"] for p in self.manifest.selection.get("empty_periods", [])],
        }


def plan_request(request: JobRequest, settings: Settings) -> dict:
    """The dry run: the job's scenes, windows, bytes, predicted wall time and cost; nothing written or published."""
    from temporal_median.plan.plan import plan_job  # simpy: only for a dry run

    chosen = choose_scenes(request, settings)
    datasets, raster, grid, layout = place(chosen, request, settings)
    plan = plan_job(datasets, raster, grid, settings, method=request.method, max_workers=settings.read_threads or None,
                    layout=layout)
    return {"dry_run": True, "job_id": request.derive_job_id(datasets), "inputs": len(datasets),
            "dropped": len(chosen.dropped), "area": layout is not None, **plan.to_dict()}


def start_job(request: JobRequest, settings: Settings) -> StartResult:
    """Create (or resume) a job and publish one message per window that has no tile yet.

    The manifest is written before anything is published, so every message refers to a job
    that exists. Posting the same job again publishes only the missing windows.
    """
    chosen = choose_scenes(request, settings)
    datasets, raster, grid, layout = place(chosen, request, settings)
    dropped = [d.to_dict() for d in chosen.dropped]
    if layout is not None:
        dropped += [{**s.to_dict(), "reason": "footprint outside the area"} for s in layout.outside]
    scenes = layout.scenes if layout is not None else chosen.kept
    periods, days, empty = _periods(request, scenes)
    masks = tuple(request.mask.url_of(scene, _exists) for scene in scenes) if request.mask else None
    job_id = request.derive_job_id(datasets)
    paths = JobPaths.of(settings.work_url, job_id)
    manifest = Manifest(
        job_id=job_id,
        datasets=datasets,
        grid=grid,
        raster=raster,
        method=request.method,
        output=request.output,
        created=isoformat(utcnow()),
        work=str(paths.work).rstrip("/"),
        selection={
            "source": request.stac.to_dict() if request.stac else {"inputs": request.inputs},
            "criteria": request.selection.to_dict(),
            **chosen.to_dict(),
            "dropped": dropped,
            # Periods with no scene have no composite: reported here, not an error.
            "empty_periods": [p.to_dict() for p in empty],
        },
        area=layout.to_dict(request.area) if layout else None,
        periods=periods,
        days=days,
        masks=masks,
        exclude=request.mask.exclude if request.mask else (),
    )
    if not storage.create_json(paths.manifest, manifest.to_dict()):
        existing = Manifest.from_dict(storage.read_json(paths.manifest) or {})
        if not existing.same_job(manifest):
            raise JobConflict(f"job {job_id} already exists with other inputs or parameters")
        manifest = existing
    # Posting again resumes a cancelled job.
    storage.delete(paths.cancelled)
    done = _done_tiles(paths)
    missing = [tile for tile in grid.tile_ids() if tile not in done]
    # A re-post gives the missing windows a fresh start: no error records, a new attempt budget.
    for prefix, parse in ((paths.errors, parse_error_object), (paths.attempts, parse_attempt_object)):
        for info in storage.list_objects(prefix):
            parsed = parse(info.url.key)
            if parsed and parsed[0] in missing:
                storage.delete(info.url)
    if not missing and not storage.exists(manifest.results.collection):
        # Every tile is there but no mosaic (it was cancelled or failed): the marker's finalize
        # event makes mosaic look again.
        storage.put_json(paths.resume, {"time": isoformat(utcnow())})
    _publish(manifest, missing, settings)
    log.info(
        "job started",
        extra={"job_id": job_id, "fields": {"tiles": len(grid), "published": len(missing), "already_done": len(done)}},
    )
    return StartResult(manifest, len(missing), len(done), len(dropped))


def _periods(request: JobRequest, scenes) -> tuple[tuple[Period, ...], tuple[str, ...], tuple[Period, ...]]:
    """The job's periods with scenes, each scene's acquisition day (UTC), and the periods without."""
    if request.periods == "year":
        return (), (), ()
    undated = [scene.name for scene in scenes if scene.datetime is None]
    if undated:
        raise InvalidRequest(f"'periods' needs every scene's acquisition time; {len(undated)} have none: {undated[0]}, ...")
    days = [scene.datetime.date() for scene in scenes]
    every = periods_between(request.periods, min(days), max(days))
    kept = tuple(p for p in every if any(p.holds(day) for day in days))
    return kept, tuple(day.isoformat() for day in days), tuple(p for p in every if p not in kept)


def _exists(url: str) -> bool:
    """Whether a plain file's sidecar (a mask) is there: local, gs://; an https:// one is tried by the reads."""
    if url.startswith("gs://"):
        return storage.exists(GsUrl.parse(url))
    return url.startswith("https://") or os.path.isfile(url)


def place(chosen: SelectionResult, request: JobRequest, settings: Settings):
    """The job's scenes, grid and windows: (datasets, raster, grid, layout or None).

    Co-registered scenes and no output grid asked for: the scenes' own grid, read as it is
    (no warping). Otherwise an area (job/layout.py): the grid asked for, or one over the
    scenes' footprints when they lie on several grids (tiles, UTM zones).
    """
    # rasterio and GDAL load on the first job, not at cold start (status and cancel need neither).
    from temporal_median.job.layout import plan_layout
    from temporal_median.raster.read import inspect_inputs

    threads = settings.read_threads or None
    if request.area is None:
        try:
            raster = inspect_inputs(list(chosen.urls), max_workers=threads)
            return chosen.urls, raster, Grid(raster.width, raster.height, request.tile_size), None
        except GridMismatch:
            pass  # scenes of several tiles or zones: an area over their footprints
    layout = plan_layout(chosen.kept, request.area, request.tile_size, max_workers=threads, max_windows=settings.max_windows)
    return tuple(s.url for s in layout.scenes), layout.raster, layout.grid, layout


def _publish(manifest: Manifest, tiles: list[TileId], settings: Settings) -> None:
    client = publisher()
    futures = [
        client.publish(settings.topic_path, message.to_bytes(), **message.attributes())
        for message in (manifest.message(tile) for tile in tiles)
    ]
    failures = []
    for future in futures:
        try:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except (FutureTimeout, Exception) as exc:  # noqa: BLE001 - any publish failure is retried by re-posting
            failures.append(exc)
    if failures:
        raise TransientError(
            f"{len(failures)} of {len(futures)} window messages could not be published ({failures[0]}); "
            "post the job again to publish the missing windows"
        )


def _done_tiles(paths: JobPaths) -> set[TileId]:
    done = set()
    for info in storage.list_objects(paths.tiles):
        name = info.url.key.rsplit("/", 1)[-1]
        if name.endswith(".tif"):
            try:
                done.add(TileId.parse(name[: -len(".tif")]))
            except Exception:  # noqa: BLE001 - foreign objects are not tiles
                continue
    return done


def load_manifest(job_id: str, settings: Settings) -> Manifest:
    """The job's manifest; JobNotFound if the job does not exist."""
    data = storage.read_json(JobPaths.of(settings.work_url, job_id).manifest)
    if data is None:
        raise JobNotFound(f"no job {job_id}")
    return Manifest.from_dict(data)


def job_status(job_id: str, settings: Settings) -> dict:
    """Tiles expected / done / failed (with reasons), and the mosaic's state and locations."""
    manifest = load_manifest(job_id, settings)
    paths = JobPaths.of(settings.work_url, job_id)
    done = _done_tiles(paths)
    failed: dict[str, dict] = {}
    retrying: dict[str, dict] = {}
    for info in storage.list_objects(paths.errors):
        parsed = parse_error_object(info.url.key)
        if not parsed or parsed[0] in done:
            continue
        tile, attempt = parsed
        # Only a permanent record fails a tile: median writes one when an error cannot be cured
        # or when the window used up its TM_MAX_ATTEMPTS executions.
        target = failed if attempt is None else retrying
        previous = target.get(str(tile))
        if previous is None or (attempt or 0) >= (previous.get("attempt") or 0):
            record = storage.read_json(info.url) or {}
            target[str(tile)] = {
                "reason": record.get("error", "unknown"),
                "code": record.get("code"),
                "attempt": attempt,
                "permanent": attempt is None,
            }
    for tile in failed:
        retrying.pop(tile, None)
    total = len(manifest.grid)
    cancelled = storage.read_json(paths.cancelled)
    results = manifest.results
    record_url = results.record
    record = storage.read_json(record_url)
    mosaic_error = storage.read_json(paths.mosaic_error)
    periods = {p.name: _period_status(manifest, paths, p.name) for p in manifest.periods}
    mosaic_error = mosaic_error or next((s["error"] for s in periods.values() if s["error"]), None)
    published = record is not None and storage.exists(results.collection)
    if published and all(s["state"] == "complete" for s in periods.values()):
        state = "complete"
    elif cancelled is not None:
        state = "cancelled"
    elif failed and len(done) + len(failed) >= total:
        state = "failed"
    elif len(done) == total:
        state = "mosaic-failed" if mosaic_error else "mosaicking"
    else:
        state = "running"
    elapsed = (utcnow() - parse_time(manifest.created)).total_seconds()
    return {
        "job_id": job_id,
        "state": state,
        "tiles": {"expected": total, "done": len(done), "failed": len(failed), "retrying": len(retrying)},
        "failed": failed,
        "retrying": retrying,
        "cancelled": cancelled,
        "created": manifest.created,
        "seconds_since_created": round(elapsed, 1),
        "method": manifest.method,
        "inputs": len(manifest.datasets),
        "scenes": manifest.selection,
        "mosaic": {
            "state": "complete" if record else ("error" if mosaic_error else "pending"),
            "error": mosaic_error,
            "record": str(record_url),
            "cog": str(results.cog),
            "vrt": str(results.vrt),
            "quicklook": str(results.quicklook),
            "figures": record,
        },
        "periods": periods,
        "empty_periods": [p["name"] for p in manifest.selection.get("empty_periods", [])],
    }


def _period_status(manifest: Manifest, paths: JobPaths, name: str) -> dict:
    """One period's composite: its tiles written, and its mosaic's state and results."""
    results = ResultPaths.of(manifest.output, manifest.job_id, name)
    complete = storage.exists(results.record)
    error = None if complete else storage.read_json(paths.mosaic_error_of(name))
    return {
        "state": "complete" if complete else ("error" if error else "pending"),
        "tiles_done": sum(1 for _ in storage.list_objects(paths.tiles_of(name))),
        "error": error,
        "cog": str(results.cog),
        "record": str(results.record),
    }


def cancel_job(job_id: str, settings: Settings) -> dict:
    """Mark a job cancelled: median acknowledges its remaining messages without work, no mosaic is built."""
    load_manifest(job_id, settings)
    paths = JobPaths.of(settings.work_url, job_id)
    storage.create_json(paths.cancelled, {"time": isoformat(utcnow())})
    log.info("job cancelled", extra={"job_id": job_id})
    return job_status(job_id, settings)
