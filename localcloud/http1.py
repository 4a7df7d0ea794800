"""The few pieces of HTTP/1.1 the function front end needs, on buffered socket files: requests
from its clients, answers from its instances (gunicorn, serving functions-framework).

Lean on purpose: every push crosses the front end twice (request in, answer back), so this
parsing is on the hot path (the standard library's http.server and http.client parse headers with
the email package, several times slower). Header names and values stay bytes.
"""

from __future__ import annotations


def read_head(reader) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """The start line and headers of a message; None at a clean end of stream."""
    line = reader.readline(65537)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ValueError("start line too long or cut")
    headers = []
    while True:
        field = reader.readline(65537)
        if field in (b"\r\n", b"\n"):
            return line.rstrip(b"\r\n"), headers
        if not field.endswith(b"\n") or len(headers) > 200:
            raise ValueError("header too long, too many or cut")
        name, sep, value = field.partition(b":")
        if not sep:
            raise ValueError(f"malformed header line {field[:60]!r}")
        headers.append((name.strip(), value.strip()))


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def read_exactly(reader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise ValueError("connection closed in the middle of a body")
    return data


def read_chunked(reader) -> bytes:
    chunks = []
    while True:
        size = int(reader.readline(1024).split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(read_exactly(reader, size))
        reader.readline(3)


def read_body(reader, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The body by Content-Length or chunked; None when the message has neither."""
    encoding = header(headers, b"transfer-encoding")
    if encoding is not None and b"chunked" in encoding.lower():
        return read_chunked(reader)
    length = header(headers, b"content-length")
    if length is not None:
        return read_exactly(reader, int(length))
    return None
