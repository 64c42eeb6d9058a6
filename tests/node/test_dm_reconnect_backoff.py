"""A (re)connection restarts the outbox backoff.

A restarting libp2p node connects to its bootstrap peers before it registers its
protocol handlers, so the attempt a sender makes as soon as the peer connects can be
refused ("protocol not supported"). Before the fix that failure was rescheduled after
the delay grown while the peer was away (up to ``retry_max_ms``, five minutes by
default), so a peer that was back waited that long for its messages. Here the
recipient's network connects to the sender before its node registers any handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.events import DeliveryChanged
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import Network
from p2pchat.net.memory import memory_addr
from p2pchat.node import Node
from p2pchat_crypto.identity import Device
from tests.conftest import DeterministicRng
from tests.node.harness import Peer, hub, mock_clock_ms, new_peer, running, wait_for

#: Long enough a maximum that a grown backoff cannot pass for a restarted one.
GROWING = DeliveryConfig(retry_initial_ms=500, retry_max_ms=600_000, ack_timeout_ms=2_000)


def delivered(peer: Peer, message_id: bytes) -> bool:
    return any(
        isinstance(e, DeliveryChanged) and e.message_id == message_id and e.state == "delivered"
        for e in peer.events
    )


async def wait_retries(peer: Peer, at_least: int, *, within: float = 3_600) -> None:
    """Wait (in mock time) until the node rescheduled ``at_least`` failed attempts."""
    assert peer.node is not None
    with trio.fail_after(within):
        while (await peer.node.statistics())["dm"].get("retries", 0) < at_least:  # noqa: ASYNC110
            await trio.sleep(1)  # node counters have no event: polled, in mock time


async def test_connection_restarts_backoff_after_a_refused_attempt(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path, delivery=GROWING) as a:
        async with running(h, bob, tmp_path):
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: delivered(alice, first.message_id))
        # Bob is away with the session established: the frame waits for his device.
        sent = await a.send_dm(bob.account, "still there?")
        # Away so long that the next delay would be 500 ms * 2**9 = 256 s.
        await wait_retries(alice, 9)

        @asynccontextmanager
        async def bootstrapping(device: Device) -> AsyncIterator[Network]:
            """Like libp2p: connect to the bootstrap peer before any handler exists,
            and hand the network to the node only once alice tried and was refused."""
            async with h.open_node(peer_id_from_ed25519(device.public_key)) as network:
                await network.connect(alice.peer_id, [memory_addr(alice.peer_id)])
                await wait_retries(alice, 10, within=2)  # refused now, not on a timer
                yield network

        config = NodeConfig(home=tmp_path / "bob-again", delivery=GROWING)
        restarted = Node(
            config,
            bob.identity,
            network=bootstrapping,
            store=bob.store,
            clock=mock_clock_ms,
            rng=DeterministicRng("bob-again"),
            seed=2,
        )
        async with restarted:
            await wait_for(lambda: delivered(alice, sent.message_id), within=5)
