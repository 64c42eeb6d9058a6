"""The network interface the node programs against, and its value objects.

Two implementations satisfy it: :mod:`p2pchat.net.libp2p_host` (real py-libp2p hosts)
and :mod:`p2pchat.net.memory` (an in-process network for tests and the simulator).
Both are *thin*: they move bytes and report events, and keep no protocol state. Every
decision about what a frame, a record or a gossip message means belongs to the node.

Why ``typing.Protocol`` rather than an abstract base class: the libp2p adapter and the
memory network share no code path worth inheriting, and structural typing lets a test
double satisfy the interface without importing anything from here.

Errors (all from :mod:`p2pchat.errors`): ``PeerUnreachableError`` when a dial or a
stream open fails, ``NetworkError`` for any other transport failure, ``WireError`` when
a frame violates the framing rules, ``ClosedError`` when the caller uses something it
closed itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "PeerInfo",
    "PeerConnected",
    "PeerDisconnected",
    "PeerDiscovered",
    "ReachabilityChanged",
    "NetEvent",
    "FramedStream",
    "StreamHandler",
    "RecordValidator",
    "TopicValidator",
    "Dht",
    "Subscription",
    "PubSub",
    "Network",
]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer id (base58 ``12D3KooW…`` string) and the multiaddrs it may be reached at."""

    peer_id: str
    addrs: tuple[str, ...] = ()
    #: A display name the peer announced (mDNS only): unverified, for people to read.
    name: str | None = None


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A connection to ``peer_id`` is open (either side dialed)."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    """The last connection to ``peer_id`` closed."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class PeerDiscovered:
    """A peer announced itself nearby (mDNS); nothing has been dialed yet."""

    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class ReachabilityChanged:
    """Whether others can dial us changed (AutoNAT: ``unknown``/``public``/``private``),
    or the relayed addresses we advertise did."""

    reachability: str
    relayed_addrs: tuple[str, ...] = ()


NetEvent = PeerConnected | PeerDisconnected | PeerDiscovered | ReachabilityChanged


@runtime_checkable
class FramedStream(Protocol):
    """A bidirectional stream of length-prefixed frames to one remote peer.

    ``read_frame`` returns ``None`` on a clean end of stream (the peer closed its
    sending side at a frame boundary); a stream that ends inside a frame raises
    ``WireError("truncated-frame")``. ``close`` closes only our sending side, so the
    peer's ``read_frame`` returns ``None`` while we may still read its answer.
    ``reset`` aborts both directions at once.
    """

    @property
    def remote_peer(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    async def read_frame(self, max_size: int) -> bytes | None: ...

    async def write_frame(self, data: bytes) -> None: ...

    async def write_frames(self, frames: Sequence[bytes]) -> None:
        """Several frames in one write (the same bytes as one ``write_frame`` each, in
        one transport write: one Yamux frame and one Noise message where they fit)."""
        ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


#: Handles one inbound stream. The adapter closes the stream when the handler returns
#: (py-libp2p does not, and the peer's read would hang) and resets it if the handler
#: raises a p2pchat error. Any other exception is a bug: the stream is reset and the
#: exception ends the network's ``async with`` (it is never swallowed).
StreamHandler = Callable[[FramedStream], Awaitable[None]]


class RecordValidator(Protocol):
    """The node's rules for the DHT records of one namespace (keys ``/<ns>/…``).

    ``validate`` returns False for a record that must be neither stored nor returned;
    ``select`` returns the index of the best of several valid records (for example the
    one with the highest sequence number). Both must be pure and fast: they run inside
    the DHT's request handlers, on records from untrusted peers.
    """

    def validate(self, key: str, value: bytes) -> bool: ...

    def select(self, key: str, values: Sequence[bytes]) -> int: ...


#: ``fn(origin_peer_id, data) -> accept``; runs before a gossip message is delivered or
#: forwarded, so a False stops it from spreading.
TopicValidator = Callable[[str, bytes], bool]


class Dht(Protocol):
    """Kademlia: records under validated namespaces, provider records, peer routing."""

    def register_namespace(self, namespace: str, validator: RecordValidator) -> None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def get(self, key: str) -> list[bytes]:
        """Valid records found for ``key``, best first (empty if none)."""
        ...

    async def provide(self, key: str) -> None: ...

    async def find_providers(self, key: str) -> list[PeerInfo]: ...

    async def find_peer(self, peer_id: str) -> PeerInfo | None: ...


class Subscription(Protocol):
    """Messages of one topic as ``(origin_peer_id, data)``; iterate, then ``aclose``.

    One subscription per topic per node: a second ``subscribe`` raises
    ``LocalProtocolError`` (py-libp2p would hand both the same queue).
    """

    @property
    def topic(self) -> str: ...

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]: ...

    async def receive(self) -> tuple[str, bytes]:
        """The next message; ``ClosedError`` once unsubscribed or shut down."""
        ...

    async def aclose(self) -> None: ...


class PubSub(Protocol):
    """Topic-based gossip. Delivery is best effort: sync, not gossip, guarantees it."""

    async def subscribe(self, topic: str) -> Subscription: ...

    async def publish(self, topic: str, data: bytes) -> None: ...

    def set_validator(self, topic: str, validator: TopicValidator) -> None: ...


class Network(Protocol):
    """One node's view of the network; obtained from an ``async with`` opener."""

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addrs(self) -> list[str]: ...

    @property
    def dht(self) -> Dht: ...

    @property
    def pubsub(self) -> PubSub: ...

    async def connect(self, peer_id: str, addrs: Sequence[str]) -> None: ...

    async def disconnect(self, peer_id: str) -> None: ...

    def connected_peers(self) -> list[str]: ...

    def connection_paths(self) -> dict[str, str]:
        """For each connected peer, ``direct`` or ``relayed`` (through a circuit relay)."""
        ...

    def penalize(self, peer_id: str, reason: str) -> None:
        """``peer_id`` sent something invalid (``reason``, a slug): its score drops; a
        repeated offender is disconnected and not dialled for a while."""
        ...

    def protect(self, peer_id: str, tag: str) -> None:
        """Keep connections to ``peer_id`` when trimming idle ones above the high
        watermark (one tag per reason: ``contact``, ``group``, ``relay``)."""
        ...

    def unprotect(self, peer_id: str, tag: str) -> bool:
        """Drop one reason; True while other tags still protect the peer."""
        ...

    def is_protected(self, peer_id: str, tag: str = "") -> bool: ...

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None: ...

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream: ...

    def statistics(self) -> dict[str, Any]:
        """Dial counters (``dials``, ``dial_failures``, ...) and ``unreachable``: the peers
        whose last dial failed, newest first, as ``{"peer_id", "reason"}``."""
        ...

    async def start_discovery(self) -> None:
        """Join the network (bootstrap peers, DHT refresh, opt-in mDNS); idempotent.

        A node calls it once its protocol handlers are registered, so that no peer
        reaches it before it can answer.
        """
        ...

    def events(self) -> AsyncIterator[NetEvent]:
        """A new, bounded feed of events from now on (each call gets its own)."""
        ...
