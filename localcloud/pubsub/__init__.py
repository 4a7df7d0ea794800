"""The builtin Pub/Sub emulator (gRPC): push delivery, retry backoff, dead-lettering, push flow control.

The local cloud's own emulator, used when Google's (gcloud) is not installed or not chosen. It
speaks google.pubsub.v1 with google-cloud-pubsub's own message types, so the unchanged
PublisherClient / SubscriberClient work against it through PUBSUB_EMULATOR_HOST. Run it with
``python -m localcloud.pubsub --port N``. Where it differs from Pub/Sub and from Google's emulator
is listed in docs/concepts/local-cloud.md.

  server.py   the gRPC Publisher and Subscriber services over one Broker; PubSubEmulator; the CLI
  state.py    the Broker: topics, subscriptions, messages, acks, retries, dead letters
  config.py   what clients may ask for: names, limits, a subscription's validated settings
  push.py     push delivery to an endpoint, with the push window and push backoff
  filter.py   subscription filters compiled to predicates over attributes
"""

from .server import PubSubEmulator

__all__ = ["PubSubEmulator"]
