"""An in-process network with the same interface as the libp2p adapter.

Protocol and node logic can then be tested fast and deterministically under
``trio.testing.MockClock(autojump_threshold=0)``: no sockets, no threads, and every
random choice (loss, jitter) drawn from one seeded ``random.Random``.

::

    async with open_memory_hub(rng=random.Random(7)) as hub:
        async with hub.open_node(alice_id) as alice, hub.open_node(bob_id) as bob:
            await alice.connect(bob.peer_id, bob.listen_addrs)
            stream = await alice.open_stream(bob.peer_id, "/p2pchat/dm/1")

Faults for the simulator, all set on the hub: per-link :class:`LinkFaults` (loss,
latency, jitter that reorders gossip, duplication of gossip),
:meth:`MemoryHub.partition` / :meth:`MemoryHub.heal`, and
:meth:`MemoryHub.set_down` / :meth:`MemoryHub.set_up` for a node.

Fidelity, and where it stops: streams are reliable and ordered (like Yamux over TCP),
so loss applies to dials, stream opens and gossip deliveries, and latency delays every
stream write, DHT call and gossip delivery. A node can open a stream only to a peer
whose address it learned (``connect``, the DHT, an inbound connection or discovery),
as a libp2p host needs an address in its peerstore. Gossip reaches every subscriber
connected to the publisher through any chain of connections, without a mesh.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from p2pchat.errors import (
    ClosedError,
    NetworkError,
    P2PChatError,
    PeerUnreachableError,
    ProtocolError,
)
from p2pchat.protocol.counters import reason_of

from ._errors import unwrap_sole_exception
from ._events import EventBus, EventFeed
from ._framed import FramedByteStream
from ._memory_services import MemoryDht, MemoryPubSub, MemoryRecords
from ._penalties import Graylist
from .base import (
    FramedStream,
    NetEvent,
    PeerConnected,
    PeerDisconnected,
    PeerDiscovered,
    PeerInfo,
    StreamHandler,
)

__all__ = [
    "LinkFaults",
    "HubStatistics",
    "MemoryHub",
    "MemoryNetwork",
    "open_memory_hub",
    "memory_addr",
]

logger = logging.getLogger(__name__)

#: Chunks buffered per stream direction before a writer blocks (back-pressure).
_STREAM_BUFFER = 64


def memory_addr(peer_id: str) -> str:
    """The one address of a memory node (only the hub can dial it)."""
    return f"/memory/{peer_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFaults:
    """Faults of the link between two nodes (symmetric).

    ``jitter`` adds a uniform extra delay in ``[0, jitter)`` seconds to each gossip
    delivery and each dial (so gossip arrives out of order); ``duplicate`` is the chance
    that a gossip delivery arrives twice (each copy with its own jitter). Streams stay
    reliable and ordered, as Yamux over TCP is.
    """

    loss: float = 0.0
    latency: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0 or not 0.0 <= self.duplicate <= 1.0:
            raise ValueError("loss and duplicate must be in [0, 1]")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must be non-negative")


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """Counters for assertions in tests and reports from the simulator."""

    nodes: int
    connections: int
    dials_lost: int
    gossip_lost: int
    gossip_duplicated: int
    gossip_dropped_full: int
    events_dropped_full: int


class _Pipe:
    """One stream's shared state: two directions and whether it was reset."""

    def __init__(self, hub: MemoryHub, a: str, b: str) -> None:
        self.hub = hub
        self.ends = (a, b)
        self.reset = False
        self.channels = {
            a: trio.open_memory_channel[bytes](_STREAM_BUFFER),  # data *to* a
            b: trio.open_memory_channel[bytes](_STREAM_BUFFER),  # data *to* b
        }

    def abort(self) -> None:
        self.reset = True
        for send, receive in self.channels.values():
            receive.close()
            send.close()


