"""Clients of the running parts: google-cloud Pub/Sub and Storage clients on the emulators, HTTP probes.

The google-cloud libraries load on first use, not on import: ``python -m localcloud...`` starts
the emulators and front ends through this package, and they need none of it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def publisher_client(host: str):
    """A real google-cloud-pubsub PublisherClient talking to the emulator at host:port."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)))


def subscriber_client(host: str):
    """A real google-cloud-pubsub SubscriberClient talking to the emulator at host:port."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))


def storage_client(endpoint: str, project: str):
    """A real google-cloud-storage Client talking to fake-gcs-server at endpoint (http://host:port)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True when anything answers url over HTTP, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up and routing
    except (urllib.error.URLError, OSError):
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def get_json(url: str, timeout: float = 5.0):
    """The JSON document a GET of url answers (a front end's admin paths)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())
