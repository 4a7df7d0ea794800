"""The local cloud: offline stand-ins for GCS, Pub/Sub and Eventarc plus real function servers (dev/test only)."""

from .cloud import (
    LocalCloud,
    LocalCloudError,
    PartStatus,
    clean_environ,
    publisher_client,
    storage_client,
    subscriber_client,
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
