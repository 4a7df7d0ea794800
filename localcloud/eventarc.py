"""The local Eventarc: raw Pub/Sub push envelopes in, the CloudEvents Eventarc delivers out.

Eventarc realises a trigger as a Pub/Sub push subscription of its own, whose endpoint is
Eventarc; Eventarc turns each pushed message into a CloudEvent, POSTs it to the destination and
passes the destination's answer back, so a failure is retried by Pub/Sub with the
subscription's backoff. This adapter is that endpoint, for every trigger of the local cloud and
for both Pub/Sub emulators alike: each only needs to do a plain push (raw envelope). A trigger's
settings travel in its push endpoint's query string (see ``endpoint_url``):

``POST /storage?target=URL&bucket=B&type=google.cloud.storage.object.v1.finalized``
    A Cloud Storage trigger, fed by the notifications topic fake-gcs-server publishes to: a
    binary CloudEvent of that type (source ``//storage.googleapis.com/projects/_/buckets/B``,
    subject ``objects/NAME``, data the object resource). A notification of another bucket or
    event type is acknowledged (204) and not delivered, as Eventarc's filter would do: Google's
    emulator stores a subscription filter but does not apply it.
``POST /pubsub?target=URL&topic=projects/P/topics/T``
    A Pub/Sub trigger: a binary ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent.

Answers: the destination's status (any 2xx becomes 200, an acknowledgement for every emulator;
Google's does not count 202 as one), 502 when the destination cannot be reached or does not
answer within ``timeout`` seconds (default 600), 400 for a body that is not a push envelope.
Run: ``python -m localcloud.eventarc --port N``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3

from .push_formats import (
    OBJECT_FINALIZED,
    STORAGE_EVENT_TYPES,
    message_published_event,
    storage_event,
)

log = logging.getLogger("localcloud.eventarc")

STORAGE, PUBSUB = "storage", "pubsub"
DEFAULT_TIMEOUT = 600.0


def endpoint_url(base: str, kind: str, target: str, **settings: str | float) -> str:
    """The push endpoint of one trigger: ``base`` is the adapter's http://127.0.0.1:PORT.

    ``kind`` is ``storage`` (settings: bucket, type) or ``pubsub`` (settings: topic); ``timeout``
    (seconds) bounds the POST to ``target``.
    """
    if kind not in (STORAGE, PUBSUB):
        raise ValueError(f"unknown trigger kind {kind!r}")
    query = {"target": target, **{k: str(v) for k, v in settings.items() if v not in (None, "")}}
    return f"{base.rstrip('/')}/{kind}?{urlencode(query)}"


class _BadRequest(Exception):
    pass


class Adapter:
    """Translation and delivery, separate from the HTTP server so it can be tested alone."""

    def __init__(self, pool_size: int = 64) -> None:
        self.http = urllib3.PoolManager(maxsize=pool_size, block=False, retries=False)

    def handle(self, path: str, body: bytes) -> tuple[int, str]:
        """Return (status, text) for one push of a raw envelope to ``path`` (with its query)."""
        parts = urlsplit(path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        kind = parts.path.strip("/")
        target = params.get("target", "")
        try:
            if kind not in (STORAGE, PUBSUB) or not target:
                raise _BadRequest(f"unknown trigger path {parts.path!r} or no target")
            try:
                envelope = json.loads(body)
                message = envelope["message"]
                subscription = envelope["subscription"]
                message_id = message.get("messageId") or message["message_id"]
                publish_time = message.get("publishTime") or message.get("publish_time") or ""
                data = base64.b64decode(message.get("data") or "")
            except (ValueError, KeyError, TypeError) as exc:
                raise _BadRequest(f"not a Pub/Sub push envelope: {exc!r}") from None
            if kind == STORAGE:
                attributes = message.get("attributes") or {}
                wanted_type = params.get("type", OBJECT_FINALIZED)
                event_type = STORAGE_EVENT_TYPES.get(attributes.get("eventType", ""), "")
                if attributes.get("bucketId") != params.get("bucket") or event_type != wanted_type:
                    log.debug("message %s: %s of bucket %s is not for this trigger; acknowledged",
                              message_id, attributes.get("eventType"), attributes.get("bucketId"))
                    return 204, ""
                try:
                    headers, payload = storage_event(data, message_id, publish_time, event_type)
                except ValueError as exc:
                    raise _BadRequest(str(exc)) from None
            else:
                topic = params.get("topic") or ""
                headers, payload = message_published_event(message, subscription, topic)
        except _BadRequest as exc:
            log.error("%s: %s", parts.path, exc)
            return 400, str(exc)
        timeout = float(params.get("timeout") or DEFAULT_TIMEOUT)
        try:
            response = self.http.request(
                "POST", target, body=payload, headers=headers, timeout=urllib3.Timeout(total=timeout), redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            log.info("message %s: %s did not answer: %s", message_id, target, exc)
            return 502, f"destination {target} did not answer: {exc}"
        status = response.status
        log.log(logging.DEBUG if 200 <= status < 300 else logging.INFO,
                "message %s -> %s %s: HTTP %d", message_id, headers.get("ce-type"), target, status)
        return (200 if 200 <= status < 300 else status), ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    adapter: Adapter

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, text = self.adapter.handle(self.path, body)
        self._answer(status, text)

    def do_GET(self) -> None:
        self._answer(200, "local Eventarc adapter\n")

    def _answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass  # one line per delivery is logged by the adapter itself


class EventarcServer:
    """The adapter's HTTP server: ``EventarcServer(port=0).start()`` serves in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"adapter": Adapter()})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "EventarcServer":
        self._thread = threading.Thread(target=self.server.serve_forever, name="eventarc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "EventarcServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.eventarc", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8684)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        server = EventarcServer(args.host, args.port)
    except OSError as exc:
        print(f"Eventarc adapter: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.server.shutdown).start())
    log.info("Eventarc adapter listening on %s", server.url)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
