"""A function's front end: Cloud Run's capacity and failure model in front of local instances.

One process per function, listening on the function's port. It starts ``max_instances``
instances (localcloud/instance.py: functions-framework's app in its own process, each on a socket
of its own) and routes every request to a ready instance with fewer than ``concurrency``
requests in flight, as Cloud Run does:

- no such instance: the request waits (first come, first served) for up to
  ``pending_timeout`` seconds, then gets **429** "no available instance";
- a request still running after ``timeout`` seconds gets **504** and its instance is killed
  (SIGKILL) and replaced, so the next request finds a fresh one. (Cloud Run answers 504 too but
  lets the instance run on; here it stops, so a timed-out request never keeps a slot busy);
- an instance that dies (crash, ``kill -9``) fails its requests in flight with **503** and a
  fresh instance takes its place: it gets requests once its code is loaded (a cold start).

Besides the function's paths it answers ``GET /__localcloud/instances`` (JSON: pid, state,
requests in flight, requests served of each instance) and ``GET /__localcloud/ready`` (200 once
every instance has started once, 503 before). Run by LocalCloud, not by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .http1 import header, read_body, read_head

log = logging.getLogger("localcloud.frontend")

ADMIN_PREFIX = "/__localcloud/"
# Cloud Run's own answers, in its words.
NO_INSTANCE = "The request was aborted because there was no available instance.\n"
TIMED_OUT = "upstream request timeout\n"
INSTANCE_LOST = (
    "The request failed because either the HTTP response was malformed or connection to the instance had an error.\n"
)
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "content-length",
}
_FORWARD_DROPPED = _HOP_BY_HOP | {"expect"}
STARTING, READY, DEAD = "starting", "ready", "dead"


class Instance:
    """One instance process and the keep-alive connections to it."""

    def __init__(self, slot: int, process: subprocess.Popen, port: int) -> None:
        self.slot = slot
        self.process = process
        self.pid = process.pid
        self.port = port
        self.state = STARTING
        self.in_flight = 0
        self.served = 0
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.idle: list[_Upstream] = []

    def to_json(self) -> dict:
        return {
            "pid": self.pid, "slot": self.slot, "port": self.port, "state": self.state,
            "in_flight": self.in_flight, "served": self.served, "started_at": self.started_at,
            "ready_at": self.ready_at,
        }


class Frontend:
    """Instances, admission (concurrency, pending queue, timeout) and replacement of lost instances."""

    def __init__(self, name: str, instance_argv: list[str], max_instances: int, concurrency: int,
                 timeout: float, pending_timeout: float) -> None:
        self.name = name
        self.instance_argv = instance_argv
        self.max_instances = max_instances
        self.concurrency = concurrency
        self.timeout = timeout
        self.pending_timeout = pending_timeout
        self.cond = threading.Condition()
        self.slots: list[Instance | None] = [None] * max_instances
        self.queue: deque[object] = deque()
        self.started = False  # every slot has had a ready instance once
        self.stopping = False
        self.failed_starts = [0] * max_instances

    # -- instances ----------------------------------------------------------------------------

    def start(self) -> None:
        for slot in range(self.max_instances):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        ready_r, ready_w = os.pipe()
        argv = self.instance_argv + ["--fd", str(listener.fileno()), "--ready-fd", str(ready_w)]
        try:
            process = subprocess.Popen(argv, pass_fds=(listener.fileno(), ready_w), stdin=subprocess.DEVNULL)
        finally:
            # Only the instance keeps the socket: when it dies, connections to it are refused at once.
            port = listener.getsockname()[1]
            listener.close()
            os.close(ready_w)
        instance = Instance(slot, process, port)
        with self.cond:
            self.slots[slot] = instance
        threading.Thread(target=self._watch, args=(instance, ready_r), name=f"watch-{process.pid}", daemon=True).start()

    def _watch(self, instance: Instance, ready_r: int) -> None:
        try:
            loaded = os.read(ready_r, 1) == b"1"  # EOF: the instance died before loading its code
        finally:
            os.close(ready_r)
        if loaded:
            with self.cond:
                if instance.state == STARTING and instance.process.poll() is None:
                    instance.state = READY
                    instance.ready_at = time.time()
                    self.failed_starts[instance.slot] = 0
                    if not self.started and all(s is not None and s.ready_at for s in self.slots):
                        self.started = True
                    self.cond.notify_all()
                    log.info("%s: instance %d ready in %.2f s", self.name, instance.pid,
                             instance.ready_at - instance.started_at)
        code = instance.process.wait()
        with self.cond:
            instance.state = DEAD
            idle, instance.idle = instance.idle, []
            self.cond.notify_all()
            stopping = self.stopping
        for conn in idle:
            conn.close()
        if stopping or code == -signal.SIGTERM:
            return  # being stopped: `down` signals the whole process group
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        log.warning("%s: instance %d ended (%s); a fresh one replaces it", self.name, instance.pid, how)
        if not loaded:
            if not self.started:
                log.error("%s: an instance exited while starting; giving up", self.name)
                self.stop_instances()
                os._exit(3)
            self.failed_starts[instance.slot] += 1
            time.sleep(min(10.0, 0.5 * 2 ** self.failed_starts[instance.slot]))
            if self.stopping:
                return
        self._spawn(instance.slot)

    def kill(self, instance: Instance, why: str) -> None:
        log.warning("%s: killing instance %d: %s", self.name, instance.pid, why)
        with self.cond:
            instance.state = DEAD  # route nothing more to it; its watcher starts the replacement
        try:
            os.kill(instance.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_instances(self) -> None:
        with self.cond:
            self.stopping = True
            instances = [s for s in self.slots if s is not None]
        for instance in instances:
            if instance.process.poll() is None:
                instance.process.terminate()
        deadline = time.monotonic() + 3
        for instance in instances:
            try:
                instance.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                instance.process.kill()

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

    def release(self, instance: Instance, conn: "_Upstream | None", served: bool = True) -> None:
        with self.cond:
            instance.in_flight -= 1
            instance.served += served
            if conn is not None:
                if instance.state == DEAD:
                    conn.close()
                else:
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
                return _plain(429, b"Too Many Requests", NO_INSTANCE)
            conn = self._connection(instance)
            if conn is not None:
                break
            self.release(instance, None, served=False)
            if not _gone(instance.pid, wait=0.5):  # refused: its listener is closed, so it is exiting
                return _plain(503, b"Service Unavailable", INSTANCE_LOST)
            # The instance died and its watcher has not seen it yet. The request never reached
            # it, so it goes to another instance, as Cloud Run would route it.
            with self.cond:
                instance.state = DEAD
        deadline = time.monotonic() + self.timeout
        try:
            try:
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
                head = [method, b" ", target, b" HTTP/1.1\r\n"]
                for name, value in headers:
                    head += [name, b": ", value, b"\r\n"]
                head.append(b"Content-Length: %d\r\n\r\n" % len(body))
                conn.sock.sendall(b"".join(head) + body)
                status, reason, out_headers, data, reusable = _read_response(conn, method, deadline)
            except TimeoutError:
                conn.close()
                conn = None
                self.kill(instance, f"{method.decode()} {target.decode()} ran past the {self.timeout:g} s timeout")
                return _plain(504, b"Gateway Timeout", TIMED_OUT)
            except (OSError, ValueError) as exc:
                # No retry elsewhere: the request may have run, as on Cloud Run.
                conn.close()
                conn = None
                if _gone(instance.pid):
                    with self.cond:
                        instance.state = DEAD  # route nothing more to it; its watcher replaces it
                log.info("%s: %s %s: 503, instance %d lost (%r)", self.name, method.decode(), target.decode(),
                         instance.pid, exc)
                return _plain(503, b"Service Unavailable", INSTANCE_LOST)
            if not reusable:
                conn.close()
                conn = None
            return status, reason, out_headers, data
        finally:
            self.release(instance, conn)

    def _connection(self, instance: Instance) -> "_Upstream | None":
        """An idle keep-alive connection to the instance that is still open, or a new one; None if refused."""
        while True:
            with self.cond:
                conn = instance.idle.pop() if instance.idle else None
            if conn is None:
                break
            if not select.select([conn.sock], [], [], 0)[0]:
                return conn  # nothing to read on an idle connection: still open
            conn.close()  # closed by the instance (or it died): readable at EOF
        try:
            return _Upstream(instance.port, 5.0)
        except OSError:
            return None


def _gone(pid: int, wait: float = 0.0) -> bool:
    """True when the process has exited (a zombie not yet reaped by its watcher counts), checking
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


