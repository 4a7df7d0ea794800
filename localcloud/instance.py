"""One instance of a function, as Cloud Run runs a container: functions-framework's app, one process.

Started by the function's front end (localcloud/frontend.py), never by hand: it serves on a
listening socket the front end opened (``--fd``) and writes one byte to ``--ready-fd`` once the
function's code is loaded, which is when the front end starts routing requests to it. The front
end admits at most ``concurrency`` requests at once to one instance; this server runs each
connection in a thread and calls the WSGI app (functions-framework's Flask app) itself: a lean
HTTP/1.1 server, as the front end is, since every push crosses both. Killing this process (a
crash, a timeout, ``kill -9``) is losing the instance: the front end answers its requests with
503 or 504 and starts a fresh one.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import socketserver
import sys
import traceback
from urllib.parse import unquote_to_bytes

from .http1 import header, read_body, read_head

# Headers the server sets itself on a response.
_DROPPED = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}


class _Handler(socketserver.StreamRequestHandler):
    app = None  # the WSGI application, set on a subclass
    port = 0

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
                return
            connection = (header(headers, b"connection") or b"").lower()
            keep_alive = b"close" not in connection and (version == b"HTTP/1.1" or b"keep-alive" in connection)
            status, out_headers, data = self._call(method, target, version, headers, body)
            out = [b"HTTP/1.1 ", status, b"\r\n"]
            for name, value in out_headers:
                if name.lower() not in _DROPPED:
                    out += [name, b": ", value, b"\r\n"]
            out.append(b"Content-Length: %d\r\n" % len(data))
            if not keep_alive:
                out.append(b"Connection: close\r\n")
            out.append(b"\r\n")
            try:
                self.wfile.write(b"".join(out) + (b"" if method == b"HEAD" else data))
            except OSError:
                return
            if not keep_alive:
                return

    def _call(self, method: bytes, target: bytes, version: bytes, headers, body: bytes):
        """Run the WSGI app on one request: (status line, headers, body)."""
        path, _, query = target.partition(b"?")
        environ = {
            "REQUEST_METHOD": method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": version.decode("latin-1"),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue
            if key == "CONTENT_TYPE":
                environ[key] = value.decode("latin-1")
                continue
            key = "HTTP_" + key
            text = value.decode("latin-1")
            environ[key] = environ[key] + "," + text if key in environ else text
        answer: dict = {}
        chunks: list[bytes] = []

        def start_response(status, response_headers, exc_info=None):
            if exc_info and answer.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            answer["status"], answer["headers"] = status, response_headers
            return chunks.append

        try:
            result = self.app(environ, start_response)
            try:
                for chunk in result:
                    if chunk:
                        chunks.append(chunk)
            finally:
                if hasattr(result, "close"):
                    result.close()
            answer["sent"] = True
        except Exception:
            traceback.print_exc()
            return b"500 Internal Server Error", [(b"Content-Type", b"text/plain")], b"Internal Server Error\n"
        out_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer["headers"]]
        return answer["status"].encode("latin-1"), out_headers, b"".join(chunks)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.instance", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="listening socket inherited from the front end")
    parser.add_argument("--ready-fd", type=int, required=True, help="pipe to write one byte to once loaded")
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--signature-type", default="http")
    args = parser.parse_args(argv)

    import functions_framework

    app = functions_framework.create_app(args.target, args.source, args.signature_type)
    listener = socket.socket(fileno=args.fd)
    handler = type("Handler", (_Handler,), {"app": staticmethod(app), "port": listener.getsockname()[1]})
    server = _Server(listener.getsockname(), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.write(args.ready_fd, b"1")
    os.close(args.ready_fd)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
