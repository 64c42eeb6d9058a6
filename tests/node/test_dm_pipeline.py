"""Pipelined direct messages: a window of frames on one stream, one commit and one
signed ack per receiver batch, one sender commit per message (plus one per ack).

The receiver's store makes every commit take a second of (mock) time, so whatever the
sender writes meanwhile is read during the commit and forms the next batch: batching
is deterministic here, not a matter of scheduling luck.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import trio

from p2pchat.config import NodeConfig
from p2pchat.dm.service import DM_PROTOCOL
from p2pchat.events import DeliveryChanged, Event, MessageReceived
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import FramedStream, Network, StreamHandler
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node
from p2pchat.protocol.dm_messages import DmAck
from p2pchat.protocol.envelope import decode_envelope
from p2pchat.storage.base import Transaction, UnitOfWork
from p2pchat.storage.memory import MemoryStore
from p2pchat.storage.records import DeliveryState
from p2pchat_crypto.identity import Device
from tests.conftest import DeterministicRng
from tests.node.harness import FAST, Peer, hub, make_identity, mock_clock_ms, wait_for

MESSAGES = 30
T = TypeVar("T")


class CountingStore(MemoryStore):
    """A memory store that counts transactions and may make each commit slow."""

    def __init__(self, *, commit_s: float = 0.0) -> None:
        super().__init__()
        self.commit_s = commit_s
        self.transactions = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with super().transaction() as tx:
            yield tx
            self.transactions += 1
            await trio.sleep(self.commit_s)

    async def atomically(self, work: UnitOfWork[T]) -> T:
        result = await super().atomically(work)
        self.transactions += 1
        await trio.sleep(self.commit_s)
        return result


class TappedStream:
    """A DM stream that records the frames written on it and may rewrite them."""

    def __init__(
        self, inner: FramedStream, written: list[bytes], rewrite: Callable[[bytes], list[bytes]]
    ) -> None:
        self._inner = inner
        self._written = written
        self._rewrite = rewrite

    @property
    def remote_peer(self) -> str:
        return self._inner.remote_peer

    @property
    def protocol(self) -> str:
        return self._inner.protocol

    async def read_frame(self, max_size: int) -> bytes | None:
        return await self._inner.read_frame(max_size)

    async def write_frame(self, data: bytes) -> None:
        for frame in self._rewrite(data):
            self._written.append(frame)
            await self._inner.write_frame(frame)

    async def write_frames(self, frames: Sequence[bytes]) -> None:
        for data in frames:
            await self.write_frame(data)

    async def close(self) -> None:
        await self._inner.close()

    async def reset(self) -> None:
        await self._inner.reset()


def unchanged(frame: bytes) -> list[bytes]:
    return [frame]


class TappedNetwork:
    """Outbound DM streams rewritten by ``outbound``; inbound ones record our replies
    (or, if ``deaf``, are read and never answered)."""

    def __init__(
        self,
        inner: Network,
        *,
        replies: list[bytes],
        outbound: Callable[[bytes], list[bytes]],
        deaf: bool,
    ) -> None:
        self._inner = inner
        self._replies = replies
        self._outbound = outbound
        self._deaf = deaf
        self.opened = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream:
        stream = await self._inner.open_stream(peer_id, protocol)
        if protocol != DM_PROTOCOL:
            return stream
        self.opened += 1
        return TappedStream(stream, [], self._outbound)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        if protocol != DM_PROTOCOL:
            self._inner.set_stream_handler(protocol, handler)
            return

        async def tapped(stream: FramedStream) -> None:
            await handler(TappedStream(stream, self._replies, unchanged))

        self._inner.set_stream_handler(protocol, swallow if self._deaf else tapped)


@asynccontextmanager
async def node(
    h: MemoryHub,
    peer: Peer,
    tmp: Path,
    *,
    replies: list[bytes] | None = None,
    outbound: Callable[[bytes], list[bytes]] = unchanged,
    deaf: bool = False,
    networks: list[TappedNetwork] | None = None,
) -> AsyncIterator[Node]:
    """Run ``peer`` with a tapped network, recording its events."""

    def opener(device: Device) -> AbstractAsyncContextManager[Network]:
        @asynccontextmanager
        async def open_network() -> AsyncIterator[Network]:
            async with h.open_node(peer_id_from_ed25519(device.public_key)) as network:
                sink = [] if replies is None else replies
                tapped = TappedNetwork(network, replies=sink, outbound=outbound, deaf=deaf)
                if networks is not None:
                    networks.append(tapped)
                yield cast(Network, tapped)

        return open_network()

    config = NodeConfig(home=tmp / peer.name, delivery=FAST)
    running = Node(
        config,
        peer.identity,
        network=opener,
        store=peer.store,
        clock=mock_clock_ms,
        rng=DeterministicRng(f"{peer.name}-node-{trio.current_time()}"),
        seed=1,
    )
    async with running, trio.open_nursery() as nursery:
        stream = running.events()

        async def record() -> None:
            async with stream:
                async for event in stream:
                    peer.events.append(event)

        nursery.start_soon(record)
        await running.wait_published()
        yield running
        nursery.cancel_scope.cancel()


def states(events: list[Event], message_id: bytes) -> list[str]:
    return [
        e.state for e in events if isinstance(e, DeliveryChanged) and e.message_id == message_id
    ]


def acks(frames: list[bytes]) -> list[tuple[bytes, ...]]:
    found = []
    for frame in frames:
        message = decode_envelope(frame, max_size=1 << 20).open()
        assert isinstance(message, DmAck)
        found.append(message.ids)
    return found


def peer(name: str, store: MemoryStore) -> Peer:
    return Peer(name=name, identity=make_identity(name), store=store)


async def test_a_burst_is_committed_and_acknowledged_in_batches(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice_store, bob_store = CountingStore(), CountingStore(commit_s=1.0)
    alice, bob = peer("alice", alice_store), peer("bob", bob_store)
    replies: list[bytes] = []
    async with hub() as h, node(h, alice, tmp_path) as a, node(h, bob, tmp_path, replies=replies):
        first = await a.send_dm(bob.account, "hello")  # sets the session up
        await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        replies.clear()
        alice_before, bob_before = alice_store.transactions, bob_store.transactions

        sent = [await a.send_dm(bob.account, f"m{i}") for i in range(MESSAGES)]
        await wait_for(lambda: all("delivered" in states(alice.events, m.message_id) for m in sent))

        history = await a.history(bob.account, limit=100)
        alice_commits = alice_store.transactions - alice_before
        bob_commits = bob_store.transactions - bob_before

    batches = acks(replies)
    ids = [m.message_id for m in sent]
    # Every message acknowledged once, in order, by far fewer acks than messages. The
    # sends take no mock time, so the outbox sends at most two windows (what was queued
    # when it woke, then the rest, after the first window's acks: a second later), and
    # the receiver splits each in at most two batches (the first frame it read, then
    # all that arrived during that batch's one-second commit).
    assert [i for batch in batches for i in batch] == ids
    assert len(batches) <= 4
    # ...each sent only after the receiver's one commit for its batch.
    assert bob_commits == len(batches)
    # The sender: one commit per message (sent encrypted), one per ack; no `sent` commits.
    assert alice_commits == MESSAGES + len(batches)
    assert all(states(alice.events, i) == ["queued", "sent", "delivered"] for i in ids)
    assert [m.state for m in history[1:]] == [DeliveryState.DELIVERED] * MESSAGES
    texts = [e.text for e in bob.events if isinstance(e, MessageReceived)]
    assert texts == ["hello"] + [f"m{i}" for i in range(MESSAGES)]


class Corrupter:
    """Rewrites the outbound frames of the first DM stream that carries a burst: the
    3rd frame is sent twice (a duplicate) and the 6th with a broken signature."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, frame: bytes) -> list[bytes]:
        self.count += 1
        if self.count == 3:
            return [frame, frame]
        if self.count == 6:
            return [frame[:-1] + bytes([frame[-1] ^ 1])]
        return [frame]


