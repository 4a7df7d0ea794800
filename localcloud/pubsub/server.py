"""The emulator's gRPC services: Publisher and Subscriber over one Broker, PubSubEmulator, and its CLI.

The servicers are thin: each RPC checks its own request fields and calls the Broker; an RpcError
becomes the gRPC status the client sees.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Callable

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1 import types as t

from .config import RpcError
from .state import Broker

log = logging.getLogger("localcloud.pubsub")

DESCRIPTION = "A compact Pub/Sub emulator (gRPC) with push delivery, retry backoff, dead-lettering and push flow control."
GRPC_MESSAGE_LIMIT = 20 * 1024 * 1024  # above Pub/Sub's 10 MB request limit, with room for framing
MAX_PULL_WAIT = 2.0


def _rpc(function: Callable, request_type, response_type) -> grpc.RpcMethodHandler:
    def handler(request, context: grpc.ServicerContext):
        try:
            return function(request, context)
        except RpcError as exc:
            context.abort(exc.code, str(exc))

    serializer = response_type.SerializeToString if response_type is empty_pb2.Empty else response_type.serialize
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_type.deserialize, response_serializer=serializer
    )


def _paged(items: list, page_size: int, page_token: str) -> tuple[list, str]:
    start = int(page_token) if page_token.isdigit() else 0
    size = page_size if page_size > 0 else 1000
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def build_handlers(broker: Broker) -> list[grpc.GenericRpcHandler]:
    """The Publisher and Subscriber services over one broker."""
    Empty = empty_pb2.Empty

    def list_topics(req, ctx):
        page, token = _paged(broker.list_topics(req.project), req.page_size, req.page_token)
        return t.ListTopicsResponse(topics=page, next_page_token=token)

    def list_topic_subscriptions(req, ctx):
        page, token = _paged(broker.list_topic_subscriptions(req.topic), req.page_size, req.page_token)
        return t.ListTopicSubscriptionsResponse(subscriptions=page, next_page_token=token)

    def list_subscriptions(req, ctx):
        page, token = _paged(broker.list_subscriptions(req.project), req.page_size, req.page_token)
        return t.ListSubscriptionsResponse(subscriptions=page, next_page_token=token)

    def pull(req, ctx):
        if req.max_messages <= 0:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "max_messages must be positive")
        remaining = ctx.time_remaining()
        wait = 0.0 if req.return_immediately else min(MAX_PULL_WAIT, max(0.0, (remaining or MAX_PULL_WAIT) - 0.2))
        messages = broker.get_subscription(req.subscription).pull(req.max_messages, wait)
        return t.PullResponse(received_messages=messages)

    def modify_ack_deadline(req, ctx):
        if not 0 <= req.ack_deadline_seconds <= 600:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"ack_deadline_seconds must be within 0..600, got {req.ack_deadline_seconds}")
        broker.get_subscription(req.subscription).modify_ack_deadline(req.ack_ids, req.ack_deadline_seconds)
        return Empty()

    def acknowledge(req, ctx):
        broker.get_subscription(req.subscription).acknowledge(req.ack_ids)
        return Empty()

    def delete_topic(req, ctx):
        broker.delete_topic(req.topic)
        return Empty()

    def delete_subscription(req, ctx):
        broker.delete_subscription(req.subscription)
        return Empty()

    def modify_push_config(req, ctx):
        broker.modify_push_config(req.subscription, req.push_config)
        return Empty()

    publisher = {
        "CreateTopic": _rpc(lambda req, ctx: broker.create_topic(req), t.Topic, t.Topic),
        "GetTopic": _rpc(lambda req, ctx: broker.get_topic(req.topic), t.GetTopicRequest, t.Topic),
        "ListTopics": _rpc(list_topics, t.ListTopicsRequest, t.ListTopicsResponse),
        "ListTopicSubscriptions": _rpc(list_topic_subscriptions, t.ListTopicSubscriptionsRequest, t.ListTopicSubscriptionsResponse),
        "DeleteTopic": _rpc(delete_topic, t.DeleteTopicRequest, Empty),
        "Publish": _rpc(
            lambda req, ctx: t.PublishResponse(message_ids=broker.publish(req.topic, list(req.messages))),
            t.PublishRequest,
            t.PublishResponse,
        ),
    }
    subscriber = {
        "CreateSubscription": _rpc(lambda req, ctx: broker.create_subscription(req), t.Subscription, t.Subscription),
        "GetSubscription": _rpc(lambda req, ctx: broker.get_subscription(req.subscription).proto, t.GetSubscriptionRequest, t.Subscription),
        "ListSubscriptions": _rpc(list_subscriptions, t.ListSubscriptionsRequest, t.ListSubscriptionsResponse),
        "DeleteSubscription": _rpc(delete_subscription, t.DeleteSubscriptionRequest, Empty),
        "ModifyPushConfig": _rpc(modify_push_config, t.ModifyPushConfigRequest, Empty),
        "Pull": _rpc(pull, t.PullRequest, t.PullResponse),
        "Acknowledge": _rpc(acknowledge, t.AcknowledgeRequest, Empty),
        "ModifyAckDeadline": _rpc(modify_ack_deadline, t.ModifyAckDeadlineRequest, Empty),
    }
    return [
        grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", publisher),
        grpc.method_handlers_generic_handler("google.pubsub.v1.Subscriber", subscriber),
    ]


class PubSubEmulator:
    """The emulator as an object: ``PubSubEmulator(port=0).start()`` serves in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_concurrency: int | None = None) -> None:
        self.host = host
        self.port = port
        self.broker = Broker(default_concurrency)
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        """host:port, the value for PUBSUB_EMULATOR_HOST."""
        return f"{self.host}:{self.port}"

    def start(self) -> "PubSubEmulator":
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"),
            handlers=build_handlers(self.broker),
            options=[
                ("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT),
                ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT),
                # Without this a second server could share a port already in use and split traffic.
                ("grpc.so_reuseport", 0),
            ],
        )
        try:
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"Pub/Sub emulator: cannot listen on {self.host}:{self.port} (port in use?)")
        self.port = bound
        server.start()
        self._server = server
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
            self._server = None
        self.broker.close()

    def __enter__(self) -> "PubSubEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.pubsub", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--default-concurrency", type=int, default=None, help="push concurrency when a subscription sets none")
    parser.add_argument("--log-level", default=os.environ.get("LOCALCLOUD_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    emulator = PubSubEmulator(args.host, args.port, args.default_concurrency)
    try:
        emulator.start()
    except OSError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("Pub/Sub emulator listening on %s", emulator.address)
    stop.wait()
    log.info("stopping")
    emulator.stop()
    return 0

