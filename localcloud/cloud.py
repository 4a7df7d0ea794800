"""LocalCloud: start, inspect and stop the emulators and function servers of one topology.

``LocalCloud.load().up()`` starts, in the background and on 127.0.0.1: a Pub/Sub emulator
(Google's when installed, else ours, as ``[pubsub] emulator`` / LOCALCLOUD_PUBSUB_EMULATOR
choose; none when PUBSUB_EMULATOR_HOST already points at a running one), fake-gcs-server
publishing its notifications to it, the Eventarc adapter when a trigger needs it, and one front
end per declared function (Cloud Run's capacity model in front of functions-framework
instances); then it creates the topology's topics, buckets and subscriptions through the real
google-cloud clients. Everything it started is recorded in ``<run_dir>/state.json`` and
``<run_dir>/pids/`` so that ``down`` (from any process) stops exactly those processes.
How each part starts is in parts.py, what is created in provision.py, the record in run_state.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from . import google_pubsub, parts, processes, provision
from .clients import get_json, http_answers, http_ok
from .parts import (
    ADMIN_PREFIX,
    BUILTIN,
    EVENTARC,
    EXTERNAL,
    GOOGLE,
    HOST,
    PUBSUB,
    REPO_ROOT,
    STORAGE,
)
from .processes import ProcessRecord
from .run_state import STATE_VERSION, RunState
from .topology import EMULATOR_ENV, Topology

DEFAULT_RUN_DIR = REPO_ROOT / ".localcloud"


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
        self.run_state = RunState(run_dir)

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

    # -- queries ------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when a recorded cloud exists and every process it started is still running."""
        state = self.run_state.read()
        records = RunState.records(state)
        return state is not None and all(processes.is_running(r, self.run_dir) for r in records)

    def status(self) -> list[PartStatus]:
        """The recorded parts and whether each still runs (empty when nothing was started)."""
        state = self.run_state.read()
        if state is None:
            return []
        result = []
        for record in RunState.records(state):
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
        state = self.run_state.read()
        if state is not None:
            return dict(state["env"])
        ports = self._planned_ports(allocate=False)
        return self._env_for(ports.get(PUBSUB, 0), ports.get(STORAGE, 0), self.environ.get("PUBSUB_EMULATOR_HOST"))

    @property
    def emulator(self) -> str:
        """Which Pub/Sub emulator serves this cloud: "google", "builtin" or "external" (one that
        PUBSUB_EMULATOR_HOST named); for a cloud not running, the one ``up`` would start."""
        state = self.run_state.read()
        if state is not None:
            return state.get("pubsub_emulator", BUILTIN)
        if self.environ.get("PUBSUB_EMULATOR_HOST"):
            return EXTERNAL
        return resolve_emulator(self.topology.pubsub_emulator, self.environ)

    def describe_emulator(self) -> str:
        """One line saying which Pub/Sub emulator runs, for people."""
        state = self.run_state.read() or {}
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
        return get_json(url, timeout=5)["instances"]

    def busy_pids(self, name: str) -> list[int]:
        """Pids of a function's instances serving a request right now."""
        return [i["pid"] for i in self.instances(name) if i["in_flight"] > 0 and i["state"] == "ready"]

    def eventarc_url(self) -> str:
        """http://127.0.0.1:PORT of the running Eventarc adapter (see localcloud.eventarc.endpoint_url)."""
        state = self.run_state.read()
        if state is None or EVENTARC not in state["urls"]:
            raise LocalCloudError("no Eventarc adapter runs: the cloud is down or its topology has no trigger")
        return state["urls"][EVENTARC]

    def function_url(self, name: str) -> str:
        """http://127.0.0.1:PORT/ of a declared function's server."""
        self.topology.function(name)
        state = self.run_state.read()
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
        with self.run_state.locked():
            state = self.run_state.read()
            if state is not None:
                if self.is_running():
                    return self
                # Part of a previous cloud died: clear what is left and start afresh.
                self._stop_records(RunState.records(state))
                self.run_state.path.unlink(missing_ok=True)
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
        started: dict[str, ProcessRecord] = {}
        urls: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        base_env = {k: v for k, v in self.environ.items() if not k.startswith("LOCALCLOUD_")}
        log_level = self.environ.get("LOCALCLOUD_LOG_LEVEL", "INFO")
        google = google_pubsub.find(self.environ) if kind == GOOGLE else None
        try:
            if kind != EXTERNAL:
                started[PUBSUB] = parts.spawn_pubsub(kind, google, ports[PUBSUB], topology.default_concurrency, log_level,
                                                     base_env, self.run_dir)
                urls[PUBSUB] = pubsub_host
            # Function servers only need the emulators' addresses, known already: start them now so
            # their (slow) imports overlap the emulators' start-up.
            for function in topology.functions:
                part = f"function:{function.name}"
                if not function.source.is_file():
                    raise LocalCloudError(f"function {function.name}: source {function.source} does not exist")
                started[part] = parts.spawn_function(function, ports[part], {**base_env, **env}, topology.function_env,
                                                     self.run_dir)
                urls[part] = f"http://{HOST}:{ports[part]}/"
            if EVENTARC in ports:
                started[EVENTARC] = parts.spawn_eventarc(ports[EVENTARC], log_level, base_env, self.run_dir)
                urls[EVENTARC] = f"http://{HOST}:{ports[EVENTARC]}"
            if kind != EXTERNAL:
                self._wait(started[PUBSUB], lambda: processes.answers_tcp(HOST, ports[PUBSUB]), deadline)
            provision.create_topics(pubsub_host, topology, deadline)
            if topology.storage_enabled:
                started[STORAGE] = parts.spawn_storage(ports[STORAGE], topology.project, topology.notifications_topic,
                                                      {**base_env, **env}, self.run_dir)
                urls[STORAGE] = env["STORAGE_EMULATOR_HOST"]
                self._wait(
                    started[STORAGE], lambda: http_answers(f"{urls[STORAGE]}/storage/v1/b?project={topology.project}"), deadline
                )
                provision.create_buckets(urls[STORAGE], topology)
            if EVENTARC in started:
                self._wait(started[EVENTARC], lambda: http_ok(urls[EVENTARC] + "/"), deadline)
            for function in topology.functions:
                part = f"function:{function.name}"
                # The front end answers 200 here once each of its instances has loaded the function.
                ready = urls[part].rstrip("/") + ADMIN_PREFIX + "ready"
                self._wait(started[part], lambda url=ready: http_ok(url), deadline)
            provision.create_subscriptions(pubsub_host, topology, urls)
        except BaseException:
            self._stop_records(list(started.values()))
            raise
        self.run_state.write(
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

    def _wait(self, record: ProcessRecord, ready, deadline: float) -> None:
        while not ready():
            if processes.exited(record):
                raise LocalCloudError(f"{record.part} exited while starting; end of {record.log}:\n{_log_tail(record.log)}")
            if time.monotonic() > deadline:
                raise LocalCloudError(f"{record.part} did not answer in time; end of {record.log}:\n{_log_tail(record.log)}")
            time.sleep(0.05)

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
                processes.kill_marked(record.part, self.run_dir)  # instances a killed front end left
        return stopped

    def down(self) -> list[str]:
        """Stop every process this run directory's cloud started; return the parts that were running."""
        with self.run_state.locked():
            state = self.run_state.read()
            stopped = self._stop_records(RunState.records(state))
            self.run_state.clear()
        return stopped

    def __enter__(self) -> "LocalCloud":
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
