"""`temporal-median run INPUT OUTPUT`: one job on the local cloud, started through fanout as curl would."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

from .options import add_job_options, input_location, request_body

POLL_SECONDS = 0.5


def build_parser() -> argparse.ArgumentParser:
    """The ``run`` command's arguments (the documentation's CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(
        prog="temporal-median run",
        description="Compute the temporal median of a series on the local cloud and copy the results to OUTPUT.",
    )
    parser.add_argument(
        "input",
        help="a local directory of co-registered 3-band uint8 GeoTIFFs, a gs:// prefix, or a STAC "
        "ItemCollection (.json: a local file, gs:// or https:// URL)",
    )
    parser.add_argument("output", help="local directory for the results: median.tif, quicklook.png, item.json, collection.json, job.json, timeline.png, and a folder per period")
    add_job_options(parser)
    parser.add_argument("--job-id", default=None, help="default: derived from the inputs and parameters")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the mosaic")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (a line per 10 %% instead)")
    return parser


def parse_args(argv):
    return build_parser().parse_args(argv)


def http_json(method: str, url: str, body=None, timeout: float = 600):
    """(status, JSON) of one request; errors with a JSON body are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload)
        except ValueError:
            return exc.code, {"error": {"message": payload.decode(errors="replace")}}


class Progress:
    """A one-line progress bar on stderr: tiles done and failed, rate, ETA."""

    def __init__(self, total: int, enabled: bool):
        self.total = max(total, 1)
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self.first_done = None
        self.last_decile = -1

    def update(self, done: int, failed: int, state: str) -> None:
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = self.total - done - failed
        eta = f"{remaining / rate:5.0f}s" if rate > 0 and remaining > 0 else "   --"
        if self.enabled:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            line = (
                f"\r[{bar}] {done}/{self.total} tiles, {failed} failed, {rate:5.2f} tiles/s, "
                f"ETA {eta}, {elapsed:5.0f}s  {state:<12}"
            )
            sys.stderr.write(line)
            sys.stderr.flush()
        else:
            decile = int(10 * (done + failed) / self.total)
            if decile != self.last_decile:
                self.last_decile = decile
                print(f"{done}/{self.total} tiles done, {failed} failed, {rate:.2f} tiles/s, {elapsed:.0f}s, {state}", file=sys.stderr)

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    from localcloud import LocalCloud, LocalCloudError

    inputs = input_location(args.input)
    remote = inputs != os.path.abspath(args.input)
    item_collection = inputs.lower().endswith(".json")
    if not remote and not (os.path.isdir(inputs) or (item_collection and os.path.isfile(inputs))):
        print(f"temporal-median run: {args.input} is neither a directory nor an ItemCollection .json file", file=sys.stderr)
        return 2
    try:
        body = request_body(args)
    except ValueError as exc:
        print(f"temporal-median run: {exc}", file=sys.stderr)
        return 2
    if args.job_id:
        body["job_id"] = args.job_id
    started = time.monotonic()
    try:
        cloud = LocalCloud.load().up()
    except LocalCloudError as exc:
        print(f"temporal-median run: the local cloud could not start: {exc}", file=sys.stderr)
        return 2
    os.environ.update(cloud.env())
    fanout = cloud.function_url("fanout").rstrip("/")
    print(f"POST {fanout}/jobs {json.dumps(body)}", file=sys.stderr)
    status_code, answer = http_json("POST", f"{fanout}/jobs", body)
    if status_code != 202:
        print(f"fanout refused the job ({status_code}): {answer.get('error', answer)}", file=sys.stderr)
        return 1
    job_id = answer["job_id"]
    posted = time.monotonic()
    print(
        f"job {job_id}: {answer['inputs']} scenes ({answer.get('dropped', 0)} dropped by the selection), "
        f"{answer['tiles']} tiles, {answer['published']} published, "
        f"{answer['already_done']} already done",
        file=sys.stderr,
    )
    if answer.get("periods") or answer.get("empty_periods"):
        empty = f"; no scene in {', '.join(answer['empty_periods'])}" if answer.get("empty_periods") else ""
        print(f"periods: {', '.join(answer['periods']) or 'none'} and the whole range{empty}", file=sys.stderr)
    progress = Progress(answer["tiles"], enabled=not args.no_progress)
    deadline = time.monotonic() + args.timeout
    status = {}
    try:
        while True:
            code, status = http_json("GET", f"{fanout}/jobs/{job_id}")
            if code != 200:
                print(f"\nstatus call failed ({code}): {status}", file=sys.stderr)
                return 1
            tiles, periods = status["tiles"], status.get("periods") or {}
            state = status["state"]
            if periods and state == "mosaicking":
                state = f"mosaics {sum(p['state'] == 'complete' for p in periods.values())}/{len(periods)}"
            progress.update(tiles["done"], tiles["failed"], state)
            if status["state"] in ("complete", "failed", "cancelled", "mosaic-failed"):
                break
            if time.monotonic() > deadline:
                progress.close()
                print(f"timed out after {args.timeout:.0f}s; the job goes on (status: GET {fanout}/jobs/{job_id})", file=sys.stderr)
                return 1
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        progress.close()
        http_json("DELETE", f"{fanout}/jobs/{job_id}")
        print(f"interrupted: job {job_id} cancelled (post it again to resume)", file=sys.stderr)
        return 130
    progress.close()
    if status["state"] != "complete":
        print(f"job {job_id} ended {status['state']}", file=sys.stderr)
        for tile, failure in sorted(status.get("failed", {}).items()):
            print(f"  tile {tile}: {failure['reason']}", file=sys.stderr)
        for name, period in sorted((status.get("periods") or {}).items()):
            if period.get("error"):
                print(f"  mosaic of {name}: {period['error']}", file=sys.stderr)
        if status["mosaic"].get("error"):
            print(f"  mosaic: {status['mosaic']['error']}", file=sys.stderr)
        return 1
    finished = time.monotonic()
    copied = copy_results(status["mosaic"]["record"].rsplit("/", 1)[0], args.output)
    record = status["mosaic"]["figures"]
    what = f"{record['tiles']} tiles of {record['inputs']} scenes ({record['width']} x {record['height']} px, {record['method']})"
    composites = f", {len(status['periods'])} periods and the whole range" if status.get("periods") else ""
    if not answer["published"]:
        # A re-post of a finished job: nothing ran now, so the figures are the first run's.
        print(f"already complete: {what}{composites}, computed earlier in {record['seconds_fanout_to_mosaic']:.1f}s "
              f"from fanout to mosaic, {record['bytes_read'] / 1e6:.1f} MB read")
    else:
        # From the POST to the job's end (its last composite), as polled; the whole range's own
        # fanout-to-mosaic time is in its job.json.
        print(f"done: {what}{composites} in {finished - posted:.1f}s from the POST to the job's end "
              f"({time.monotonic() - started:.1f}s in all), {record['bytes_read'] / 1e6:.1f} MB read")
    for path in copied:
        print(f"  {path}")
    return 0


def copy_results(results_url: str, output: str) -> list[str]:
    """Download the job's results (every composite's, and its STAC files) into a local directory."""
    from temporal_median.base import storage

    os.makedirs(output, exist_ok=True)
    root = storage.GsUrl.parse(results_url.rstrip("/") + "/")
    copied = []
    for info in storage.list_objects(root):
        relative = info.url.key[len(root.key):]
        # Not the VRTs: they point at tiles in the work bucket.
        if not relative or relative.endswith(".vrt"):
            continue
        target = os.path.join(output, *relative.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        storage.download_file(info.url, target)
        copied.append(target)
    return sorted(copied)
