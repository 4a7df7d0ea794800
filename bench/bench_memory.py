"""Peak memory of a real median function instance computing 1024 x 1024 windows of 216 scenes.

Run: .venv/bin/python bench/bench_memory.py [--scenes 216] [--size 2048] [--cases deflate512,gs]
     [--read-threads N] [--env KEY=VALUE ...] [--keep-run-dir]
     e.g. --cases jpeg1024/gs --read-threads 4: one case, fewer reading threads

Question answered: can the median Cloud Function be deployed with 1 GiB instead of 2 GiB? Cloud
Run's memory limit counts every process of the instance (the functions-framework/gunicorn
server and its worker) plus the files in /tmp, where each tile is written before its upload.

Inputs: one series of --scenes scenes of --size x --size (bench_tile.ensure_series, cached in
bench/.data/), written three ways (bench_tile.ENCODINGS: DEFLATE with 512-px blocks, DEFLATE with
1024-px blocks, JPEG q75 with 1024-px blocks). Each encoding is read from two locations:

* "local": the files on disk (an absolute path; the topology allows local inputs);
* "gs": the same files uploaded to a bucket of the storage emulator (fake-gcs-server), read
  through GDAL's /vsigs/ with the remote reading threads (REMOTE_READ_THREADS), as deployed.

Each case starts a fresh local cloud (the pipeline's topology, free ports, private run dir) with
one median instance of concurrency 1, POSTs a real job (tile_size 1024: (size / 1024)^2 windows,
all computed in turn by that one instance) and, once the mosaic is complete, reads the instance's
worker VmHWM (peak RSS) and server VmRSS from /proc. The sum adds the largest tile (the /tmp
file). Summing both RSS figures counts the pages the worker shares with the server (it is a fork
of it) twice, so the sum is an upper bound; the server's private memory is printed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_tile  # noqa: E402
from bench_e2e import proc_kib, run_job  # noqa: E402  (POST /jobs, poll until complete; tile_size 1024)

from localcloud import LocalCloud, clean_environ, storage_client  # noqa: E402
from temporal_median.raster.gdal import REMOTE_READ_THREADS  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
#: The line a case must stay under to call 1 GiB safe: room for allocator noise, larger real
#: scenes' headers, and Cloud Run's own overhead in the container.
SAFETY_LINE = 0.85 * GIB
INPUTS_BUCKET = "tm-inputs"
LOCATIONS = ("local", "gs")
UPLOAD_THREADS = 8


def overrides(env: dict[str, str]) -> dict:
    """The pipeline's topology on free ports, with a single median instance fed one push at a time."""
    median = {"port": 0, "max_instances": 1, "concurrency": 1,
              # Pushes wait for the one instance instead of getting 429 and a retry backoff.
              "pending_timeout_seconds": 600, "env": env}
    return {
        # The builtin emulator honours max_concurrency 1 (Google's pushes 2 at once) and is lighter.
        "pubsub": {"port": 0, "emulator": "builtin"},
        "storage": {"port": 0},
        "eventarc": {"port": 0},
        "functions": {"fanout": {"port": 0}, "median": median, "mosaic": {"port": 0}},
        "subscriptions": {"windows-median": {"max_concurrency": 1, "min_backoff_seconds": 0.5,
                                             "max_backoff_seconds": 2}},
    }


def upload(cloud: LocalCloud, paths: list[str], prefix: str) -> str:
    """Upload the scenes to gs://INPUTS_BUCKET/PREFIX/ of the cloud's storage emulator; that URL."""
    client = storage_client(cloud.env()["STORAGE_EMULATOR_HOST"], cloud.topology.project)
    # Its own bucket: the mosaic trigger watches tm-work, and its notifications would be noise.
    bucket = client.create_bucket(INPUTS_BUCKET)

    def one(path: str) -> None:
        bucket.blob(f"{prefix}/{Path(path).name}").upload_from_filename(path, content_type="image/tiff")

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(one, paths))
    return f"gs://{INPUTS_BUCKET}/{prefix}"


