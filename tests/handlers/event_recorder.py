"""Stand-in CloudEvent function (@cloud_event) for the local cloud's tests: records each event it gets.

Each event is appended as one JSON line to $RECORD_DIR/<key>.jsonl, key = the subscription id of a
messagePublished event or ``storage-<bucket>`` of a storage event. An object whose name contains
``fail-once`` makes the first delivery raise (HTTP 500).
"""

import os
import threading
import time

import functions_framework
from record_lines import append_record  # beside this file, on sys.path (functions-framework puts it there)

_lock = threading.Lock()
_seen: set[str] = set()


@functions_framework.cloud_event
def record_event(event):
    data = event.data
    if event["type"].startswith("google.cloud.storage."):
        key = "storage-" + data["bucket"]
    else:
        key = data["subscription"].rsplit("/", 1)[-1]
    attributes = {name: value for name, value in event.get_attributes().items()}
    record = {"received_at": time.time(), "attributes": attributes, "data": data}
    append_record(os.environ["RECORD_DIR"], key, record)
    with _lock:
        first = event["id"] not in _seen
        _seen.add(event["id"])
    if first and "fail-once" in str(data.get("name", "")):
        raise RuntimeError("told to fail the first delivery")
