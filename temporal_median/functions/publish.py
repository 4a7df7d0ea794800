"""A job's published results besides the composites: each composite's STAC item, the collection, the timelapse."""

from __future__ import annotations

import os
import shutil
import tempfile

from temporal_median.base import storage
from temporal_median.base.clock import utcnow
from temporal_median.base.errors import TemporalMedianError, describe
from temporal_median.base.logs import get_logger
from temporal_median.job.manifest import Manifest
from temporal_median.job.paths import ResultPaths

log = get_logger("temporal_median.mosaic")

#: The periods' quicklooks in order, each labelled, when a job has two periods or more.
TIMELAPSE = "timelapse.gif"


def _dates(manifest: Manifest, period: str | None) -> tuple[str, str]:
    """A composite's first and last day: its period's, or the whole range's scenes'."""
    if period is not None:
        found = next(p for p in manifest.periods if p.name == period)
        return found.start.isoformat(), found.end.isoformat()
    days = list(manifest.days) or [
        s["datetime"][:10] for s in manifest.selection.get("kept", []) if isinstance(s.get("datetime"), str)
    ]
    if not days:
        today = utcnow().date().isoformat()
        return today, today
    return min(days), max(days)


def put_item(manifest: Manifest, period: str | None, cog_path: str, results: ResultPaths) -> None:
    """Write the composite's STAC item beside it (``item.json``), from its local COG."""
    # rasterio (the COG's footprint) loads with the mosaic's build, not at cold start.
    from temporal_median.assembly.catalog import composite_item

    start, end = _dates(manifest, period)
    inputs = len(manifest.datasets) if period is None else sum(start <= day <= end for day in manifest.days)
    item = composite_item(
        manifest.job_id, period, start, end, cog_path,
        cog_href="./median.tif", quicklook_href="./quicklook.png", record_href="./job.json",
        created=utcnow(), count_of_scenes=inputs,
    )
    storage.put_json(results.item, item)


def publish_job(manifest: Manifest, names: list[str | None]) -> None:
    """Once every composite is built: the timelapse of the periods' quicklooks, then the
    collection (last: its presence means the job's results are all in place).

    Idempotent: racing invocations that both complete the last composite write the same files.
    """
    from temporal_median.assembly.catalog import job_collection

    root = ResultPaths.of(manifest.output, manifest.job_id)
    if storage.exists(root.collection):
        return
    work = tempfile.mkdtemp(prefix=f"publish-{manifest.job_id}-")
    try:
        periods = [name for name in names if name is not None]
        if len(periods) >= 2:
            _put_timelapse(manifest, periods, root, work)
        items = [storage.read_json(ResultPaths.of(manifest.output, manifest.job_id, name).item) for name in names]
        missing = [name or "the whole range" for name, item in zip(names, items) if item is None]
        if missing:
            raise TemporalMedianError(f"no STAC item for {', '.join(missing)}")
        description = (
            f"Temporal-median composites of {len(manifest.datasets)} scenes ({manifest.method}): the whole range"
            + (f" and {len(periods)} periods" if periods else "")
        )
        storage.put_json(root.collection, job_collection(manifest.job_id, items, description=description,
                                                                    created=utcnow()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _put_timelapse(manifest: Manifest, periods: list[str], root: ResultPaths, work: str) -> None:
    """The periods' quicklooks as one animated GIF; best effort, it never fails the job."""
    try:
        # Pillow loads here only, once per job.
        from temporal_median.assembly.timelapse import timelapse

        frames = []
        for name in periods:
            local = os.path.join(work, f"{name}.png")
            storage.download_file(ResultPaths.of(manifest.output, manifest.job_id, name).quicklook, local)
            frames.append((name, local))
        out = timelapse(frames, os.path.join(work, TIMELAPSE))
        if out:
            storage.put_file(root.join(TIMELAPSE), out, "image/gif")
    except Exception as exc:  # noqa: BLE001 - a picture of the periods, never a failure of the job
        log.warning(f"could not make the timelapse: {describe(exc)}", extra={"job_id": manifest.job_id})
