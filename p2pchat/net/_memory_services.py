"""The DHT and pubsub halves of the memory network (see :mod:`p2pchat.net.memory`).

The DHT is one shared table on the hub. Each record is kept per *holder* (the node that
stored it), so that, as in Kademlia, different nodes may hold different versions and a
``get`` sees all the versions held by nodes it can reach, filtered by the reader's own
validators and ordered best first by its ``select``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from p2pchat.errors import ClosedError, LocalProtocolError

from .base import PeerInfo, RecordValidator, TopicValidator

__all__ = [
    "MemoryLinks",
    "MemoryNode",
    "MemoryRecords",
    "MemoryDht",
    "MemoryPubSub",
    "MemorySubscription",
    "namespace_of",
    "order_best_first",
]


class MemoryNode(Protocol):
    """What the services need from their :class:`~p2pchat.net.memory.MemoryNetwork`
    (described here, so that this module does not import the one that imports it)."""

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addrs(self) -> list[str]: ...

    @property
    def pubsub(self) -> MemoryPubSub: ...

    def check_open(self) -> None: ...

    def learn(self, peer_id: str) -> None: ...


class MemoryLinks(Protocol):
    """What the services need from the :class:`~p2pchat.net.memory.MemoryHub`."""

    @property
    def records(self) -> MemoryRecords: ...

    def faults(self, a: str, b: str) -> _Latency: ...

    def reachable(self, a: str, b: str) -> bool: ...

    def lose(self, a: str, b: str) -> bool: ...

    def delay(self, a: str, b: str) -> float: ...

    def copies(self, a: str, b: str) -> int: ...

    def count(self, counter: str) -> None: ...

    def node(self, peer_id: str) -> MemoryNode | None: ...

    def connected_to(self, peer_id: str) -> list[str]: ...

    def call_later(self, delay: float, fn: Callable[..., object], *args: object) -> None: ...


class _Latency(Protocol):
    @property
    def latency(self) -> float: ...


def namespace_of(key: str) -> str:
    """``"/ns/rest"`` → ``"ns"``; ``LocalProtocolError`` for a key without a namespace."""
    parts = key.split("/", 2)
    if len(parts) < 3 or parts[0] or not parts[1] or not parts[2]:
        raise LocalProtocolError("DHT keys have the form /<namespace>/<name>")
    return parts[1]


def order_best_first(validator: RecordValidator, key: str, values: Sequence[bytes]) -> list[bytes]:
    """Distinct values ordered by repeated ``select`` (the best one first)."""
    remaining = list(dict.fromkeys(values))
    ordered: list[bytes] = []
    while remaining:
        index = validator.select(key, remaining)
        if not 0 <= index < len(remaining):
            raise LocalProtocolError("a record validator's select returned a bad index")
        ordered.append(remaining.pop(index))
    return ordered


@dataclass
class MemoryRecords:
    """Everything the hub's DHT holds: ``values[key][holder]`` and ``providers[key]``."""

    values: dict[str, dict[str, bytes]] = field(default_factory=lambda: defaultdict(dict))
    providers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


class MemoryDht:
    """Satisfies :class:`p2pchat.net.base.Dht`; strict: unknown namespaces are refused."""

    def __init__(self, hub: MemoryLinks, node: MemoryNode) -> None:
        self._hub = hub
        self._node = node
        self._validators: dict[str, RecordValidator] = {}

    def register_namespace(self, namespace: str, validator: RecordValidator) -> None:
        if not namespace or "/" in namespace:
            raise LocalProtocolError("a namespace is one non-empty path segment")
        self._validators[namespace] = validator

    def _validator(self, key: str) -> RecordValidator:
        validator = self._validators.get(namespace_of(key))
        if validator is None:
            raise LocalProtocolError("no validator is registered for this DHT namespace")
        return validator

    async def _round_trip(self) -> None:
        self._node.check_open()
        latency = self._hub.faults(self._node.peer_id, self._node.peer_id).latency
        if latency:
            await trio.sleep(2 * latency)

    async def put(self, key: str, value: bytes) -> None:
        validator = self._validator(key)
        if not validator.validate(key, value):
            raise LocalProtocolError("the record does not pass its namespace's validator")
        await self._round_trip()
        held = self._hub.records.values[key]
        old = held.get(self._node.peer_id)
        if old is not None and old != value and validator.select(key, [value, old]) != 0:
            raise LocalProtocolError("refusing to replace a newer record with an older one")
        held[self._node.peer_id] = value

    async def get(self, key: str) -> list[bytes]:
        validator = self._validator(key)
        await self._round_trip()
        me = self._node.peer_id
        found = [
            value
            for holder, value in self._hub.records.values.get(key, {}).items()
            if (holder == me or self._hub.reachable(me, holder)) and validator.validate(key, value)
        ]
        return order_best_first(validator, key, found)

    async def provide(self, key: str) -> None:
        await self._round_trip()
        self._hub.records.providers[key].add(self._node.peer_id)

    async def find_providers(self, key: str) -> list[PeerInfo]:
        await self._round_trip()
        me = self._node.peer_id
        found = sorted(
            peer
            for peer in self._hub.records.providers.get(key, ())
            if peer == me or self._hub.reachable(me, peer)
        )
        for peer in found:
            self._node.learn(peer)
        return [PeerInfo(peer, tuple(_addrs(self._hub, peer))) for peer in found]

    async def find_peer(self, peer_id: str) -> PeerInfo | None:
        await self._round_trip()
        if not self._hub.reachable(self._node.peer_id, peer_id):
            return None
        self._node.learn(peer_id)
        return PeerInfo(peer_id, tuple(_addrs(self._hub, peer_id)))


