"""The simulated world: real nodes on one :class:`MemoryHub`, crashed and restarted at will.

Each simulated peer is a full :class:`~p2pchat.node.Node` (crypto, DM layer, group
engine, gossip and sync transport, store) on the in-memory network. What a peer keeps
across a crash is exactly what a device keeps on disk: its identity and its
:class:`MemoryStore`. Everything else (engines, keyrings in memory, connections, queued
gossip) dies with the node.

Every node event and every simulator action goes into one running :class:`Trace`
digest, so two runs of a seed can be compared bit for bit.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.events import Event, EventStream, GroupMessage, MessageReceived
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import Network
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node
from p2pchat.storage.memory import MemoryStore
from p2pchat_crypto.identity import Device
from tests.conftest import NOW_MS, DeterministicRng

__all__ = ["SimPeer", "Trace", "World", "sim_clock_ms"]

#: Outbox retries fast enough that sender keys (private groups) move within a run.
SIM_DELIVERY = DeliveryConfig(retry_initial_ms=1_000, retry_max_ms=10_000, ack_timeout_ms=5_000)


def sim_clock_ms() -> int:
    """Wall-clock milliseconds that follow trio's (mock) clock."""
    return NOW_MS + int(trio.current_time() * 1000)


@functools.cache
def _identity(name: str) -> UnlockedIdentity:
    """Identities depend on the name only, so they are made once per process."""
    return UnlockedIdentity.generate(rng=DeterministicRng(f"sim-identity-{name}"), now=NOW_MS)


class Trace:
    """A running digest of everything that happened, with a few counters."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.lines = 0

    def note(self, who: str, what: str) -> None:
        line = f"{trio.current_time():.6f} {who} {what}\n"
        self._hash.update(line.encode())
        self.lines += 1

    def digest(self) -> str:
        return self._hash.hexdigest()


@dataclass(eq=False)
class SimPeer:
    """One simulated device: its disk (identity, store) and its current incarnation."""

    name: str
    identity: UnlockedIdentity
    store: MemoryStore = field(default_factory=MemoryStore)
    node: Node | None = None
    incarnation: int = 0
    #: ``GroupMessage`` events the app saw, per event id, over all incarnations.
    deliveries: Counter[bytes] = field(default_factory=Counter)
    #: Texts the app was shown, per event id (private groups: only once readable).
    texts: dict[bytes, str] = field(default_factory=dict)
    #: ``MessageReceived`` events (direct messages, our own copies too), per message id.
    dms: Counter[bytes] = field(default_factory=Counter)
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def account(self) -> bytes:
        return self.identity.account.account_key

    @property
    def peer_id(self) -> str:
        return peer_id_from_ed25519(self.identity.device.public_key)

    @property
    def up(self) -> bool:
        return self.node is not None

    @classmethod
    def named(cls, name: str) -> SimPeer:
        return cls(name=name, identity=_identity(name))

    @classmethod
    def linked(cls, name: str, first: SimPeer) -> SimPeer:
        """Another device of ``first``'s account (as ``devices link`` would make it)."""
        account = first.identity.account
        rng = DeterministicRng(f"sim-device-{name}")
        device = Device.generate(account, rng, now=NOW_MS)
        identity = UnlockedIdentity(account=account, device=device, local_key=rng(32))
        return cls(name=name, identity=identity)


class World:
    """Starts, crashes and restarts the peers of one run (all in one nursery)."""

    def __init__(self, *, hub: MemoryHub, nursery: trio.Nursery, home: Path, seed: int) -> None:
        self.hub = hub
        self.trace = Trace()
        self._nursery = nursery
        self._home = home
        self._seed = seed

    def _opener(self) -> Callable[[Device], AbstractAsyncContextManager[Network]]:
        hub = self.hub

        def open_network(device: Device) -> AbstractAsyncContextManager[Network]:
            return hub.open_node(peer_id_from_ed25519(device.public_key))

        return open_network

    async def start(self, peer: SimPeer) -> Node:
        """Run a new incarnation of ``peer`` from its store; returns once it is published."""
        if peer.up:
            raise RuntimeError(f"{peer.name} is already running")
        peer.incarnation += 1
        peer.stopped = trio.Event()
        ready = trio.Event()
        self._nursery.start_soon(self._run, peer, ready)
        await ready.wait()
        node = peer.node
        assert node is not None
        return node

    async def _run(self, peer: SimPeer, ready: trio.Event) -> None:
        config = NodeConfig(
            home=self._home / peer.name, delivery=SIM_DELIVERY, rpc=False, event_buffer=1 << 16
        )
        tag = f"{self._seed}-{peer.name}-{peer.incarnation}"
        node = Node(
            config,
            peer.identity,
            network=self._opener(),
            store=peer.store,
            clock=sim_clock_ms,
            rng=DeterministicRng(f"sim-node-{tag}"),
            seed=int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "big"),
        )
        try:
            with trio.CancelScope() as scope:
                peer.scope = scope
                async with node, trio.open_nursery() as nursery:
                    stream = node.events()
                    nursery.start_soon(self._record, peer, stream)
                    await node.wait_published()
                    peer.node = node
                    self.trace.note(peer.name, f"up #{peer.incarnation}")
                    ready.set()
                    await trio.sleep_forever()
        finally:
            peer.node = None
            peer.scope = None
            ready.set()
            peer.stopped.set()

    async def _record(self, peer: SimPeer, stream: EventStream) -> None:
        async with stream:
            async for event in stream:
                self._observe(peer, event)

    def _observe(self, peer: SimPeer, event: Event) -> None:
        self.trace.note(peer.name, repr(event))
        if isinstance(event, MessageReceived):
            peer.dms[event.message_id] += 1
        if isinstance(event, GroupMessage):
            peer.deliveries[event.event_id] += 1
            if event.text:
                peer.texts[event.event_id] = event.text

    async def crash(self, peer: SimPeer) -> None:
        """Kill ``peer`` without a clean close: it drops off the network at once (its
        connections break), then its tasks are cancelled; only its store survives."""
        if peer.scope is None:
            return
        self.trace.note(peer.name, "crash")
        self.hub.set_down(peer.peer_id)
        peer.scope.cancel()
        await peer.stopped.wait()
        self.hub.set_up(peer.peer_id)