async def test_a_bad_frame_keeps_the_ones_before_it_and_the_rest_are_retried_in_order(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = peer("alice", CountingStore()), peer("bob", CountingStore(commit_s=1.0))
    corrupter = Corrupter()
    async with hub() as h:
        # The session first (bob's bundle is published by then), then the burst.
        async with node(h, bob, tmp_path), node(h, alice, tmp_path) as a:
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        async with node(h, bob, tmp_path) as b, node(h, alice, tmp_path, outbound=corrupter) as a:
            sent = [await a.send_dm(bob.account, f"m{i}") for i in range(10)]
            await wait_for(
                lambda: all("delivered" in states(alice.events, m.message_id) for m in sent)
            )
            history = await b.history(alice.account, limit=100)
            rejected = (await b.statistics())["dm"].get("rejected", 0)

    assert corrupter.count > 10  # the frames after the bad one went out again
    assert rejected == 1
    assert [m.message_id for m in history] == [first.message_id] + [m.message_id for m in sent]
    texts = [e.text for e in bob.events if isinstance(e, MessageReceived)]
    assert texts == ["hello"] + [f"m{i}" for i in range(10)]
    assert all(states(alice.events, m.message_id).count("delivered") == 1 for m in sent)


async def test_a_frame_written_but_never_acknowledged_is_stored_as_sent(
    tmp_path: Path, autojump_clock: object
) -> None:
    """``sent`` is announced at once but stored only when the ack does not come."""
    alice, bob = peer("alice", CountingStore()), peer("bob", CountingStore())
    async with hub() as h:
        async with node(h, bob, tmp_path), node(h, alice, tmp_path) as a:
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: "delivered" in states(alice.events, first.message_id))
        async with node(h, bob, tmp_path, deaf=True), node(h, alice, tmp_path) as a:
            late = await a.send_dm(bob.account, "anyone?")
            await wait_for(lambda: "sent" in states(alice.events, late.message_id))
            stored = await alice.store.get_message(late.message_id)
            assert stored is not None
            assert stored.state is DeliveryState.QUEUED
            await wait_for(lambda: a._dms.stats.get("retries", 0) >= 1)
            stored = await alice.store.get_message(late.message_id)
    assert stored is not None
    assert stored.state is DeliveryState.SENT
    assert states(alice.events, late.message_id) == ["queued", "sent"]


