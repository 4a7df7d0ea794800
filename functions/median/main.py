"""median (Pub/Sub push): one window message in, one tile out.

Accepts both forms a deployment delivers: a raw Pub/Sub push envelope (a push subscription
with a dead-letter policy) and a messagePublished CloudEvent (Eventarc), binary or structured.
A 2xx acknowledges; a 5xx makes Pub/Sub redeliver, up to the dead-letter topic.
"""

import flask
import functions_framework

from temporal_median.base.errors import MalformedMessage, error_body, policy
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import get_settings
from temporal_median.functions.median import handle_delivery
from temporal_median.job.messages import Delivery

log = get_logger("temporal_median.median")


@functions_framework.http
def median(request: flask.Request):
    settings = get_settings()
    if request.method != "POST":
        return {"error": {"code": "method_not_allowed", "message": "POST a Pub/Sub push"}}, 405
    try:
        delivery = Delivery.from_http(request.headers, request.get_data(cache=False))
    except MalformedMessage as exc:
        # Redelivering a request we cannot decode would fail the same way: acknowledge it.
        log.error(f"undecodable push acknowledged: {exc}", extra={"code": exc.code})
        return {"outcome": "malformed", "error": str(exc)}, 200
    try:
        outcome = handle_delivery(delivery, settings)
    except Exception as exc:  # noqa: BLE001 - logged by the core; the policy table says retry or not
        answer = policy(exc)
        if not answer.retry:
            return {"outcome": "failed", **error_body(exc)}, 200
        return {"outcome": "retry", **error_body(exc)}, answer.status
    return {"outcome": outcome}, 200
