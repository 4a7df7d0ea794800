"""A function's front end: Cloud Run's capacity and failure model in front of local instances.

One process per function, listening on the function's port. It starts ``max_instances``
instances (localcloud/instance.py: each a functions-framework server, gunicorn with
``concurrency`` threads, on a loopback port of its own) and relays every request, whole, to a
ready instance with fewer than ``concurrency`` requests in flight, over kept-alive connections
where the instance keeps them, as Cloud Run does:

- no such instance: the request waits (first come, first served) for up to
  ``pending_timeout`` seconds, then gets **429** "no available instance";
- a request still running after ``timeout`` seconds gets **504** and its instance is killed
  (SIGKILL) and replaced, so the next request finds a fresh one. (Cloud Run answers 504 too but
  lets the instance run on; here it stops, so a timed-out request never keeps a slot busy);
- an instance that dies (crash, ``kill -9`` of its worker or of its functions-framework process)
  fails its requests in flight with **503** and a fresh instance takes its place: it gets
  requests once it answers (a cold start).

The front end parses HTTP/1.1 itself (localcloud/http1.py: lean, every push crosses it twice);
its server is localcloud/frontend_server.py, its connections to instances localcloud/upstream.py.
Besides the function's paths it answers ``GET /__localcloud/instances`` (JSON: pid of the process
serving requests, state, requests in flight, requests served of each instance) and ``GET /__localcloud/ready`` (200 once
every instance has started once, 503 before). Run by LocalCloud, not by hand.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque

from .frontend_server import Handler, Server, plain
from .instance import DEAD, HOST, READY, STARTING, Instance
from .upstream import Unanswered, Upstream, exchange

log = logging.getLogger("localcloud.frontend")

# Cloud Run's own answers, in its words.
NO_INSTANCE = "The request was aborted because there was no available instance.\n"
TIMED_OUT = "upstream request timeout\n"
INSTANCE_LOST = (
    "The request failed because either the HTTP response was malformed or connection to the instance had an error.\n"
)
# Reuse a kept-alive connection idle for less than this: gunicorn closes them after 2 s.
_REUSE_WITHIN = 1.0


class Frontend:
    """Instances, admission (concurrency, pending queue, timeout) and replacement of lost instances."""

    def __init__(self, name: str, source: str, target: str, signature_type: str, max_instances: int,
                 concurrency: int, timeout: float, pending_timeout: float) -> None:
        self.name = name
        self.function = (source, target, signature_type)
        self.max_instances = max_instances
        self.concurrency = concurrency
        self.timeout = timeout
        self.pending_timeout = pending_timeout
        self.cond = threading.Condition()
        self.slots: list[Instance | None] = [None] * max_instances
        self.queue: deque[object] = deque()
        self.started = False  # every slot has had a ready instance once
        self.stopping = False
        self.threads: list[threading.Thread] = []

    # -- instances ----------------------------------------------------------------------------

    def start(self) -> None:
        for slot in range(self.max_instances):
            thread = threading.Thread(target=self._run_slot, args=(slot,), name=f"slot-{slot}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run_slot(self, slot: int) -> None:
        """One slot's life: start an instance, route to it once it answers, replace it when it is lost."""
        failed_starts = 0
        while True:
            with self.cond:
                if self.stopping:
                    return
                instance = Instance(slot, *self.function, self.concurrency)
                self.slots[slot] = instance
            loaded = instance.wait_ready()
            if loaded:
                with self.cond:
                    if instance.state == STARTING:
                        instance.state = READY
                        instance.ready_at = time.time()
                        if not self.started and all(s is not None and s.ready_at for s in self.slots):
                            self.started = True
                        self.cond.notify_all()
                log.info("%s: instance %d (worker %d) ready in %.2f s", self.name, instance.server_pid, instance.pid,
                         time.time() - instance.started_at)
                instance.wait_exit()
            with self.cond:
                instance.state = DEAD
                idle, instance.idle = instance.idle, []
                self.cond.notify_all()
                stopping = self.stopping
            for conn in idle:
                conn.close()
            if not stopping:
                instance.kill()  # the rest of its process group; stop_instances signals it when stopping
            code = instance.reap()
            if stopping:
                return
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            if loaded:
                failed_starts = 0
                log.warning("%s: instance %d lost (functions-framework process: %s); a fresh one replaces it",
                            self.name, instance.pid, how)
                continue
            log.warning("%s: instance %d ended before answering (%s)", self.name, instance.server_pid, how)
            if not self.started:
                log.error("%s: an instance exited while starting; giving up", self.name)
                self.stop_instances()
                os._exit(3)
            failed_starts += 1
            with self.cond:
                self.cond.wait_for(lambda: self.stopping, timeout=min(10.0, 0.5 * 2 ** failed_starts))

    def kill(self, instance: Instance, why: str) -> None:
        log.warning("%s: killing instance %d: %s", self.name, instance.pid, why)
        with self.cond:
            instance.state = DEAD  # route nothing more to it; its slot's thread starts the replacement
        instance.kill()

    def stop_instances(self, grace: float = 2.0) -> None:
        """SIGTERM to every instance, SIGKILL to those still running after ``grace`` seconds; all reaped."""
        with self.cond:
            self.stopping = True
            instances = [s for s in self.slots if s is not None]
            idle = [conn for instance in instances for conn in instance.idle]
            for instance in instances:
                instance.idle = []
        for conn in idle:
            conn.close()  # gunicorn would keep kept-alive connections open for a while when stopping
        for instance in instances:
            instance.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for instance in instances:
            try:
                instance.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                instance.kill()
        for instance in instances:
            instance.kill()  # workers a stopped functions-framework process may have left behind
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(5)  # each reaps its instance

    def snapshot(self) -> list[dict]:
        with self.cond:
            return [s.to_json() for s in self.slots if s is not None]

    # -- admission ----------------------------------------------------------------------------

    def acquire(self, deadline: float) -> Instance | None:
        """A ready instance with a free slot, waiting first come first served; None after ``deadline``."""
        ticket = object()
        with self.cond:
            self.queue.append(ticket)
            try:
                while True:
                    if self.queue[0] is ticket:
                        best = None
                        for instance in self.slots:
                            if instance is not None and instance.state == READY and instance.in_flight < self.concurrency:
                                if best is None or instance.in_flight < best.in_flight:
                                    best = instance
                        if best is not None:
                            best.in_flight += 1
                            return best
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self.cond.wait(remaining)
            finally:
                self.queue.remove(ticket)
                self.cond.notify_all()

    def release(self, instance: Instance, conn: "Upstream | None", served: bool = True) -> None:
        with self.cond:
            instance.in_flight -= 1
            instance.served += served
            if conn is not None:
                if instance.state == DEAD:
                    conn.close()
                else:
                    conn.reused, conn.idle_since = True, time.monotonic()
                    instance.idle.append(conn)
            self.cond.notify_all()

    # -- forwarding ---------------------------------------------------------------------------

    def forward(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes):
        """(status, reason, headers, body) of one request, with Cloud Run's 429 / 503 / 504."""
        pending_deadline = time.monotonic() + self.pending_timeout
        while True:
            instance = self.acquire(pending_deadline)
            if instance is None:
                log.info("%s: %s %s: 429, no instance free for %.1f s", self.name, method.decode(), target.decode(),
                         self.pending_timeout)
                return plain(429, b"Too Many Requests", NO_INSTANCE)
            conn = self._connection(instance)
            if conn is not None:
                break
            self.release(instance, None, served=False)
            if not _gone(instance.pid, wait=0.5):  # refused: its listener is closed, so it is exiting
                return plain(503, b"Service Unavailable", INSTANCE_LOST)
            # The instance died and its slot's thread has not seen it yet. The request never
            # reached it, so it goes to another instance, as Cloud Run would route it.
            with self.cond:
                instance.state = DEAD
        deadline = time.monotonic() + self.timeout
        try:
            try:
                try:
                    answer = exchange(conn, method, target, headers, body, deadline)
                except Unanswered:
                    if not conn.reused or _gone(instance.pid, wait=0.2):
                        raise
                    # The instance closed a kept-alive connection as it was being reused (gunicorn
                    # keeps one open 2 s): the request never reached it. Again on a new connection.
                    conn.close()
                    conn = Upstream(instance.port, 5.0)
                    answer = exchange(conn, method, target, headers, body, deadline)
            except TimeoutError:
                conn.close()
                conn = None
                self.kill(instance, f"{method.decode()} {target.decode()} ran past the {self.timeout:g} s timeout")
                return plain(504, b"Gateway Timeout", TIMED_OUT)
            except (OSError, ValueError) as exc:
                # No retry elsewhere: the request may have run, as on Cloud Run.
                conn.close()
                conn = None
                if _gone(instance.pid, wait=0.2):
                    with self.cond:
                        instance.state = DEAD  # route nothing more to it; its slot's thread replaces it
                log.info("%s: %s %s: 503, instance %d lost (%r)", self.name, method.decode(), target.decode(),
                         instance.pid, exc)
                return plain(503, b"Service Unavailable", INSTANCE_LOST)
            status, reason, out_headers, data, reusable = answer
            if not reusable:
                conn.close()
                conn = None
            return status, reason, out_headers, data
        finally:
            self.release(instance, conn)

    def _connection(self, instance: Instance) -> "Upstream | None":
        """A kept-alive connection to the instance that is still open and recently used, or a new
        one; None if refused."""
        now = time.monotonic()
        while True:
            with self.cond:
                conn = instance.idle.pop() if instance.idle else None
                # Drop the ones idle too long: gunicorn is about to close them (its keepalive, 2 s).
                while instance.idle and now - instance.idle[0].idle_since > _REUSE_WITHIN:
                    instance.idle.pop(0).close()
            if conn is None:
                break
            if now - conn.idle_since < _REUSE_WITHIN and not select.select([conn.sock], [], [], 0)[0]:
                return conn  # nothing to read on an idle connection: still open
            conn.close()  # closed by the instance (or it died): readable at EOF
        try:
            return Upstream(instance.port, 5.0)
        except OSError:
            return None