def _plain(status: int, reason: bytes, text: str):
    return status, reason, [(b"Content-Type", b"text/plain; charset=utf-8")], text.encode()


class _Upstream:
    """A keep-alive HTTP/1.1 connection to one instance."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _read_response(conn: _Upstream, method: bytes, deadline: float):
    """(status, reason, headers, body, connection reusable) of an instance's answer."""
    head = read_head(conn.reader)
    if head is None:
        raise ConnectionResetError("instance closed the connection without answering")
    start, headers = head
    version, _, rest = start.partition(b" ")
    code, _, reason = rest.partition(b" ")
    status = int(code)
    conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        body: bytes | None = b""
    else:
        body = read_body(conn.reader, headers)
    connection = (header(headers, b"connection") or b"").lower()
    reusable = body is not None and b"close" not in connection and (version == b"HTTP/1.1" or b"keep-alive" in connection)
    if body is None:
        body = conn.reader.read()  # no length: the body runs to the end of the connection
    kept = [(k, v) for k, v in headers if k.lower().decode() not in _HOP_BY_HOP]
    return status, reason, kept, body, reusable


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive on the client side; requests relayed whole to an instance."""

    frontend: Frontend

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        while True:
            try:
                head = read_head(self.rfile)
                if head is None:
                    return
                start, headers = head
                method, target, version = start.split(b" ", 2)
                if (header(headers, b"expect") or b"").lower() == b"100-continue":
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = read_body(self.rfile, headers) or b""
            except (ValueError, OSError):
                self._send(*_plain(400, b"Bad Request", "malformed request\n"), keep_alive=False)
                return
            connection = (header(headers, b"connection") or b"").lower()
            keep_alive = b"close" not in connection and (version == b"HTTP/1.1" or b"keep-alive" in connection)
            if target.startswith(ADMIN_PREFIX.encode()):
                answer = self._admin(target.decode())
            else:
                kept = [(k, v) for k, v in headers if k.lower().decode() not in _FORWARD_DROPPED]
                answer = self.frontend.forward(method, target, kept, body)
            try:
                self._send(*answer, keep_alive=keep_alive, head_only=method == b"HEAD")
            except OSError:
                return  # the client went away (e.g. a push that outlived its ack deadline)
            if not keep_alive:
                return

    def _send(self, status: int, reason: bytes, headers, body: bytes, keep_alive: bool, head_only: bool = False) -> None:
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in headers:
            out += [name, b": ", value, b"\r\n"]
        out.append(b"Content-Length: %d\r\n" % len(body))
        if not keep_alive:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        self.wfile.write(b"".join(out) + (b"" if head_only else body))

    def _admin(self, path: str):
        frontend = self.frontend
        if path.rstrip("/") == ADMIN_PREFIX + "instances":
            status, payload = 200, {"function": frontend.name, "max_instances": frontend.max_instances,
                                    "concurrency": frontend.concurrency, "timeout_seconds": frontend.timeout,
                                    "pending_timeout_seconds": frontend.pending_timeout,
                                    "instances": frontend.snapshot()}
        elif path.rstrip("/") == ADMIN_PREFIX + "ready":
            status, payload = (200 if frontend.started else 503), {"ready": frontend.started}
        else:
            status, payload = 404, {"error": "unknown path"}
        reason = {200: b"OK", 503: b"Service Unavailable", 404: b"Not Found"}[status]
        return status, reason, [(b"Content-Type", b"application/json")], json.dumps(payload).encode()


class _Server(socketserver.TCPServer):
    """One pooled thread per client connection: a client that opens a connection per request
    (Google's emulator pushes that way) reuses threads instead of starting one each time."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pool = ThreadPoolExecutor(max_workers=1024, thread_name_prefix="client")

    def process_request(self, request, client_address) -> None:
        self.pool.submit(self._serve, request, client_address)

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


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

    instance_argv = [sys.executable, "-m", "localcloud.instance", "--source", args.source, "--target", args.target,
                     "--signature-type", args.signature_type]
    frontend = Frontend(args.name, instance_argv, args.max_instances, args.concurrency, args.timeout, args.pending_timeout)
    try:
        server = _Server(("127.0.0.1", args.port), type("Handler", (_Handler,), {"frontend": frontend}))
    except OSError as exc:
        print(f"{args.name}: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2

    def stop(*_: object) -> None:
        frontend.stopping = True
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Instances inherit this environment: add what Cloud Run sets for a function's container.
    os.environ.update({"K_SERVICE": args.name, "K_REVISION": f"{args.name}-00001-loc", "K_CONFIGURATION": args.name,
                       "FUNCTION_TARGET": args.target, "FUNCTION_SIGNATURE_TYPE": args.signature_type})
    frontend.start()
    log.info("%s: listening on 127.0.0.1:%d; %d instance(s) x concurrency %d, timeout %g s, pending %g s",
             args.name, args.port, args.max_instances, args.concurrency, args.timeout, args.pending_timeout)
    server.serve_forever()
    frontend.stop_instances()
    server.server_close()
    logging.shutdown()
    os._exit(0)  # client threads may sit on idle keep-alive connections: do not wait for them


if __name__ == "__main__":
    sys.exit(main())
