"""Stand-in HTTP function for the capacity tests: sleeps as told, then answers with its pid.

``?sleep=S`` sleeps S seconds; the answer is JSON ``{"pid": ..., "slept": S}``. A POST of a Pub/Sub
push envelope works too: the message attribute ``sleep`` is read the same way.
"""

import os
import time

import functions_framework


@functions_framework.http
def sleeper(request):
    sleep = request.args.get("sleep")
    if sleep is None and request.method == "POST":
        envelope = request.get_json(silent=True) or {}
        sleep = envelope.get("message", {}).get("attributes", {}).get("sleep")
    seconds = float(sleep or 0)
    time.sleep(seconds)
    return {"pid": os.getpid(), "slept": seconds}