async def swallow(stream: FramedStream) -> None:
    """A DM handler that reads everything and never acknowledges."""
    while await stream.read_frame(1 << 20) is not None:
        pass


async def test_one_stream_serves_messages_sent_one_by_one_and_survives_a_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    """The outbox keeps a DM stream between passes; when the peer restarts, the kept
    stream is dead and a new one carries the next message at once (no backoff)."""
    alice, bob = peer("alice", CountingStore()), peer("bob", CountingStore())
    networks: list[TappedNetwork] = []
    async with hub() as h, node(h, alice, tmp_path, networks=networks) as a:
        async with node(h, bob, tmp_path):
            for i in range(5):
                message = await a.send_dm(bob.account, f"m{i}")
                await wait_for(lambda: "delivered" in states(alice.events, message.message_id))  # noqa: B023
            # One per pass would be 5; the connection that the first open dialed is
            # announced afterwards, which may retire the first stream once.
            assert networks[0].opened <= 2
            before = networks[0].opened
        async with node(h, bob, tmp_path) as b:
            late = await a.send_dm(bob.account, "after the restart")
            await wait_for(lambda: "delivered" in states(alice.events, late.message_id))
            history = await b.history(alice.account, limit=10)
        retries = a._dms.stats.get("retries", 0)
    assert 1 <= networks[0].opened - before <= 2
    assert retries == 0
    assert [m.message_id for m in history][-1] == late.message_id
