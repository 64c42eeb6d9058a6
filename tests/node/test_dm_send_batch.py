"""The batch path of direct messages: ``send_dms`` and concurrent ``send_dm`` calls are
queued in one transaction, go out in order, and survive a receiver that crashes or a
lost ack without loss or duplicates.

Real nodes on the memory network under the mock clock; the stores count transactions
(and may make each commit take a second, so that what arrives meanwhile forms the next
batch deterministically).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from p2pchat.config import NodeConfig
from p2pchat.dm.service import DM_PROTOCOL, MAX_SEND_BATCH
from p2pchat.errors import ConfigError, PermissionDeniedError
from p2pchat.events import MessageReceived
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import FramedStream, Network, StreamHandler
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node
from p2pchat.storage.records import DeliveryState
from p2pchat_crypto.identity import Device
from tests.conftest import DeterministicRng
from tests.node.harness import FAST, Peer, hub, mock_clock_ms, wait_for
from tests.node.test_dm_pipeline import CountingStore, node, peer, states

MESSAGES = 20


def received(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, MessageReceived)]


def delivered_once(p: Peer, ids: Sequence[bytes]) -> bool:
    return all(states(p.events, i).count("delivered") == 1 for i in ids)


async def test_send_dms_queues_a_batch_in_one_transaction_delivered_in_order(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice_store = CountingStore()
    alice, bob = peer("alice", alice_store), peer("bob", CountingStore(commit_s=1.0))
    async with hub() as h, node(h, alice, tmp_path) as a, node(h, bob, tmp_path) as b:
        first = await a.send_dm(bob.account, "hello")  # the session
        await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        before = alice_store.transactions
        texts = [f"m{i}" for i in range(MESSAGES)]
        sent = await a.send_dms(bob.account, texts)
        queued_in = alice_store.transactions - before
        ids = [m.message_id for m in sent]
        await wait_for(lambda: delivered_once(alice, ids))
        history = await b.history(alice.account, limit=100)

    assert queued_in == 1  # one transaction (one fsync on SQLite) for the whole batch
    assert [m.state for m in sent] == [DeliveryState.QUEUED] * MESSAGES
    assert [m.seq for m in sent] == sorted(m.seq for m in sent)
    assert [m.message_id for m in history] == [first.message_id, *ids]
    assert received(bob.events) == ["hello", *texts]


async def test_concurrent_sends_are_coalesced_and_keep_their_order(
    tmp_path: Path, autojump_clock: object
) -> None:
    # Alice's commits take a second: the sends that arrive during the first one's
    # commit wait for it and then go together, in one transaction.
    alice_store = CountingStore(commit_s=1.0)
    alice, bob = peer("alice", alice_store), peer("bob", CountingStore())
    async with hub() as h, node(h, alice, tmp_path) as a, node(h, bob, tmp_path) as b:
        first = await a.send_dm(bob.account, "hello")
        await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        sent: list[Any] = []
        queue = a._dms._send_queue
        batches_before, items_before = queue.batches, queue.items

        async def send(text: str) -> None:
            sent.append(await a.send_dm(bob.account, text))

        async with trio.open_nursery() as nursery:
            for i in range(MESSAGES):
                nursery.start_soon(send, f"c{i}")
        batches, items = queue.batches - batches_before, queue.items - items_before
        await wait_for(lambda: delivered_once(alice, [m.message_id for m in sent]))
        history = await b.history(alice.account, limit=100)

    assert len(sent) == MESSAGES
    # The first send found nothing running and went alone; the others queued behind it
    # and went together: two transactions (two fsyncs on SQLite) for twenty messages.
    assert (batches, items) == (2, MESSAGES)
    # The recipient stores them in the order the sender queued them (its seq order).
    by_seq = [m.message_id for m in sorted(sent, key=lambda m: m.seq)]
    assert [m.message_id for m in history] == [first.message_id, *by_seq]
    assert sorted(received(bob.events)[1:]) == sorted(f"c{i}" for i in range(MESSAGES))


async def test_a_batch_is_all_or_nothing(tmp_path: Path, autojump_clock: object) -> None:
    alice, bob = peer("alice", CountingStore()), peer("bob", CountingStore())
    async with hub() as h, node(h, alice, tmp_path) as a, node(h, bob, tmp_path):
        first = await a.send_dm(bob.account, "hello")
        with pytest.raises(ConfigError):
            await a.send_dms(bob.account, ["x"] * (MAX_SEND_BATCH + 1))
        assert await a.send_dms(bob.account, []) == []
        await a.block_contact(bob.account)
        with pytest.raises(PermissionDeniedError):
            await a.send_dms(bob.account, ["a", "b"])
        history = await a.history(bob.account, limit=10)
    assert [m.message_id for m in history] == [first.message_id]


class AckLosingNetwork:
    """Inbound DM streams whose replies (acks) are dropped and the stream reset while
    ``lose`` is set: the receiver committed the batch, the sender never hears of it
    (a crash between the commit and the ack)."""

    def __init__(self, inner: Network) -> None:
        self._inner = inner
        self.lose = True
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        if protocol != DM_PROTOCOL:
            self._inner.set_stream_handler(protocol, handler)
            return
        outer = self

        class Losing:
            def __init__(self, stream: FramedStream) -> None:
                self._s = stream
                self.remote_peer = stream.remote_peer
                self.protocol = stream.protocol

            async def read_frame(self, max_size: int) -> bytes | None:
                return await self._s.read_frame(max_size)

            async def write_frame(self, data: bytes) -> None:
                await self.write_frames([data])

            async def write_frames(self, frames: Sequence[bytes]) -> None:
                if outer.lose:
                    outer.lost += len(frames)
                    await self._s.reset()
                    return
                await self._s.write_frames(frames)

            async def close(self) -> None:
                await self._s.close()

            async def reset(self) -> None:
                await self._s.reset()

        async def losing(stream: FramedStream) -> None:
            await handler(cast(FramedStream, Losing(stream)))

        self._inner.set_stream_handler(protocol, losing)


@asynccontextmanager
async def losing_node(
    h: MemoryHub, p: Peer, tmp: Path, networks: list[AckLosingNetwork]
) -> AsyncIterator[Node]:
    def opener(device: Device) -> AbstractAsyncContextManager[Network]:
        @asynccontextmanager
        async def open_network() -> AsyncIterator[Network]:
            async with h.open_node(peer_id_from_ed25519(device.public_key)) as network:
                wrapped = AckLosingNetwork(network)
                networks.append(wrapped)
                yield cast(Network, wrapped)

        return open_network()

    running = Node(
        NodeConfig(home=tmp / p.name, delivery=FAST),
        p.identity,
        network=opener,
        store=p.store,
        clock=mock_clock_ms,
        rng=DeterministicRng(f"{p.name}-node-{trio.current_time()}"),
        seed=1,
    )
    async with running, trio.open_nursery() as nursery:
        stream = running.events()

        async def record() -> None:
            async with stream:
                async for event in stream:
                    p.events.append(event)

        nursery.start_soon(record)
        await running.wait_published()
        yield running
        nursery.cancel_scope.cancel()


async def test_acks_lost_after_the_commit_cause_no_loss_and_no_duplicates(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = peer("alice", CountingStore()), peer("bob", CountingStore())
    networks: list[AckLosingNetwork] = []
    async with hub() as h:
        async with node(h, bob, tmp_path), node(h, alice, tmp_path) as a:
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        async with node(h, alice, tmp_path) as a, losing_node(h, bob, tmp_path, networks) as b:
            texts = [f"m{i}" for i in range(MESSAGES)]
            sent = await a.send_dms(bob.account, texts)
            ids = [m.message_id for m in sent]
            # Bob stores the batch, but every ack is lost (and the stream reset, so each
            # attempt gets a batch further): alice retries the same frames.
            await wait_for(lambda: len(received(bob.events)) == MESSAGES + 1, within=900)
            await wait_for(lambda: a._dms.stats.get("retries", 0) >= 1)
            assert not any("delivered" in states(alice.events, i) for i in ids)
            networks[-1].lose = False
            await wait_for(lambda: delivered_once(alice, ids))
            history = await b.history(alice.account, limit=100)
            duplicates = b._dms.stats.get("duplicates", 0)

    assert networks[-1].lost >= 1
    assert duplicates >= 1  # the retried frames were recognised, re-acknowledged
    assert [m.message_id for m in history] == [first.message_id, *ids]
    assert received(bob.events) == ["hello", *texts]  # each shown once


async def test_a_receiver_that_crashes_before_committing_loses_nothing(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Frames written to a receiver that reads them and dies before its commit (never
    acknowledged) are retried, same ciphertext, in order, once it is back; a sender
    restarted between its commit and the write sends them from its stored outbox."""
    alice, bob = peer("alice", CountingStore()), peer("bob", CountingStore())
    async with hub() as h:
        async with node(h, bob, tmp_path), node(h, alice, tmp_path) as a:
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        async with node(h, bob, tmp_path, deaf=True), node(h, alice, tmp_path) as a:
            texts = [f"m{i}" for i in range(MESSAGES)]
            sent = await a.send_dms(bob.account, texts)
            ids = [m.message_id for m in sent]
            await wait_for(lambda: "sent" in states(alice.events, ids[0]))
            await wait_for(lambda: a._dms.stats.get("retries", 0) >= 1)  # no ack came
        # Alice restarted too (only her store is kept): the outbox still holds them all.
        async with node(h, bob, tmp_path) as b, node(h, alice, tmp_path):
            await wait_for(lambda: delivered_once(alice, ids))
            history = await b.history(alice.account, limit=100)

    assert [m.message_id for m in history] == [first.message_id, *ids]
    assert received(bob.events) == ["hello", *texts]
