"""Gossipsub (``libp2p.pubsub``) behind :class:`p2pchat.net.base.PubSub`.

Parameters come from :class:`~p2pchat.net.config.GossipConfig` (py-libp2p's default
heartbeat is 120 s and the mesh degree has no default). Messages are signed by the
sender's host key (strict signing), so the origin peer id handed to validators and
subscribers is authenticated.

Limits the layers above must live with (py-libp2p 0.8.1, silent): a spam filter drops
messages beyond 10/s per (forwarding peer, topic); subscription and outgoing queues
hold 32 messages and drop when full; message ids derive from the sender's sequence
number, which starts at the current Unix second. Hence the groups layer batches and
makes sync, not gossip, responsible for delivery.

One subscription per topic per node: py-libp2p hands every ``subscribe`` of a topic
the same queue, so a second one would steal messages from the first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from p2pchat.errors import ClosedError, LocalProtocolError, NetworkError

from . import _pubsub_costs
from ._errors import ErrorTable, map_exceptions
from .base import TopicValidator
from .config import GossipConfig

logger = logging.getLogger(__name__)

__all__ = ["Libp2pPubSub", "Libp2pSubscription", "start_pubsub"]

PUBSUB_ERRORS: ErrorTable = [(BaseLibp2pError, NetworkError), (OSError, NetworkError)]


class Libp2pSubscription:
    """Satisfies :class:`p2pchat.net.base.Subscription`."""

    def __init__(self, owner: Libp2pPubSub, topic: str, inner: object) -> None:
        self._owner = owner
        self._topic = topic
        self._inner = inner
        self._closed = False

    @property
    def topic(self) -> str:
        return self._topic

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        if self._closed:
            raise StopAsyncIteration
        try:
            message: rpc_pb2.Message = await self._inner.get()  # type: ignore[attr-defined]
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise StopAsyncIteration from exc
        return ID(message.from_id).to_base58(), bytes(message.data)

    async def receive(self) -> tuple[str, bytes]:
        """The next message; ``ClosedError`` once unsubscribed."""
        try:
            return await self.__anext__()
        except StopAsyncIteration as exc:
            raise ClosedError("subscription closed") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._owner.unsubscribe(self._topic)


class Libp2pPubSub:
    """Satisfies :class:`p2pchat.net.base.PubSub`."""

    def __init__(self, pubsub: Pubsub) -> None:
        self._pubsub = pubsub
        self._topics: set[str] = set()

    async def subscribe(self, topic: str) -> Libp2pSubscription:
        if topic in self._topics:
            raise LocalProtocolError("already subscribed to this topic")
        with map_exceptions(PUBSUB_ERRORS, what="subscribe"):
            inner = await self._pubsub.subscribe(topic)
        self._topics.add(topic)
        return Libp2pSubscription(self, topic, inner)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        with map_exceptions(PUBSUB_ERRORS, what="unsubscribe"):
            await self._pubsub.unsubscribe(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        with map_exceptions(PUBSUB_ERRORS, what="publish"):
            await self._pubsub.publish(topic, data)

    def set_validator(self, topic: str, validator: TopicValidator) -> None:
        def check(forwarder: ID, message: rpc_pb2.Message) -> bool:
            return validator(ID(message.from_id).to_base58(), bytes(message.data))

        self._pubsub.set_topic_validator(topic, check, False)

    def mesh_peers(self, topic: str) -> list[str]:
        """Peers in our mesh for ``topic`` (for tests waiting on a condition)."""
        router = self._pubsub.router
        mesh = getattr(router, "mesh", {})
        return sorted(peer.to_base58() for peer in mesh.get(topic, ()))

    def topic_peers(self, topic: str) -> list[str]:
        """Peers known to be subscribed to ``topic``."""
        peers = self._pubsub.peer_topics.get(topic, ())
        return sorted(peer.to_base58() for peer in peers)


@asynccontextmanager
async def start_pubsub(host: IHost, config: GossipConfig) -> AsyncIterator[Libp2pPubSub]:
    """Run gossipsub for the duration of the block.

    Gossipsub v1.1 and v1.0 only: py-libp2p's v1.2 sends an IDONTWANT to every mesh
    peer for every message received, whatever its size (the spec means it for large
    ones), which doubled the per-message cost of our small batches.
    """
    _pubsub_costs.install()
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]
        max_messages_per_topic_per_second=config.max_messages_per_topic_per_second,
    )
    pubsub = Pubsub(host, router, strict_signing=True)
    for protocol in router.get_protocols():
        host.set_stream_handler(protocol, _guarded(pubsub))
    async with background_trio_service(pubsub), background_trio_service(router):
        await pubsub.wait_until_ready()
        yield Libp2pPubSub(pubsub)


def _guarded(pubsub: Pubsub) -> Any:
    """py-libp2p's pubsub stream handler, made safe for untrusted input.

    Its read loop lets some decoding errors escape (a protobuf ``DecodeError`` from four
    garbage bytes on ``/meshsub/1.1.0``), and an exception from a stream handler tears
    the whole host down: any peer could stop our node. Whatever the handler raises is
    confined to that peer's stream.
    """

    async def handle(stream: Any) -> None:
        try:
            await pubsub.stream_handler(stream)
        except Exception as exc:  # noqa: BLE001 - untrusted input; py-libp2p raises anything
            logger.info("dropped a malformed pubsub stream: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                await stream.reset()

    return handle
