"""A small harness: real Node objects on the in-memory network, under trio's MockClock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2pchat.api.serve import serve_node
from p2pchat.config import BlobConfig, DeliveryConfig, MailboxConfig, NodeConfig
from p2pchat.events import Event
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import Network
from p2pchat.net.memory import MemoryHub, open_memory_hub
from p2pchat.node import Node
from p2pchat.storage.memory import MemoryStore
from p2pchat_crypto.identity import Device
from tests.conftest import NOW_MS, DeterministicRng

FAST = DeliveryConfig(retry_initial_ms=500, retry_max_ms=5_000, ack_timeout_ms=2_000)


def mock_clock_ms() -> int:
    """Wall-clock milliseconds that follow trio's (mock) clock."""
    return NOW_MS + int(trio.current_time() * 1000)


def make_identity(name: str) -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=DeterministicRng(name), now=NOW_MS)


@dataclass
class Peer:
    name: str
    identity: UnlockedIdentity
    store: MemoryStore
    node: Node | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def account(self) -> bytes:
        return self.identity.account.account_key

    @property
    def peer_id(self) -> str:
        return peer_id_from_ed25519(self.identity.device.public_key)


def memory_opener(hub: MemoryHub) -> Callable[[Device], AbstractAsyncContextManager[Network]]:
    def open_network(device: Device) -> AbstractAsyncContextManager[Network]:
        return hub.open_node(peer_id_from_ed25519(device.public_key))

    return open_network


@asynccontextmanager
async def running(
    hub: MemoryHub,
    peer: Peer,
    tmp: Path,
    *,
    delivery: DeliveryConfig = FAST,
    mailbox: MailboxConfig | None = None,
    blobs: BlobConfig | None = None,
    display_name: str | None = None,
) -> AsyncIterator[Node]:
    """Run ``peer`` as a node serving its RPC API, recording its events, until the block exits."""
    config = NodeConfig(
        home=tmp / peer.name,
        delivery=delivery,
        mailbox=mailbox or MailboxConfig(),
        blobs=blobs or BlobConfig(),
        display_name=display_name,
    )
    node = Node(
        config,
        peer.identity,
        network=memory_opener(hub),
        store=peer.store,
        clock=mock_clock_ms,
        rng=DeterministicRng(f"{peer.name}-node-{trio.current_time()}"),
        seed=1,
    )
    api = serve_node(node, rng=DeterministicRng(f"{peer.name}-rpc"))
    # Subscribed before the start, as an embedding app does: what the start delivers
    # (mail from a mailbox, a peer's retry) is recorded too.
    async with node.events() as stream, node, api, trio.open_nursery() as nursery:
        peer.node = node

        async def record() -> None:
            async for event in stream:
                peer.events.append(event)

        nursery.start_soon(record)
        await node.wait_published()
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
            peer.node = None


@asynccontextmanager
async def hub(seed: int = 0) -> AsyncIterator[MemoryHub]:
    async with open_memory_hub(rng=random.Random(seed)) as h:
        yield h


def new_peer(name: str) -> Peer:
    return Peer(name=name, identity=make_identity(name), store=MemoryStore())


async def wait_for(predicate: Callable[[], bool], *, within: float = 60) -> None:
    """Wait until ``predicate()`` holds, failing after ``within`` seconds of *mock* time.

    The tests run under ``MockClock(autojump_threshold=0)``: each check interval costs no
    real time, so this is a bounded wait for a condition, not a sleep.
    """
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - condition on node state, checked in mock time
            await trio.sleep(0.01)
