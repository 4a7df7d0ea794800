"""Push throughput of the local Pub/Sub emulator, the cost of the function front end, and `localcloud up` time.

Run: .venv/bin/python bench/bench_pubsub.py [--messages N] [--emulator builtin|google|both]
A sink function runs as one instance with concurrency C behind its front end (Cloud Run's
capacity model, localcloud/frontend.py). In one run, against that same instance: pushes through
the emulator to the front end and straight to the instance's own port, and direct POSTs (no
emulator) to both. The ratios (the front end's and the emulator's overhead) are meaningful on a
shared, noisy machine; absolute figures much less.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from localcloud import LocalCloud, publisher_client, subscriber_client  # noqa: E402

SINK = '''"""Benchmark sink: counts pushes with one byte per request."""
import os
import functions_framework

@functions_framework.http
def sink(request):
    request.get_data()
    fd = os.open(os.environ["SINK_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    return "", 204
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    drop = ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "CPL_GS_ENDPOINT")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("LOCALCLOUD_")}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load on the machine does not change it much)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_count(path: Path, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (path.stat().st_size if path.exists() else 0) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {path.stat().st_size} of {expected} pushes arrived")
        time.sleep(0.01)


def bench_push(messages: int, concurrency: int, work: Path, emulator: str, repeats: int = 3) -> dict[str, float]:
    """Messages (or requests) per second: push via front end / to the instance, direct POSTs to both."""
    sink_py = work / "sink.py"
    sink_py.write_text(SINK)
    topology = work / "topology.toml"
    topology.write_text(
        f"""