def largest_tile(cloud: LocalCloud, job_id: str) -> int:
    """Bytes of the job's largest tile: the file that sat in /tmp before its upload."""
    client = storage_client(cloud.env()["STORAGE_EMULATOR_HOST"], cloud.topology.project)
    blobs = client.list_blobs("tm-work", prefix=f"jobs/{job_id}/tiles/")
    return max((b.size for b in blobs if b.name.endswith(".tif")), default=0)


def run_case(encoding: str, location: str, paths: list[str], args) -> dict:
    """One fresh local cloud, one job over the series; the median instance's memory figures."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    cloud = LocalCloud.load(None, run_dir, environ=clean_environ(), overrides=overrides(median_env(args)))
    failed = True
    try:
        cloud.up()
        if location == "gs":
            t0 = time.perf_counter()
            inputs = upload(cloud, paths, encoding)
            uploaded = time.perf_counter() - t0
        else:
            inputs, uploaded = str(Path(paths[0]).parent), 0.0
        (instance,) = [i for i in cloud.instances("median") if i["state"] == "ready"]
        idle_kib = proc_kib(instance["pid"], "status", ("VmHWM",))
        job_id = f"mem-{encoding}-{location}-{time.strftime('%H%M%S')}"
        job = run_job(cloud.function_url("fanout"), inputs, job_id)
        after = {i["pid"]: i for i in cloud.instances("median")}
        # A replaced instance (killed, out of memory) would have lost the peak: refuse the figure.
        if instance["pid"] not in after or after[instance["pid"]]["served"] < job["record"]["tiles"]:
            raise RuntimeError(f"median instance {instance['pid']} did not serve the whole job: {after}")
        result = {
            "encoding": encoding, "location": location, "job_seconds": job["seconds"], "upload_seconds": uploaded,
            "tiles": job["record"]["tiles"], "bytes_read": job["record"]["bytes_read"],
            "worker_idle": idle_kib * 1024,
            "worker_peak": proc_kib(instance["pid"], "status", ("VmHWM",)) * 1024,
            "server_rss": proc_kib(instance["server_pid"], "status", ("VmRSS",)) * 1024,
            "server_private": proc_kib(instance["server_pid"], "smaps_rollup", ("Private_Clean", "Private_Dirty")) * 1024,
            "tile": largest_tile(cloud, job_id),
        }
        # Upper bound of what the container holds at the worst moment of the job.
        result["sum"] = result["worker_peak"] + result["server_rss"] + result["tile"]
        failed = False
        return result
    finally:
        cloud.down()
        if failed or args.keep_run_dir:
            print(f"  (run dir kept: {run_dir}; logs in {run_dir / 'logs'})")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def median_env(args) -> dict[str, str]:
    """Extra variables of the median function: --read-threads and every --env KEY=VALUE."""
    env = dict(item.split("=", 1) for item in args.env)
    if args.read_threads:
        env["TM_READ_THREADS"] = str(args.read_threads)
    return env


def selected(cases: list[tuple[str, str]], spec: str) -> list[tuple[str, str]]:
    """The cases a --cases filter names: each token an encoding, a location or ENCODING/LOCATION."""
    if not spec:
        return cases
    tokens = {t.strip() for t in spec.split(",") if t.strip()}
    return [(e, loc) for e, loc in cases if tokens & {e, loc, f"{e}/{loc}"}]


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=216)
    parser.add_argument("--size", type=int, default=2048, help="scene width and height (windows of 1024)")
    parser.add_argument("--cases", default="", help="comma-separated encodings, locations or ENCODING/LOCATION "
                        f"(encodings {', '.join(bench_tile.ENCODINGS)}; locations {', '.join(LOCATIONS)}); default: all")
    parser.add_argument("--read-threads", type=int, default=None,
                        help="TM_READ_THREADS for median (default: unset, i.e. one per core for local files, "
                             f"{REMOTE_READ_THREADS} for gs://; terraform deploys 16)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the median function (repeatable), e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep each cloud's run directory (logs)")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.env):
        parser.error("--env takes KEY=VALUE")

    cases = selected([(e, loc) for e in bench_tile.ENCODINGS for loc in LOCATIONS], args.cases)
    if not cases:
        parser.error(f"--cases {args.cases!r} selects nothing")
    print(f"cores {os.cpu_count()}; load average (1, 5, 15 min) before: {loadavg()}")
    base = bench_tile.ensure_series(args.scenes, args.size, args.size).paths
    series = {e: sorted(bench_tile.ensure_encoding(base, e)) for e in dict.fromkeys(e for e, _ in cases)}
    for encoding, paths in series.items():
        print(f"{encoding}: {len(paths)} scenes of {args.size} x {args.size}, "
              f"{sum(os.path.getsize(p) for p in paths) / MIB:.0f} MiB in {Path(paths[0]).parent}")

    results = []
    for encoding, location in cases:
        print(f"{encoding}/{location}: ...", flush=True)
        # Warm page cache: local reads decode rather than wait on the disk (the emulator serves from RAM).
        if location == "local":
            bench_tile.drop_page_cache_hint(series[encoding])
        r = run_case(encoding, location, series[encoding], args)
        results.append(r)
        upload = f", upload {r['upload_seconds']:.0f} s" if location == "gs" else ""
        print(f"  job {r['job_seconds']:.1f} s ({r['tiles']} tiles, {r['bytes_read'] / MIB:.0f} MiB read{upload}); "
              f"worker {r['worker_idle'] / MIB:.0f} MiB idle -> {r['worker_peak'] / MIB:.0f} MiB peak; "
              f"server RSS {r['server_rss'] / MIB:.0f} MiB of which {r['server_private'] / MIB:.0f} MiB private; "
              f"load {loadavg()}", flush=True)

    extra = median_env(args)
    threads = "" if "TM_READ_THREADS" in extra else \
        f"reading threads {min(os.cpu_count() or 1, args.scenes)} local (one per core), {REMOTE_READ_THREADS} gs; "
    setting = threads + (" ".join(f"{k}={v}" for k, v in extra.items()) or "no extra median environment")
    print()
    print(f"median instance memory, {args.scenes} scenes of {args.size} x {args.size}, windows of 1024, "
          f"one instance per case ({setting})")
    print(f"sum = worker peak RSS (VmHWM) + server RSS (VmRSS) + largest tile (/tmp); "
          f"safety line {SAFETY_LINE / GIB:.2f} GiB = {SAFETY_LINE / MIB:.0f} MiB")
    header = f"{'encoding':<12} {'location':<8} {'worker peak':>11} {'server':>7} {'tile':>5} {'sum MiB':>8} " \
             f"{'of 1 GiB':>8}  under line"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['encoding']:<12} {r['location']:<8} {r['worker_peak'] / MIB:>11.0f} {r['server_rss'] / MIB:>7.0f} "
              f"{r['tile'] / MIB:>5.1f} {r['sum'] / MIB:>8.0f} {r['sum'] / GIB:>8.0%}  "
              f"{'yes' if r['sum'] <= SAFETY_LINE else 'NO'}")
    worst = max(results, key=lambda r: r["sum"])
    worst_total = worst["sum"]
    print(f"largest tile file: {max(r['tile'] for r in results) / MIB:.1f} MiB")
    print(f"worst case {worst['encoding']}/{worst['location']}: {worst_total / MIB:.0f} MiB, margin to 1 GiB "
          f"{(GIB - worst_total) / MIB:.0f} MiB, to the safety line {(SAFETY_LINE - worst_total) / MIB:.0f} MiB")
    print(f"cores {os.cpu_count()}; load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
