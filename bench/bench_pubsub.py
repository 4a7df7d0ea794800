"""Push throughput of the local Pub/Sub emulator vs direct POSTs to the same server, and `localcloud up` start-up time.

Run: .venv/bin/python bench/bench_pubsub.py [--messages N]
Both throughput figures are measured in the same run against the same functions-framework server,
so their ratio (the emulator's overhead) is meaningful on a shared, noisy machine.
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


def _wait_count(path: Path, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (path.stat().st_size if path.exists() else 0) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {path.stat().st_size} of {expected} pushes arrived")
        time.sleep(0.01)


def bench_push(messages: int, concurrency: int, work: Path) -> tuple[float, float]:
    """(messages/s through the emulator, requests/s of direct POSTs) with the same concurrency."""
    sink_py = work / "sink.py"
    sink_py.write_text(SINK)
    topology = work / "topology.toml"
    topology.write_text(
        f"""
project = "bench-project"
topics = ["bench"]
[pubsub]
port = 0
[storage]
enabled = false
[functions.sink]
source = "{sink_py}"
port = 0
workers = "cpu"
threads = {concurrency}
env = {{ SINK_FILE = "{work / 'pushed'}" }}
"""
    )
    cloud = LocalCloud.load(topology, work / "run", environ=_clean_env()).up()
    try:
        host = cloud.env()["PUBSUB_EMULATOR_HOST"]
        url = cloud.function_url("sink")
        publisher, subscriber = publisher_client(host), subscriber_client(host)
        topic = "projects/bench-project/topics/bench"
        subscriber.create_subscription(
            request={
                "name": "projects/bench-project/subscriptions/bench-push",
                "topic": topic,
                "push_config": {"push_endpoint": url, "attributes": {"x-localcloud-max-concurrency": str(concurrency)}},
            }
        )
        # Warm up both paths (connections, worker imports) before timing.
        publisher.publish(topic, b"warm").result()
        _wait_count(work / "pushed", 1)

        began = time.perf_counter()
        futures = [publisher.publish(topic, json.dumps({"window": i}).encode(), job="bench") for i in range(messages)]
        for future in futures:
            future.result()
        _wait_count(work / "pushed", 1 + messages)
        through_emulator = messages / (time.perf_counter() - began)

        envelope = json.dumps(
            {"message": {"data": "eyJ3aW5kb3ciOiAxfQ==", "attributes": {"job": "bench"}, "messageId": "1",
                         "publishTime": "2024-01-01T00:00:00Z"}, "subscription": "projects/bench-project/subscriptions/x"}
        ).encode()
        http = urllib3.PoolManager(maxsize=concurrency)

        def post(_: int) -> None:
            response = http.request("POST", url, body=envelope, headers={"Content-Type": "application/json"})
            assert response.status == 204, response.status

        began = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, range(messages)))
        direct = messages / (time.perf_counter() - began)
        return through_emulator, direct
    finally:
        cloud.down()


def bench_startup(work: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Wall time of `python -m localcloud up` with the default topology: cold, then already running."""
    cold, warm = [], []
    for index in range(rounds):
        env = _clean_env()
        for name in ("PUBSUB", "STORAGE", "FANOUT", "MEDIAN", "MOSAIC"):
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
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as tmp:
        work = Path(tmp)
        for concurrency in sorted({cpus, 8}):
            (work / f"c{concurrency}").mkdir()
            emulated, direct = bench_push(args.messages, concurrency, work / f"c{concurrency}")
            print(
                f"push delivery, concurrency {concurrency:>2}: {emulated:7.0f} msg/s through the emulator "
                f"(publish -> push -> 204), {direct:7.0f} req/s direct POSTs; ratio {emulated / direct:.2f}"
            )
        cold, warm = bench_startup(work, args.rounds)
        print(
            f"`python -m localcloud up` (default topology, 3 function servers): cold median {sorted(cold)[len(cold) // 2]:.2f} s "
            f"(runs {', '.join(f'{t:.2f}' for t in cold)}); already running {sorted(warm)[len(warm) // 2]:.2f} s"
        )


if __name__ == "__main__":
    main()
