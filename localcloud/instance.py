"""One instance of a function, as Cloud Run runs a container: a functions-framework server process.

The front end (localcloud/frontend.py) starts each instance with the functions-framework CLI, as a
user would run it::

    functions-framework --source SRC --target T --signature-type S --host 127.0.0.1 --port P

which loads the function's code and serves it with gunicorn. gunicorn's settings come from the
variables functions-framework reads: ``WORKERS=1`` and ``THREADS`` = the function's concurrency
(1: gunicorn's sync worker, one request per connection; more: its gthread worker, with
keep-alive). No gunicorn timeout (``CLOUD_RUN_TIMEOUT_SECONDS`` is not set): the front end
enforces the request timeout.

The front end binds the listening socket itself (127.0.0.1, a free port) and hands it over by
systemd socket activation (``LISTEN_FDS``/``LISTEN_PID``, fd 3), which gunicorn supports: no other
process can take the port while the code loads, connections wait in its backlog meanwhile, and
once the instance is gone they are refused at once. The instance is ready when it answers
``GET /robots.txt`` (functions-framework's own 404, which never calls the function).

An instance is a process group of its own: the functions-framework process (gunicorn's arbiter,
which loaded the code) and its one worker, a fork of it, which runs the requests; ``pid`` is the
worker's. The death of either (a crash, ``kill -9``, a timeout) loses the instance: the whole
group is killed (gunicorn's arbiter would fork a new worker) and the front end starts a fresh
instance, a cold start, as Cloud Run replaces a lost container.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
STARTING, READY, DEAD = "starting", "ready", "dead"
# Sent once the process listens; any answer means the worker serves.
_PROBE = b"GET /robots.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: localcloud-probe\r\nConnection: close\r\n\r\n"


def cli() -> list[str]:
    """The functions-framework command of this Python environment."""
    script = Path(sys.executable).with_name("functions-framework")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "functions_framework"]


def _started(pid: int) -> int:
    """Start time of a process (clock ticks since boot), 0 if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: scan for the parent pid
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
        return found


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


class Instance:
    """One instance: its processes, state, requests in flight and kept-alive connections to it."""

    def __init__(self, slot: int, source: str, target: str, signature_type: str, concurrency: int) -> None:
        self.slot = slot
        self.state = STARTING
        self.in_flight = 0
        self.served = 0
        self.idle: list = []  # the front end's kept-alive connections (frontend._Upstream)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        # The shell puts the socket on fd 3 and execs the CLI: same pid, so LISTEN_PID=$$ holds.
        script = 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"' + ("" if fd == 3 else f" 3<&{fd} {fd}<&-")
        argv = cli() + ["--source", source, "--target", target, "--signature-type", signature_type,
                        "--host", HOST, "--port", str(self.port)]
        env = {**os.environ, "WORKERS": "1", "THREADS": str(concurrency)}
        try:
            self.process = subprocess.Popen(["/bin/sh", "-c", script, "sh", *argv], env=env, pass_fds=(fd,),
                                            stdin=subprocess.DEVNULL, process_group=0)
        finally:
            listener.close()  # only the instance keeps it
        self.server_pid = self.process.pid  # also the process group's id
        self.worker_pid: int | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self._server_fd = os.pidfd_open(self.server_pid)
        self._worker_fd: int | None = None

    @property
    def pid(self) -> int:
        """The process serving requests: gunicorn's worker once ready, the functions-framework process before."""
        return self.worker_pid or self.server_pid

    def to_json(self) -> dict:
        return {
            "pid": self.pid, "server_pid": self.server_pid, "slot": self.slot, "port": self.port, "state": self.state,
            "in_flight": self.in_flight, "served": self.served, "started_at": self.started_at, "ready_at": self.ready_at,
        }

    def wait_ready(self) -> bool:
        """Block until the instance answers a request (True) or dies first (False); then know its worker."""
        try:
            with socket.create_connection((HOST, self.port), timeout=5) as probe:
                probe.sendall(_PROBE)
                probe.settimeout(None)
                readable, _, _ = select.select([probe, self._server_fd], [], [])
                answered = probe in readable and probe.recv(64).startswith(b"HTTP/")
        except OSError:
            answered = False  # refused or reset: the process is gone
        if answered:
            workers = sorted(_children(self.server_pid), key=_started)
            if workers:
                self.worker_pid = workers[-1]  # forked last: anything the code started at import came before
                self._worker_fd = _pidfd(self.worker_pid)
        return answered

    def wait_exit(self) -> None:
        """Once ready, block until the functions-framework process or its worker ends."""
        if self._worker_fd is not None:  # None: the worker has ended already
            select.select([self._server_fd, self._worker_fd], [], [])

    def send_signal(self, sig: int) -> None:
        """Signal the whole instance (its process group), if it has not been reaped yet."""
        if self.process.returncode is None:
            try:
                os.killpg(self.server_pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def reap(self) -> int:
        """Wait for the functions-framework process to end, then collect its orphaned workers (the
        front end is their subreaper); return its exit status (negative: the signal)."""
        code = self.process.wait()
        try:
            os.killpg(self.server_pid, signal.SIGKILL)  # what is left of the group, if anything
        except OSError:
            pass
        while True:
            try:
                os.waitpid(-self.server_pid, 0)
            except ChildProcessError:
                break
        for fd in (self._server_fd, self._worker_fd):
            if fd is not None:
                os.close(fd)
        self._server_fd = self._worker_fd = None
        return code
