"""Stand-in push endpoint for the local cloud's tests: records every raw Pub/Sub push, then behaves as told.

Each request is appended as one JSON line to $RECORD_DIR/<subscription id>.jsonl before the
handler acts on the message's attributes. The handler counts deliveries of each message id
itself (``attempt`` in the record): Google's emulator sends no ``deliveryAttempt``.
``fail_until_attempt=N`` raises (HTTP 500) while attempt < N; ``always_fail=1`` always raises;
``fail_before=T`` raises while time.time() < T; ``status=S`` answers S instead of 204;
``sleep_first=S`` sleeps S seconds on the first delivery of a message id in this process;
``sleep=S`` sleeps S seconds every time.
"""

import base64
import hashlib
import os
import threading
import time

import functions_framework
from record_lines import append_record  # beside this file, on sys.path (functions-framework puts it there)

_lock = threading.Lock()
_active: dict[str, int] = {}
_attempts: dict[str, int] = {}


@functions_framework.http
def record(request):
    envelope = request.get_json()
    key = envelope["subscription"].rsplit("/", 1)[-1]
    message = envelope["message"]
    attributes = message.get("attributes", {})
    with _lock:
        _active[key] = _active.get(key, 0) + 1
        active = _active[key]
        attempt = _attempts[message["messageId"]] = _attempts.get(message["messageId"], 0) + 1
    try:
        payload = base64.b64decode(message["data"])
        if len(message["data"]) > 65536:  # keep records small: big payloads are checked by digest
            message["data"] = None
        append_record(
            os.environ["RECORD_DIR"],
            key,
            {
                "received_at": time.time(),
                "active": active,
                "attempt": attempt,
                "pid": os.getpid(),
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "envelope": envelope,
            },
        )
        if attributes.get("always_fail"):
            raise RuntimeError("told to fail")
        if attempt < int(attributes.get("fail_until_attempt", 0)):
            raise RuntimeError(f"told to fail attempt {attempt}")
        if time.time() < float(attributes.get("fail_before", 0)):
            raise RuntimeError("told to fail until a moment")
        if attempt == 1 and attributes.get("sleep_first"):
            time.sleep(float(attributes["sleep_first"]))
        if attributes.get("sleep"):
            time.sleep(float(attributes["sleep"]))
        return "", int(attributes.get("status", 204))
    finally:
        with _lock:
            _active[key] -= 1
