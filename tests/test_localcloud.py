"""Starting and stopping the local cloud: idempotent up, exact down, clear errors, the default topology."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from handlers.support import PUSH_RECORDER, clean_environ, write_topology

from localcloud import LocalCloud, LocalCloudError, Topology, TopologyError, publisher_client
from localcloud.pubsub_emulator import PubSubEmulator

REPO = Path(__file__).resolve().parent.parent


def _our_processes(run_dir: Path) -> list[int]:
    """Every live process on the machine started for this run directory (by its env marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"LOCALCLOUD_RUN_DIR={run_dir}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _topology(tmp_path: Path, pubsub_port: int = 0, storage: bool = True, function: bool = True) -> Path:
    text = f"""
project = "test-project"
buckets = ["lc-bucket"]
topics = ["jobs"]
[pubsub]
port = {pubsub_port}
[storage]
enabled = {str(storage).lower()}
port = 0
"""
    if function:
        text += f"""
[functions.recorder]
source = "{PUSH_RECORDER}"
target = "record"
port = 0
workers = 2
threads = 2
env = {{ RECORD_DIR = "{tmp_path}" }}
[subscriptions.jobs-push]
topic = "jobs"
push_function = "recorder"
"""
    return write_topology(tmp_path / "topology.toml", text)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localcloud", *args], cwd=REPO, env=env or clean_environ(),
        capture_output=True, text=True, timeout=120,
    )


def test_up_twice_then_down_leaves_none_of_our_processes(tmp_path):
    topology, run_dir = _topology(tmp_path), tmp_path / "run"
    first = _cli("up", "--topology", str(topology), "--run-dir", str(run_dir))
    assert first.returncode == 0, first.stderr
    # The CLI has exited: the detached parts must still serve.
    status = _cli("status", "--topology", str(topology), "--run-dir", str(run_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    started = _our_processes(run_dir)
    assert len(started) >= 4  # emulator, fake-gcs, gunicorn master + 2 workers

    began = time.monotonic()
    second = _cli("up", "--topology", str(topology), "--run-dir", str(run_dir))
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    assert time.monotonic() - began < 10
    assert sorted(_our_processes(run_dir)) == sorted(started)  # nothing new started

    cloud = LocalCloud.load(topology, run_dir, environ=clean_environ())
    env = cloud.env()
    assert env["PUBSUB_EMULATOR_HOST"].startswith("127.0.0.1:")
    assert env["CPL_GS_ENDPOINT"] == env["STORAGE_EMULATOR_HOST"] + "/"
    topics = [t.name for t in publisher_client(env["PUBSUB_EMULATOR_HOST"]).list_topics(project="projects/test-project")]
    assert topics == ["projects/test-project/topics/gcs-notifications", "projects/test-project/topics/jobs"]

    down = _cli("down", "--topology", str(topology), "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert _our_processes(run_dir) == []
    assert _cli("status", "--topology", str(topology), "--run-dir", str(run_dir)).returncode == 3
    assert "nothing was running" in _cli("down", "--topology", str(topology), "--run-dir", str(run_dir)).stdout


def test_taken_port_is_a_clear_error_naming_port_and_part(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        topology, run_dir = _topology(tmp_path, pubsub_port=port), tmp_path / "run"
        with pytest.raises(LocalCloudError, match=rf"port {port} .*pubsub.* already in use"):
            LocalCloud.load(topology, run_dir, environ=clean_environ()).up()
        assert _our_processes(run_dir) == []

        result = _cli("up", "--topology", str(topology), "--run-dir", str(run_dir))
        assert result.returncode == 2
        assert f"port {port}" in result.stderr and "LOCALCLOUD_PUBSUB_PORT" in result.stderr
        assert _our_processes(run_dir) == []


def test_port_override_from_the_environment(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {**clean_environ(), "LOCALCLOUD_PUBSUB_PORT": str(port)}
    cloud = LocalCloud.load(_topology(tmp_path, storage=False, function=False), tmp_path / "run", environ=environ)
    with cloud:
        assert cloud.env()["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{port}"
        assert [p.part for p in cloud.status()] == ["pubsub"]


def test_running_emulator_named_by_pubsub_emulator_host_is_used(tmp_path):
    with PubSubEmulator(port=0) as external:
        environ = {**clean_environ(), "PUBSUB_EMULATOR_HOST": external.address}
        cloud = LocalCloud.load(_topology(tmp_path), tmp_path / "run", environ=environ).up()
        try:
            parts = {p.part: p for p in cloud.status()}
            assert "pubsub" not in parts and parts["pubsub (external)"].running
            assert cloud.env()["PUBSUB_EMULATOR_HOST"] == external.address
            assert "projects/test-project/topics/jobs" in external.broker.topics
            assert "projects/test-project/subscriptions/jobs-push" in external.broker.subscriptions
        finally:
            cloud.down()
        assert not _our_processes(tmp_path / "run")
        assert external.broker.topics  # down never touches an emulator it did not start


def test_function_that_cannot_start_is_reported_with_its_log(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('no module named imaginary')\n")
    topology = write_topology(
        tmp_path / "topology.toml",
        f"""
[pubsub]
port = 0
[storage]
enabled = false
[functions.broken]
source = "{broken}"
port = 0
""",
    )
    with pytest.raises(LocalCloudError, match=r"(?s)function:broken exited while starting.*imaginary"):
        LocalCloud.load(topology, tmp_path / "run", environ=clean_environ()).up()
    assert _our_processes(tmp_path / "run") == []  # the emulator it had started is stopped again


def test_default_topology_declares_the_pipeline():
    topology = Topology.load(environ={})
    cpus = os.cpu_count()
    assert set(topology.buckets) == {"tm-work", "tm-results"}
    assert {"windows", "windows-dead-letter", "gcs-notifications"} <= set(topology.topics)
    subs = {s.name: s for s in topology.subscriptions}
    median = subs["windows-median"]
    assert (median.push_function, median.format, median.ack_deadline_seconds) == ("median", "pubsub", 600)
    assert (median.dead_letter_topic, median.max_delivery_attempts, median.max_concurrency) == ("windows-dead-letter", 5, cpus)
    assert not subs["windows-dead-letter-sub"].is_push
    trigger = subs["eventarc-mosaic"]
    assert trigger.format == "storage-finalized" and trigger.push_function == "mosaic"
    assert 'attributes.bucketId = "tm-work"' in trigger.filter
    worker = topology.function("median")
    assert (worker.workers, worker.threads) == (cpus, 1)
    assert all(f.source.is_file() for f in topology.functions)
    assert topology.function_env["TM_ALLOW_LOCAL_PATHS"] == "true"


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("[pubsub]\nprot = 1\n", r"unknown keys \['prot'\]"),
        ("topics = ['jobs']\n[subscriptions.jobs-sub]\ntopic = 'nope'\n", "undeclared topic 'nope'"),
        ("[subscriptions.jobs-sub]\ntopic = 'x'\nack_deadline_seconds = 5\n", r"ack_deadline_seconds must be within 10"),
        ("[functions.f]\nsource = 'a.py'\nsignature_type = 'event'\n", "signature_type must be one of"),
        ("[pubsub]\nport = 70000\n", "must be a port"),
        ("[triggers.t]\nbucket = 'Bad_Bucket'\nfunction = 'f'\n", "must be a bucket name"),
    ],
)
def test_invalid_topology_names_the_problem(tmp_path, text, complaint):
    path = write_topology(tmp_path / "bad.toml", text)
    with pytest.raises(TopologyError, match=complaint):
        Topology.load(path, environ={})
