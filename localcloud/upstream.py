"""The front end's side of a request to an instance: a kept-alive HTTP/1.1 connection, one exchange on it.

An instance is gunicorn serving functions-framework on a loopback port; the front end sends each
request whole and reads the answer whole (localcloud/http1.py parses it).
"""

from __future__ import annotations

import socket
import time

from .http1 import header, read_body, read_head
from .instance import HOST

# Headers of one connection, not of the request: never relayed.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "content-length",
}


class Upstream:
    """A keep-alive HTTP/1.1 connection to one instance."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.reused = False  # carried an earlier request
        self.idle_since = 0.0

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Unanswered(ConnectionError):
    """The connection ended (or broke) before any byte of an answer."""


def exchange(conn: Upstream, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
              deadline: float):
    """Send one request and read the answer: (status, reason, headers, body, connection reusable)."""
    conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
    head = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        head += [name, b": ", value, b"\r\n"]
    head.append(b"Content-Length: %d\r\n\r\n" % len(body))
    try:
        conn.sock.sendall(b"".join(head) + body)
        first = conn.reader.peek(1)
    except TimeoutError:
        raise
    except OSError as exc:
        raise Unanswered(f"connection to the instance broke: {exc!r}") from exc
    if not first:
        raise Unanswered("instance closed the connection without answering")
    return read_response(conn, method, deadline)


def read_response(conn: Upstream, method: bytes, deadline: float):
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
    kept = [(k, v) for k, v in headers if k.lower().decode() not in HOP_BY_HOP]
    return status, reason, kept, body, reusable