def _gone(pid: int, wait: float = 0.0) -> bool:
    """True when the process has exited (a zombie not yet reaped counts), checking
    for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    return True
        except (OSError, IndexError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _become_subreaper() -> None:
    """Adopt the orphans of this process's descendants (PR_SET_CHILD_SUBREAPER): a worker whose
    functions-framework process was killed first is reaped here, not left a zombie."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--signature-type", default="http")
    parser.add_argument("--max-instances", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=540.0)
    parser.add_argument("--pending-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)

    frontend = Frontend(args.name, args.source, args.target, args.signature_type, args.max_instances,
                        args.concurrency, args.timeout, args.pending_timeout)
    try:
        server = Server((HOST, args.port), type("Handler", (Handler,), {"frontend": frontend}))
    except OSError as exc:
        print(f"{args.name}: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return 2

    def stop(*_: object) -> None:
        frontend.stopping = True
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _become_subreaper()
    # Instances inherit this environment: add what Cloud Run sets for a function's container.
    os.environ.update({"K_SERVICE": args.name, "K_REVISION": f"{args.name}-00001-loc", "K_CONFIGURATION": args.name,
                       "FUNCTION_TARGET": args.target, "FUNCTION_SIGNATURE_TYPE": args.signature_type})
    frontend.start()
    log.info("%s: listening on %s:%d; %d instance(s) x concurrency %d, timeout %g s, pending %g s",
             args.name, HOST, args.port, args.max_instances, args.concurrency, args.timeout, args.pending_timeout)
    server.serve_forever()
    frontend.stop_instances()
    server.server_close()
    logging.shutdown()
    os._exit(0)  # client threads may sit on idle keep-alive connections: do not wait for them


if __name__ == "__main__":
    sys.exit(main())