def _addrs(hub: MemoryLinks, peer_id: str) -> list[str]:
    node = hub.node(peer_id)
    return node.listen_addrs if node is not None else []


class MemorySubscription:
    """Satisfies :class:`p2pchat.net.base.Subscription`."""

    def __init__(
        self,
        pubsub: MemoryPubSub,
        topic: str,
        receive: trio.MemoryReceiveChannel[tuple[str, bytes]],
    ) -> None:
        self._pubsub = pubsub
        self._topic = topic
        self._receive = receive

    @property
    def topic(self) -> str:
        return self._topic

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._receive.__aiter__()

    async def receive(self) -> tuple[str, bytes]:
        """The next message; ``ClosedError`` once unsubscribed or shut down."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise ClosedError("subscription closed") from exc

    def receive_nowait(self) -> tuple[str, bytes] | None:
        """The next queued message, or ``None`` if none is queued (simulator helper)."""
        try:
            return self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None

    async def aclose(self) -> None:
        self._pubsub.unsubscribe(self)
        await self._receive.aclose()


class MemoryPubSub:
    """Satisfies :class:`p2pchat.net.base.PubSub`.

    A publish reaches every subscriber connected to the publisher through any chain of
    connections (and the publisher's own subscriptions), after the receiving node's
    topic validator accepts it. Full subscription queues drop, as py-libp2p's do.
    """

    def __init__(self, hub: MemoryLinks, node: MemoryNode, *, queue_size: int) -> None:
        self._hub = hub
        self._node = node
        self._queue_size = queue_size
        self._subscriptions: dict[str, list[trio.MemorySendChannel[tuple[str, bytes]]]] = {}
        self._receivers: dict[int, trio.MemorySendChannel[tuple[str, bytes]]] = {}
        self._validators: dict[str, TopicValidator] = {}
        self._shut = False

    async def subscribe(self, topic: str) -> MemorySubscription:
        self._node.check_open()
        if self._subscriptions.get(topic):
            raise LocalProtocolError("already subscribed to this topic")
        send, receive = trio.open_memory_channel[tuple[str, bytes]](self._queue_size)
        subscription = MemorySubscription(self, topic, receive)
        self._subscriptions.setdefault(topic, []).append(send)
        self._receivers[id(subscription)] = send
        return subscription

    def unsubscribe(self, subscription: MemorySubscription) -> None:
        send = self._receivers.pop(id(subscription), None)
        if send is None:
            return
        senders = self._subscriptions.get(subscription.topic, [])
        if send in senders:
            senders.remove(send)
        send.close()

    def set_validator(self, topic: str, validator: TopicValidator) -> None:
        self._validators[topic] = validator

    def subscribed(self, topic: str) -> bool:
        return bool(self._subscriptions.get(topic))

    async def publish(self, topic: str, data: bytes) -> None:
        self._node.check_open()
        origin = self._node.peer_id
        if not self.accept(topic, origin, data):
            raise LocalProtocolError("our own topic validator rejects this message")
        for peer in _reachable_component(self._hub, origin):
            node = self._hub.node(peer)
            if node is None or not node.pubsub.subscribed(topic):
                continue
            if peer == origin:
                node.pubsub.deliver(topic, origin, data)
                continue
            if self._hub.lose(origin, peer):
                self._hub.count("gossip_lost")
                continue
            for _ in range(self._hub.copies(origin, peer)):
                latency = self._hub.delay(origin, peer)
                if latency:
                    self._hub.call_later(latency, node.pubsub.deliver, topic, origin, data)
                else:
                    node.pubsub.deliver(topic, origin, data)

    def accept(self, topic: str, origin: str, data: bytes) -> bool:
        validator = self._validators.get(topic)
        return validator is None or validator(origin, data)

    def deliver(self, topic: str, origin: str, data: bytes) -> None:
        if self._shut:
            return  # a delayed delivery to a node that has gone: never run its validator
        if not self.accept(topic, origin, data):
            return
        for send in list(self._subscriptions.get(topic, [])):
            try:
                send.send_nowait((origin, data))
            except trio.WouldBlock:
                self._hub.count("full")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscriptions[topic].remove(send)

    def shut(self) -> None:
        self._shut = True
        for senders in self._subscriptions.values():
            for send in senders:
                send.close()
        self._subscriptions.clear()
        self._receivers.clear()


def _reachable_component(hub: MemoryLinks, start: str) -> list[str]:
    """Every node connected to ``start`` through a chain of connections (BFS order)."""
    order = [start]
    seen = {start}
    frontier = deque((start,))
    while frontier:
        for other in hub.connected_to(frontier.popleft()):
            if other not in seen:
                seen.add(other)
                order.append(other)
                frontier.append(other)
    return order
