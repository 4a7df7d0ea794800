"""Starting and stopping the local cloud: idempotent up, exact down, clear errors, the default topology."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from handlers.support import (
    GOOGLE_MISSING,
    PUSH_RECORDER,
    clean_environ,
    write_topology,
)

from localcloud import (
    LocalCloud,
    LocalCloudError,
    Topology,
    TopologyError,
    publisher_client,
)
from localcloud.cloud import resolve_emulator
from localcloud.pubsub import PubSubEmulator

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


def _topology(
    tmp_path: Path, pubsub_port: int = 0, storage: bool = True, function: bool = True, emulator: str = "builtin"
) -> Path:
    text = f"""
project = "test-project"
buckets = ["lc-bucket"]
topics = ["jobs"]
[pubsub]
port = {pubsub_port}
emulator = "{emulator}"
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
max_instances = 2
concurrency = 2
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
    assert "Pub/Sub emulator: builtin" in first.stdout
    # The CLI has exited: the detached parts must still serve.
    status = _cli("status", "--topology", str(topology), "--run-dir", str(run_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    started = _our_processes(run_dir)
    # emulator, fake-gcs, the function's front end + its 2 instances (functions-framework + its gunicorn worker each)
    assert len(started) == 7

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


@pytest.mark.skipif(bool(GOOGLE_MISSING), reason=f"Google's Pub/Sub emulator is not installed: {GOOGLE_MISSING}")
def test_up_on_googles_emulator_says_so_and_down_stops_gcloud_and_its_java_child(tmp_path):
    topology, run_dir = _topology(tmp_path, emulator="auto"), tmp_path / "run"
    up = _cli("up", "--topology", str(topology), "--run-dir", str(run_dir))
    assert up.returncode == 0, up.stderr
    assert "Pub/Sub emulator: google" in up.stdout
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _our_processes(run_dir)}
    assert any(b"gcloud" in c for c in commands.values()) and any(b"java" in c for c in commands.values())
    env = LocalCloud.load(topology, run_dir, environ=clean_environ()).env()
    topics = [t.name for t in publisher_client(env["PUBSUB_EMULATOR_HOST"]).list_topics(project="projects/test-project")]
    assert "projects/test-project/topics/jobs" in topics

    down = _cli("down", "--topology", str(topology), "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert _our_processes(run_dir) == []  # gcloud, java, front end, instances, fake-gcs


def test_emulator_choice_auto_google_builtin(tmp_path):
    nowhere = {"PATH": str(tmp_path)}  # no gcloud, no java
    assert resolve_emulator("auto", nowhere) == "builtin"
    assert resolve_emulator("builtin", nowhere) == "builtin"
    with pytest.raises(LocalCloudError, match="Google's Pub/Sub emulator was asked for.*gcloud is not on PATH"):
        resolve_emulator("google", nowhere)
    if not GOOGLE_MISSING:
        assert resolve_emulator("auto") == "google"
    topology = _topology(tmp_path, emulator="auto")
    env = {**clean_environ(), "LOCALCLOUD_PUBSUB_EMULATOR": "builtin"}
    assert LocalCloud.load(topology, tmp_path / "run", environ=env).emulator == "builtin"
    with pytest.raises(TopologyError, match="must be one of"):
        LocalCloud.load(topology, tmp_path / "run", environ={**clean_environ(), "LOCALCLOUD_PUBSUB_EMULATOR": "java"})


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


def test_planned_ports_are_outside_the_kernels_range_and_skip_a_listening_one():
    # A port the kernel picks for bind(0) can be handed to a function instance before the part it
    # was planned for binds it (bench_e2e saw "Address already in use"); planned ports avoid that range.
    from localcloud.processes import ephemeral_range, free_ports

    low, high = ephemeral_range()
    first_two = free_ports(2, rng=random.Random(7))
    assert len(set(first_two)) == 2
    assert all(not low <= p <= high and p >= 10000 for p in first_two)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first_two[0]))
        squatter.listen()
        # The same shuffle, with its first pick now taken: the next one instead.
        assert free_ports(1, rng=random.Random(7)) == [first_two[1]]


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
        cloud = LocalCloud.load(_topology(tmp_path, emulator="auto"), tmp_path / "run", environ=environ).up()
        try:
            assert cloud.emulator == "external"
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
emulator = "builtin"
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
    # The dead letter is a safety net, as in terraform/: median itself gives up after TM_MAX_ATTEMPTS.
    assert (median.dead_letter_topic, median.max_delivery_attempts, median.max_concurrency) == ("windows-dead-letter", 100, cpus)
    assert not median.via_eventarc  # a plain push of the raw envelope, on both emulators
    assert not subs["windows-dead-letter-sub"].is_push
    trigger = subs["eventarc-mosaic"]
    assert trigger.format == "storage-finalized" and trigger.push_function == "mosaic" and trigger.via_eventarc
    assert (trigger.bucket, trigger.event_type) == ("tm-work", "google.cloud.storage.object.v1.finalized")
    assert 'attributes.bucketId = "tm-work"' in trigger.filter
    assert topology.pubsub_emulator == "auto"
    worker = topology.function("median")
    assert (worker.max_instances, worker.concurrency, worker.timeout_seconds) == (cpus, 1, 540)
    assert (worker.workers, worker.threads) == (cpus, 1)  # the older names still read
    assert topology.function("mosaic").timeout_seconds == 540
    assert all(f.pending_timeout_seconds == 10 for f in topology.functions)
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
        ("[pubsub]\nemulator = 'java'\n", r"emulator .*must be one of"),
        ("[functions.f]\nsource = 'a.py'\nworkers = 2\nmax_instances = 2\n", "max_instances or its alias workers"),
        ("[functions.f]\nsource = 'a.py'\ntimeout_seconds = 0\n", "timeout_seconds must be within"),
        ("[subscriptions.s-1]\ntopic = 'x'\nformat = 'storage-finalized'\n", "format must be one of"),
    ],
)
def test_invalid_topology_names_the_problem(tmp_path, text, complaint):
    path = write_topology(tmp_path / "bad.toml", text)
    with pytest.raises(TopologyError, match=complaint):
        Topology.load(path, environ={})
