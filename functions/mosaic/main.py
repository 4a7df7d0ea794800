"""mosaic (GCS finalize CloudEvent): when the last tile of a job lands, build its results once."""

import functions_framework
from cloudevents.http import CloudEvent

from temporal_median.base.errors import MalformedMessage
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import get_settings
from temporal_median.functions.mosaic import handle_object

log = get_logger("temporal_median.mosaic")
FINALIZED = "google.cloud.storage.object.v1.finalized"


@functions_framework.cloud_event
def mosaic(event: CloudEvent) -> None:
    settings = get_settings()
    if event["type"] != FINALIZED:
        log.warning(f"ignoring a {event['type']} event: only {FINALIZED} is handled")
        return
    data = event.data
    if not isinstance(data, dict) or not isinstance(data.get("bucket"), str) or not isinstance(data.get("name"), str):
        # Retrying cannot fix an event without a bucket and name: acknowledge it.
        log.error(str(MalformedMessage("finalized event data lacks bucket or name")))
        return
    # Exceptions propagate: functions-framework answers 500 and Eventarc retries.
    handle_object(data["bucket"], data["name"], settings)