class _MemoryByteStream:
    """One end of a :class:`_Pipe`, as the :class:`ByteStream` the framer wants."""

    def __init__(self, pipe: _Pipe, *, local: str, remote: str) -> None:
        self._pipe = pipe
        self._local = local
        self._remote = remote
        self._inbox = pipe.channels[local][1]
        self._outbox = pipe.channels[remote][0]

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return await self._inbox.receive()
        except trio.EndOfChannel:
            if self._pipe.reset:
                raise NetworkError("stream was reset") from None
            return b""
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise NetworkError("stream was reset") from exc

    async def send_all(self, data: bytes) -> None:
        latency = self._pipe.hub.faults(self._local, self._remote).latency
        if latency:
            await trio.sleep(latency)
        if self._pipe.reset:
            raise NetworkError("stream was reset")
        try:
            await self._outbox.send(data)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise NetworkError("stream was reset") from exc

    async def close_write(self) -> None:
        await self._outbox.aclose()

    async def reset(self) -> None:
        self._pipe.abort()


class _Later:
    """Delayed calls run by one task: a heap by due time, ties in scheduling order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., object], tuple[object, ...]]] = []
        self._seq = 0
        self._wake = trio.Event()

    def call_later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        due = trio.current_time() + delay
        if not self._heap or due < self._heap[0][0]:
            self._wake.set()  # a new earliest call: the timer task sleeps too long
        heapq.heappush(self._heap, (due, self._seq, fn, args))
        self._seq += 1

    async def run(self) -> None:
        while True:
            if self._heap:
                with trio.move_on_at(self._heap[0][0]):
                    await self._wake.wait()
            else:
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, fn, args = heapq.heappop(self._heap)
                fn(*args)


class MemoryHub:
    """Creates memory nodes and owns everything they share: links, DHT, faults."""

    def __init__(self, *, rng: random.Random, nursery: trio.Nursery) -> None:
        self._rng = rng
        self._nursery = nursery
        self._later = _Later()
        nursery.start_soon(self._later.run)
        self._nodes: dict[str, MemoryNetwork] = {}
        self._down: set[str] = set()
        self._groups: dict[str, int] | None = None
        self._default_faults = LinkFaults()
        self._link_faults: dict[frozenset[str], LinkFaults] = {}
        self._connections: dict[frozenset[str], list[_Pipe]] = {}
        #: Each node's connected peers, in the order the connections were made (the
        #: order ``_connections`` lists them in): lookups per node, not per connection.
        self._adjacent: dict[str, dict[str, None]] = {}
        self.records = MemoryRecords()
        self._counters = {"dials_lost": 0, "gossip_lost": 0, "gossip_duplicated": 0, "full": 0}

    # -- faults ---------------------------------------------------------------------

    def set_default_faults(self, faults: LinkFaults) -> None:
        self._default_faults = faults

    def set_link_faults(self, a: str, b: str, faults: LinkFaults) -> None:
        self._link_faults[frozenset((a, b))] = faults

    def faults(self, a: str, b: str) -> LinkFaults:
        return self._link_faults.get(frozenset((a, b)), self._default_faults)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: nodes in different groups (or in none) cannot talk."""
        self._groups = {peer: index for index, group in enumerate(groups) for peer in group}
        for pair in list(self._connections):
            a, b = tuple(pair)
            if not self.reachable(a, b):
                self._drop_connection(pair)

    def heal(self) -> None:
        """Undo :meth:`partition` (connections are not restored: peers redial)."""
        self._groups = None

    def set_down(self, peer_id: str) -> None:
        """Take a node off the network: its connections drop and nobody reaches it."""
        self._down.add(peer_id)
        for other in list(self._adjacent.get(peer_id, ())):
            self._drop_connection(frozenset((peer_id, other)))

    def set_up(self, peer_id: str) -> None:
        self._down.discard(peer_id)

    def reachable(self, a: str, b: str) -> bool:
        if a in self._down or b in self._down or a not in self._nodes or b not in self._nodes:
            return False
        if self._groups is None:
            return True
        group = self._groups.get(a)
        return group is not None and group == self._groups.get(b)

    def lose(self, a: str, b: str) -> bool:
        """Roll the link's loss die (one draw per call, so runs are reproducible)."""
        loss = self.faults(a, b).loss
        return loss > 0 and self._rng.random() < loss

    def delay(self, a: str, b: str) -> float:
        """The link's latency plus a jitter draw (a draw only when jitter is set)."""
        faults = self.faults(a, b)
        if faults.jitter:
            return faults.latency + self._rng.uniform(0.0, faults.jitter)
        return faults.latency

    def copies(self, a: str, b: str) -> int:
        """How many copies of one gossip delivery arrive: 1, or 2 when duplicated."""
        duplicate = self.faults(a, b).duplicate
        if duplicate > 0 and self._rng.random() < duplicate:
            self.count("gossip_duplicated")
            return 2
        return 1

    def announce_nearby(
        self, peer_ids: Sequence[str], *, names: Mapping[str, str] | None = None
    ) -> None:
        """Simulate mDNS: every listed node discovers every other listed node (with the
        display name it announces, if ``names`` gives one)."""
        names = names or {}
        for peer in peer_ids:
            for other in peer_ids:
                if other != peer and self.reachable(peer, other):
                    self._nodes[peer].learn(other)
                    info = PeerInfo(other, (memory_addr(other),), name=names.get(other))
                    self._nodes[peer].emit(PeerDiscovered(info))

    def statistics(self) -> HubStatistics:
        c = self._counters
        return HubStatistics(
            nodes=len(self._nodes),
            connections=len(self._connections),
            dials_lost=c["dials_lost"],
            gossip_lost=c["gossip_lost"],
            gossip_duplicated=c["gossip_duplicated"],
            gossip_dropped_full=c["full"],
            events_dropped_full=sum(node.events_dropped for node in self._nodes.values()),
        )

    def count(self, counter: str) -> None:
        self._counters[counter] += 1

    # -- nodes and connections ---------------------------------------------------------

    @asynccontextmanager
    async def open_node(
        self, peer_id: str, *, event_buffer: int = 256, subscription_buffer: int = 32
    ) -> AsyncIterator[MemoryNetwork]:
        """A node on this hub, listening until the block exits."""
        if peer_id in self._nodes:
            raise NetworkError("a node with this peer id is already on the hub")
        with unwrap_sole_exception():
            async with trio.open_nursery() as nursery:
                node = MemoryNetwork(
                    self,
                    peer_id,
                    nursery=nursery,
                    event_buffer=event_buffer,
                    subscription_buffer=subscription_buffer,
                )
                self._nodes[peer_id] = node
                try:
                    yield node
                finally:
                    for other in list(self._adjacent.get(peer_id, ())):
                        self._drop_connection(frozenset((peer_id, other)))
                    del self._nodes[peer_id]
                    node.shut()
                    nursery.cancel_scope.cancel()

    def node(self, peer_id: str) -> MemoryNetwork | None:
        return self._nodes.get(peer_id)

    def nodes(self) -> list[MemoryNetwork]:
        return list(self._nodes.values())

    def is_connected(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._connections

    def connect(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair in self._connections:
            return
        if not self.reachable(a, b):
            raise PeerUnreachableError("peer is not reachable")
        if self.lose(a, b):
            self.count("dials_lost")
            raise PeerUnreachableError("dial failed")
        self._connections[pair] = []
        self._adjacent.setdefault(a, {})[b] = None
        self._adjacent.setdefault(b, {})[a] = None
        self._nodes[b].learn(a)
        self._nodes[a].emit(PeerConnected(b))
        self._nodes[b].emit(PeerConnected(a))

    def disconnect(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair in self._connections:
            self._drop_connection(pair)

    def _drop_connection(self, pair: frozenset[str]) -> None:
        for pipe in self._connections.pop(pair):
            pipe.abort()
        for peer in pair:
            other = next(iter(pair - {peer}))
            self._adjacent.get(peer, {}).pop(other, None)
            node = self._nodes.get(peer)
            if node is not None:
                node.emit(PeerDisconnected(other))

    def connected_to(self, peer_id: str) -> list[str]:
        return sorted(self._adjacent.get(peer_id, ()))

    def open_pipe(self, a: str, b: str) -> _Pipe:
        pipe = _Pipe(self, a, b)
        self._connections[frozenset((a, b))].append(pipe)
        return pipe

    def call_later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` after ``delay`` seconds, from the hub's one timer task (it
        outlives any one node). Due calls run in the order they were scheduled. One task
        for all of them, not one each: a simulated publish to 1,000 nodes made 1,000
        tasks, and trio's task creation and scheduling was ~10 % of the simulator."""
        self._later.call_later(delay, fn, *args)


class MemoryNetwork:
    """One node on a :class:`MemoryHub`; satisfies :class:`p2pchat.net.base.Network`."""

    def __init__(
        self,
        hub: MemoryHub,
        peer_id: str,
        *,
        nursery: trio.Nursery,
        event_buffer: int,
        subscription_buffer: int,
    ) -> None:
        self._hub = hub
        self._peer_id = peer_id
        self._nursery = nursery
        self._handlers: dict[str, StreamHandler] = {}
        self._known: set[str] = set()
        self._events = EventBus(buffer=event_buffer)
        self._closed = False
        self._dht = MemoryDht(hub, self)
        self._pubsub = MemoryPubSub(hub, self, queue_size=subscription_buffer)
        self._dials = {"dials": 0, "dial_failures": 0}
        self._unreachable: dict[str, str] = {}
        self._protected: dict[str, set[str]] = {}
        self.graylist = Graylist()

    def __repr__(self) -> str:
        return f"<MemoryNetwork {self._peer_id}>"

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return [memory_addr(self._peer_id)]

    @property
    def dht(self) -> MemoryDht:
        return self._dht

    @property
    def pubsub(self) -> MemoryPubSub:
        return self._pubsub

    @property
    def nursery(self) -> trio.Nursery:
        return self._nursery

    def check_open(self) -> None:
        if self._closed:
            raise ClosedError("the network was closed")
        if not self._hub.reachable(self._peer_id, self._peer_id):
            raise NetworkError("this node is down")

    def learn(self, peer_id: str) -> None:
        self._known.add(peer_id)

    def emit(self, event: NetEvent) -> None:
        self._events.emit(event)

    @property
    def events_dropped(self) -> int:
        return self._events.dropped

    def shut(self) -> None:
        self._closed = True
        self._events.close()
        self._pubsub.shut()

    async def connect(self, peer_id: str, addrs: Sequence[str]) -> None:
        self.check_open()
        self._dials["dials"] += 1
        if self.graylist.blocked(peer_id, trio.current_time()):
            raise PeerUnreachableError(f"cannot reach {peer_id}: graylisted for invalid messages")
        if memory_addr(peer_id) not in addrs:
            self._dials["dial_failures"] += 1
            self._unreachable.pop(peer_id, None)
            self._unreachable[peer_id] = "no usable address for the peer"
            raise PeerUnreachableError(f"cannot reach {peer_id}: no usable address for the peer")
        await self._delay(peer_id)
        self._hub.connect(self._peer_id, peer_id)
        self._unreachable.pop(peer_id, None)
        self.learn(peer_id)

    def statistics(self) -> dict[str, Any]:
        """Dial counters and the peers whose last dial failed (see ``Network``)."""
        failed = [{"peer_id": p, "reason": r} for p, r in reversed(self._unreachable.items())]
        graylist = self.graylist.statistics(trio.current_time())
        return {**self._dials, **graylist, "unreachable": failed[:16]}

    def connection_paths(self) -> dict[str, str]:
        return {peer: "direct" for peer in self.connected_peers()}

    def connected_peers(self) -> list[str]:
        return self._hub.connected_to(self._peer_id)

    async def disconnect(self, peer_id: str) -> None:
        self._hub.disconnect(self._peer_id, peer_id)

    def penalize(self, peer_id: str, reason: str) -> None:
        """As :meth:`Libp2pNetwork.penalize`: a repeated offender is disconnected, refused."""
        if self.graylist.penalize(peer_id, reason, trio.current_time()):
            self._hub.disconnect(self._peer_id, peer_id)

    def protect(self, peer_id: str, tag: str) -> None:
        """Recorded only: a memory hub never trims connections."""
        self._protected.setdefault(peer_id, set()).add(tag)

    def unprotect(self, peer_id: str, tag: str) -> bool:
        tags = self._protected.get(peer_id, set())
        tags.discard(tag)
        if not tags:
            self._protected.pop(peer_id, None)
        return bool(tags)

    def is_protected(self, peer_id: str, tag: str = "") -> bool:
        tags = self._protected.get(peer_id, set())
        return bool(tags) if not tag else tag in tags

    async def start_discovery(self) -> None:
        """Nothing to join: the hub is the whole network (see ``announce_nearby``)."""

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        self._handlers[protocol] = handler

    def handler_for(self, protocol: str) -> StreamHandler | None:
        return self._handlers.get(protocol)

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream:
        self.check_open()
        if peer_id not in self._known:
            raise PeerUnreachableError("no known address for the peer")
        if not self._hub.is_connected(self._peer_id, peer_id):
            await self.connect(peer_id, [memory_addr(peer_id)])
        await self._delay(peer_id)
        if self._hub.lose(self._peer_id, peer_id):
            self._hub.count("dials_lost")
            raise PeerUnreachableError("stream open failed")
        if not self._hub.is_connected(self._peer_id, peer_id):
            # Dropped during the delay (a partition, the peer went down).
            raise PeerUnreachableError("the connection closed while opening the stream")
        remote = self._hub.node(peer_id)
        handler = remote.handler_for(protocol) if remote is not None else None
        if remote is None or handler is None:
            raise NetworkError("the peer does not speak this protocol")
        pipe = self._hub.open_pipe(self._peer_id, peer_id)
        ours = FramedByteStream(
            _MemoryByteStream(pipe, local=self._peer_id, remote=peer_id),
            remote_peer=peer_id,
            protocol=protocol,
        )
        theirs = FramedByteStream(
            _MemoryByteStream(pipe, local=peer_id, remote=self._peer_id),
            remote_peer=self._peer_id,
            protocol=protocol,
        )
        if remote.graylist.blocked(self._peer_id, trio.current_time()):
            raise PeerUnreachableError("the peer refuses us (graylisted)")
        remote.nursery.start_soon(_run_handler, handler, theirs, remote.penalize)
        return ours

    def events(self) -> EventFeed:
        return self._events.feed()

    async def _delay(self, peer_id: str) -> None:
        latency = self._hub.delay(self._peer_id, peer_id)
        if latency:
            await trio.sleep(latency)


async def _run_handler(
    handler: StreamHandler, stream: FramedStream, penalize: Callable[[str, str], None]
) -> None:
    """Run an inbound handler; close on return, reset on a p2pchat error (a peer that broke
    the protocol is penalised, as on the libp2p network).

    Errors other than p2pchat's are bugs in the handler and propagate.
    """
    try:
        await handler(stream)
    except P2PChatError as exc:
        logger.debug("stream handler for %s failed: %s", stream.protocol, type(exc).__name__)
        if isinstance(exc, ProtocolError):
            penalize(stream.remote_peer, reason_of(exc))
        await stream.reset()
        return
    try:
        await stream.close()
    except NetworkError:
        logger.debug("closing a handled stream failed (peer went away)")


@asynccontextmanager
async def open_memory_hub(*, rng: random.Random) -> AsyncIterator[MemoryHub]:
    """A hub whose randomness (loss, jitter) all comes from ``rng``."""
    with unwrap_sole_exception():
        async with trio.open_nursery() as nursery:
            hub = MemoryHub(rng=rng, nursery=nursery)
            try:
                yield hub
            finally:
                nursery.cancel_scope.cancel()
