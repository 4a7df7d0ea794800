"""The local cloud: offline stand-ins for GCS, Pub/Sub (Google's emulator or ours) and Eventarc, plus
function servers with Cloud Run's capacity and failure model (dev/test only)."""

from .clients import publisher_client, storage_client, subscriber_client
from .cloud import (
    LocalCloud,
    LocalCloudError,
    PartStatus,
    clean_environ,
)
from .topology import Topology, TopologyError

__all__ = [
    "LocalCloud",
    "LocalCloudError",
    "PartStatus",
    "Topology",
    "TopologyError",
    "clean_environ",
    "publisher_client",
    "storage_client",
    "subscriber_client",
]
