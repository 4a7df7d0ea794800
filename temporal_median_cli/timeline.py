"""`temporal-median timeline JOB_ID|job.json [-o timeline.png]`: a job's attempts drawn, a row per instance."""

from __future__ import annotations

import argparse
import json
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="temporal-median timeline",
        description="Draw a finished job's timeline from its record: a row per median instance with a bar per "
        "attempt (failed, retried and refused ones marked), the mosaic's span and the tiles done over time.",
    )
    parser.add_argument("job", metavar="JOB_ID|job.json", help="a job.json file, or a job id on the local cloud "
                        "(or wherever TM_WORK_URL and the storage variables point)")
    parser.add_argument("-o", "--output", default="timeline.png", help="the PNG to write (default timeline.png)")
    return parser


def load_record(job: str) -> dict:
    """The job record: a file, or the job's job.json found through its manifest in the work bucket."""
    if os.path.isfile(job):
        with open(job) as f:
            return json.load(f)
    from temporal_median.base import storage
    from temporal_median.base.errors import JobNotFound
    from temporal_median.base.settings import Settings
    from temporal_median.job.manifest import Manifest
    from temporal_median.job.paths import JobPaths

    if "STORAGE_EMULATOR_HOST" not in os.environ:
        from localcloud import LocalCloud

        cloud = LocalCloud.load()
        if cloud.is_running():
            os.environ.update(cloud.env())
    settings = Settings.from_env()
    manifest = storage.read_json(JobPaths.of(settings.work_url, job).manifest)
    if manifest is None:
        raise JobNotFound(f"no job {job} under {settings.work_url}")
    record = storage.read_json(Manifest.from_dict(manifest).results.record)
    if record is None:
        raise JobNotFound(f"job {job} has no record yet (not complete)")
    return record


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from temporal_median.base.errors import TemporalMedianError
    from temporal_median.plan.timeline import draw_timeline

    try:
        record = load_record(args.job)
    except (TemporalMedianError, OSError, ValueError) as exc:
        print(f"temporal-median timeline: {exc}", file=sys.stderr)
        return 1
    if not record.get("attempts"):
        print(f"temporal-median timeline: {args.job} records no attempts (a job recorded before attempts were kept)",
              file=sys.stderr)
        return 1
    info = draw_timeline(record, args.output)
    instances = sum(1 for row in info["rows"] if row["label"] not in ("mosaic", "refused (429)"))
    print(f"{args.output}: {len(record['attempts'])} attempts on {instances} instances, "
          f"{info['width']} x {info['height']} px")
    return 0
