"""The front end's HTTP/1.1 server: its clients' connections (keep-alive), the admin paths, plain answers.

Each request is read whole and handed to the Frontend (localcloud/frontend.py), which relays it to
an instance; ``GET /__localcloud/instances`` and ``GET /__localcloud/ready`` it answers itself.
"""

from __future__ import annotations

import json
import socket
import socketserver
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .http1 import header, read_body, read_head
from .upstream import HOP_BY_HOP

if TYPE_CHECKING:
    from .frontend import Frontend

ADMIN_PREFIX = "/__localcloud/"
# A client's headers not relayed to the instance.
FORWARD_DROPPED = HOP_BY_HOP | {"expect"}


def plain(status: int, reason: bytes, text: str):
    """(status, reason, headers, body) of a text/plain answer."""
    return status, reason, [(b"Content-Type", b"text/plain; charset=utf-8")], text.encode()


class Handler(socketserver.StreamRequestHandler):
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
                self._send(*plain(400, b"Bad Request", "malformed request\n"), keep_alive=False)
                return
            connection = (header(headers, b"connection") or b"").lower()
            keep_alive = b"close" not in connection and (version == b"HTTP/1.1" or b"keep-alive" in connection)
            if target.startswith(ADMIN_PREFIX.encode()):
                answer = self._admin(target.decode())
            else:
                kept = [(k, v) for k, v in headers if k.lower().decode() not in FORWARD_DROPPED]
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


class Server(socketserver.TCPServer):
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
