"""median (Pub/Sub push): one window message in, one tile out.

Accepts both forms a deployment delivers: a raw Pub/Sub push envelope (a push subscription
with a dead-letter policy) and a messagePublished CloudEvent (Eventarc), binary or structured.
A 2xx acknowledges; a 5xx makes Pub/Sub redeliver, up to the dead-letter topic.
"""

import flask
import functions_framework

from temporal_median.errors import MalformedMessage, TransientError
from temporal_median.jobs import Delivery
from temporal_median.logs import get_logger
from temporal_median.settings import get_settings
from temporal_median.worker import handle_delivery

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
    except TransientError as exc:
        return {"outcome": "retry", "error": str(exc)}, 503
    except Exception:  # noqa: BLE001 - logged by the core; the message will be redelivered
        return {"outcome": "retry", "error": "internal error; see the function's logs"}, 500
    return {"outcome": outcome}, 200
