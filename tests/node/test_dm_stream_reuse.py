"""Queued messages to one device share a DM stream (one stream open per batch, not per
message), arrive once each and in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import trio

from p2pchat.config import NodeConfig
from p2pchat.dm.service import DM_PROTOCOL
from p2pchat.events import DeliveryChanged
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import FramedStream, Network
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node
from p2pchat_crypto.identity import Device
from tests.conftest import DeterministicRng
from tests.node.harness import FAST, hub, mock_clock_ms, new_peer, running, wait_for

MESSAGES = 10


class CountingNetwork:
    """A memory network that records the protocol of every stream it opens."""

    def __init__(self, inner: Network, opened: list[str]) -> None:
        self._inner = inner
        self._opened = opened

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream:
        self._opened.append(protocol)
        return await self._inner.open_stream(peer_id, protocol)


def counting_opener(
    h: MemoryHub, opened: list[str]
) -> Callable[[Device], AbstractAsyncContextManager[Network]]:
    @asynccontextmanager
    async def open_network(device: Device) -> AsyncIterator[Network]:
        async with h.open_node(peer_id_from_ed25519(device.public_key)) as network:
            yield cast(Network, CountingNetwork(network, opened))

    return open_network


async def test_a_burst_to_one_device_shares_streams_and_keeps_order(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    opened: list[str] = []
    delivered: set[bytes] = set()
    async with hub() as h:
        node = Node(
            NodeConfig(home=tmp_path / "alice", delivery=FAST),
            alice.identity,
            network=counting_opener(h, opened),
            store=alice.store,
            clock=mock_clock_ms,
            rng=DeterministicRng("alice-node"),
            seed=1,
        )
        async with node as a, trio.open_nursery() as nursery:
            stream = a.events()

            async def record() -> None:
                async with stream:
                    async for event in stream:
                        if isinstance(event, DeliveryChanged) and event.state == "delivered":
                            delivered.add(event.message_id)

            nursery.start_soon(record)
            async with running(h, bob, tmp_path) as b:
                first = await a.send_dm(bob.account, "hello")
                await wait_for(lambda: first.message_id in delivered)
                before = opened.count(DM_PROTOCOL)
                # A burst: the outbox takes what is queued, oldest first, in batches.
                queued = [await a.send_dm(bob.account, f"m{i}") for i in range(MESSAGES)]
                await wait_for(lambda: delivered.issuperset(m.message_id for m in queued))
                streams = opened.count(DM_PROTOCOL) - before
                history = await b.history(alice.account, limit=100)
            nursery.cancel_scope.cancel()
    assert 1 <= streams < MESSAGES
    assert [m.message_id for m in history] == [first.message_id] + [m.message_id for m in queued]