project = "bench-project"
topics = ["bench"]
[pubsub]
port = 0
emulator = "{emulator}"
[storage]
enabled = false
[functions.sink]
source = "{sink_py}"
port = 0
max_instances = 1
concurrency = {concurrency}
env = {{ SINK_FILE = "{work / 'pushed'}" }}
"""
    )
    cloud = LocalCloud.load(topology, work / "run", environ=_clean_env()).up()
    try:
        host = cloud.env()["PUBSUB_EMULATOR_HOST"]
        front = cloud.function_url("sink")
        (instance,) = cloud.instances("sink")
        direct = f"http://127.0.0.1:{instance['port']}/"
        publisher, subscriber = publisher_client(host), subscriber_client(host)
        topics = {}
        for label, url in (("push via front end", front), ("push to instance", direct)):
            suffix = label.split()[-1]
            topics[label] = topic = f"projects/bench-project/topics/bench-{suffix}"
            publisher.create_topic(name=topic)
            subscriber.create_subscription(
                request={
                    "name": f"projects/bench-project/subscriptions/bench-{suffix}",
                    "topic": topic,
                    "push_config": {"push_endpoint": url, "attributes": {"x-localcloud-max-concurrency": str(concurrency)}},
                }
            )
        envelope = json.dumps(
            {"message": {"data": "eyJ3aW5kb3ciOiAxfQ==", "attributes": {"job": "bench"}, "messageId": "1",
                         "publishTime": "2024-01-01T00:00:00Z"}, "subscription": "projects/bench-project/subscriptions/x"}
        ).encode()
        pools = {label: urllib3.PoolManager(maxsize=concurrency) for label in ("POST via front end", "POST to instance")}
        urls = {"POST via front end": front, "POST to instance": direct}
        pushed = 0

        def push_rate(label: str, count: int) -> float:
            nonlocal pushed
            began = time.perf_counter()
            futures = [publisher.publish(topics[label], json.dumps({"window": i}).encode(), job="bench") for i in range(count)]
            for future in futures:
                future.result()
            pushed += count
            _wait_count(work / "pushed", pushed)
            return count / (time.perf_counter() - began)

        def post_rate(label: str, count: int) -> float:
            http, url = pools[label], urls[label]

            def post(_: int) -> None:
                response = http.request("POST", url, body=envelope, headers={"Content-Type": "application/json"})
                assert response.status == 204, response.status

            began = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(post, range(count)))
            nonlocal pushed
            pushed += count
            return count / (time.perf_counter() - began)

        measures = {"push via front end": push_rate, "push to instance": push_rate,
                    "POST via front end": post_rate, "POST to instance": post_rate}
        for label, measure in measures.items():  # warm up: connections, imports, the push window
            measure(label, 50)
        runs: dict[str, list[float]] = {label: [] for label in measures}
        front_pid = next(p.pid for p in cloud.status() if p.part == "function:sink")
        cpu = {"front end": 0.0, "instance": 0.0}
        # Interleaved rounds, medians: the machine's load moves while we measure.
        for _ in range(repeats):
            for label, measure in measures.items():
                before = (_cpu_seconds(front_pid), _cpu_seconds(instance["pid"]))
                runs[label].append(measure(label, messages))
                if label == "push via front end":
                    cpu["front end"] += _cpu_seconds(front_pid) - before[0]
                    cpu["instance"] += _cpu_seconds(instance["pid"]) - before[1]
        results = {label: sorted(values)[len(values) // 2] for label, values in runs.items()}
        # CPU per request, steadier than rates on a busy machine.
        results["front end us"] = cpu["front end"] / (repeats * messages) * 1e6
        results["instance us"] = cpu["instance"] / (repeats * messages) * 1e6
        return results
    finally:
        cloud.down()


def bench_startup(work: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Wall time of `python -m localcloud up` with the default topology: cold, then already running."""
    cold, warm = [], []
    for index in range(rounds):
        env = _clean_env()
        env["LOCALCLOUD_PUBSUB_EMULATOR"] = "builtin"
        for name in ("PUBSUB", "STORAGE", "EVENTARC", "FANOUT", "MEDIAN", "MOSAIC"):
            env[f"LOCALCLOUD_{name}_PORT"] = str(_free_port())
        run_dir = work / f"startup-{index}"
        command = [sys.executable, "-m", "localcloud", "up", "--run-dir", str(run_dir)]
        try:
            began = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
            cold.append(time.perf_counter() - began)
            began = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
            warm.append(time.perf_counter() - began)
        finally:
            subprocess.run([sys.executable, "-m", "localcloud", "down", "--run-dir", str(run_dir)], cwd=REPO, env=env,
                           check=True, capture_output=True)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="per measurement (3 interleaved rounds each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--emulator", choices=["builtin", "google", "both"], default="builtin")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    from localcloud import google_pubsub

    kinds = ["builtin", "google"] if args.emulator == "both" else [args.emulator]
    if "google" in kinds and google_pubsub.missing():
        print(f"Google's emulator skipped: {google_pubsub.missing()}")
        kinds.remove("google")
    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as tmp:
        work = Path(tmp)
        for kind in kinds:
            for concurrency in sorted({cpus, 8}):
                run = work / f"{kind}-c{concurrency}"
                run.mkdir()
                r = bench_push(args.messages, concurrency, run, kind)
                print(
                    f"{kind} emulator, concurrency {concurrency:>2}: push {r['push via front end']:6.0f} msg/s via the "
                    f"front end, {r['push to instance']:6.0f} straight to the instance (front end costs "
                    f"{1 - r['push via front end'] / r['push to instance']:4.0%}); direct POSTs {r['POST via front end']:6.0f} "
                    f"req/s via the front end, {r['POST to instance']:6.0f} to the instance; push via front end / "
                    f"direct POSTs via front end = {r['push via front end'] / r['POST via front end']:.2f}; CPU per push: "
                    f"front end {r['front end us']:.0f} us, instance {r['instance us']:.0f} us"
                )
        cold, warm = bench_startup(work, args.rounds)
        print(
            f"`python -m localcloud up` (default topology, 3 functions): cold median {sorted(cold)[len(cold) // 2]:.2f} s "
            f"(runs {', '.join(f'{t:.2f}' for t in cold)}); already running {sorted(warm)[len(warm) // 2]:.2f} s"
        )


if __name__ == "__main__":
    main()
