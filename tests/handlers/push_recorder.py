"""Stand-in push endpoint for the local cloud's tests: records every raw Pub/Sub push, then behaves as told.

Each request is appended as one JSON line to $RECORD_DIR/<subscription id>.jsonl before the
handler acts on the message's attributes:
``fail_until_attempt=N`` raises (HTTP 500) while deliveryAttempt < N; ``always_fail=1`` always raises;
``sleep_first=S`` sleeps S seconds on the first delivery of a message id in this process;
``sleep=S`` sleeps S seconds every time.
"""

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import functions_framework

_lock = threading.Lock()
_active: dict[str, int] = {}
_seen: set[str] = set()


def _append(key: str, record: dict) -> None:
    path = Path(os.environ["RECORD_DIR"]) / f"{key}.jsonl"
    line = (json.dumps(record) + "\n").encode()
    # One O_APPEND write per record: lines from concurrent threads and workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@functions_framework.http
def record(request):
    envelope = request.get_json()
    key = envelope["subscription"].rsplit("/", 1)[-1]
    message = envelope["message"]
    attributes = message.get("attributes", {})
    with _lock:
        _active[key] = _active.get(key, 0) + 1
        active = _active[key]
        first = message["messageId"] not in _seen
        _seen.add(message["messageId"])
    try:
        payload = base64.b64decode(message["data"])
        if len(message["data"]) > 65536:  # keep records small: big payloads are checked by digest
            message["data"] = None
        _append(
            key,
            {
                "received_at": time.time(),
                "active": active,
                "pid": os.getpid(),
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "envelope": envelope,
            },
        )
        if attributes.get("always_fail"):
            raise RuntimeError("told to fail")
        if envelope.get("deliveryAttempt", 1) < int(attributes.get("fail_until_attempt", 0)):
            raise RuntimeError(f"told to fail attempt {envelope.get('deliveryAttempt')}")
        if first and attributes.get("sleep_first"):
            time.sleep(float(attributes["sleep_first"]))
        if attributes.get("sleep"):
            time.sleep(float(attributes["sleep"]))
        return "", 204
    finally:
        with _lock:
            _active[key] -= 1
