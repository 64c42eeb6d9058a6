"""The memory network: streams, DHT, pubsub, events and faults, under trio's MockClock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from trio.testing import MockClock

from p2pchat.errors import (
    ClosedError,
    LocalProtocolError,
    NetworkError,
    PeerUnreachableError,
    WireError,
)
from p2pchat.net.base import (
    FramedStream,
    Network,
    PeerConnected,
    PeerDisconnected,
    PeerDiscovered,
    PeerInfo,
)
from p2pchat.net.identity import seed_to_peer_id
from p2pchat.net.memory import LinkFaults, MemoryHub, MemoryNetwork, open_memory_hub

PROTO = "/p2pchat/test/1"
PEERS = [seed_to_peer_id(bytes([i + 1]) * 32) for i in range(4)]


@asynccontextmanager
async def network(
    n: int, *, seed: int = 1, **node_options: int
) -> AsyncIterator[tuple[MemoryHub, list[MemoryNetwork]]]:
    async with open_memory_hub(rng=random.Random(seed)) as hub, AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(hub.open_node(PEERS[i], **node_options))
            for i in range(n)
        ]
        yield hub, nodes


async def echo(stream: FramedStream) -> None:
    while (frame := await stream.read_frame(1024)) is not None:
        await stream.write_frame(frame)


class SeqValidator:
    """Records are ``b"<seq>:<text>"``; the highest seq wins; ``bad`` is invalid."""

    def validate(self, key: str, value: bytes) -> bool:
        head, sep, _ = value.partition(b":")
        return bool(sep) and head.isdigit() and b"bad" not in value

    def select(self, key: str, values: Sequence[bytes]) -> int:
        seqs = [int(v.partition(b":")[0]) for v in values]
        return seqs.index(max(seqs))


class AcceptAll:
    def validate(self, key: str, value: bytes) -> bool:
        return True

    def select(self, key: str, values: Sequence[bytes]) -> int:
        return 0


async def test_memory_network_satisfies_the_interface(
    autojump_clock: MockClock,
) -> None:
    async with network(1) as (_, (a,)):
        typed: Network = a  # mypy checks the structural match
        assert typed.listen_addrs == [f"/memory/{a.peer_id}"]
        assert isinstance(await a.pubsub.subscribe("t"), object)


async def test_framed_echo_both_ways_then_clean_eof(autojump_clock: MockClock) -> None:
    async with network(2) as (_, (a, b)):
        a.set_stream_handler(PROTO, echo)
        b.set_stream_handler(PROTO, echo)
        await a.connect(b.peer_id, b.listen_addrs)
        for src, dst in ((a, b), (b, a)):
            stream = await src.open_stream(dst.peer_id, PROTO)
            assert stream.remote_peer == dst.peer_id
            await stream.write_frame(b"")
            await stream.write_frame(b"hello " + dst.peer_id.encode())
            assert await stream.read_frame(1024) == b""
            assert await stream.read_frame(1024) == b"hello " + dst.peer_id.encode()
            await stream.close()
            assert await stream.read_frame(1024) is None
            with pytest.raises(ClosedError):
                await stream.write_frame(b"after close")


async def test_reset_reaches_the_peer_and_blocks_local_use(
    autojump_clock: MockClock,
) -> None:
    seen: list[BaseException] = []
    done = trio.Event()

    async def reader(stream: FramedStream) -> None:
        try:
            await stream.read_frame(1024)
        except NetworkError as exc:
            seen.append(exc)
            done.set()
            raise

    async with network(2) as (_, (a, b)):
        b.set_stream_handler(PROTO, reader)
        await a.connect(b.peer_id, b.listen_addrs)
        stream = await a.open_stream(b.peer_id, PROTO)
        await trio.sleep(0.1)
        await stream.reset()
        await done.wait()
        assert isinstance(seen[0], NetworkError)
        with pytest.raises(ClosedError):
            await stream.read_frame(10)
        with pytest.raises(ClosedError):
            await stream.write_frame(b"x")


async def test_handler_return_closes_and_oversized_frame_is_refused(
    autojump_clock: MockClock,
) -> None:
    async def say_big_then_return(stream: FramedStream) -> None:
        await stream.write_frame(b"x" * 100)

    async with network(2) as (_, (a, b)):
        b.set_stream_handler(PROTO, say_big_then_return)
        await a.connect(b.peer_id, b.listen_addrs)
        stream = await a.open_stream(b.peer_id, PROTO)
        with pytest.raises(WireError) as info:
            await stream.read_frame(99)
        assert info.value.reason == "frame-too-large"
        stream = await a.open_stream(b.peer_id, PROTO)
        assert await stream.read_frame(100) == b"x" * 100
        assert await stream.read_frame(100) is None


async def test_open_stream_needs_a_known_address_and_a_handler(
    autojump_clock: MockClock,
) -> None:
    async with network(2) as (_, (a, b)):
        with pytest.raises(PeerUnreachableError):
            await a.open_stream(b.peer_id, PROTO)
        with pytest.raises(PeerUnreachableError):
            await a.connect(b.peer_id, ["/ip4/127.0.0.1/tcp/1"])
        await a.connect(b.peer_id, b.listen_addrs)
        with pytest.raises(NetworkError, match="protocol"):
            await a.open_stream(b.peer_id, PROTO)
        # The inbound side learned the dialer's address from the connection.
        b.set_stream_handler(PROTO, echo)
        a.set_stream_handler(PROTO, echo)
        back = await b.open_stream(a.peer_id, PROTO)
        await back.close()


async def test_events_report_connections_discovery_and_end_on_close(
    autojump_clock: MockClock,
) -> None:
    async with open_memory_hub(rng=random.Random(1)) as hub:
        async with hub.open_node(PEERS[0]) as a:
            events = a.events()
            async with hub.open_node(PEERS[1]) as b:
                hub.announce_nearby([a.peer_id, b.peer_id])
                await a.connect(b.peer_id, b.listen_addrs)
                await a.disconnect(b.peer_id)
            got = [await anext(events) for _ in range(3)]
            assert got == [
                PeerDiscovered(PeerInfo(b.peer_id, tuple(b.listen_addrs))),
                PeerConnected(b.peer_id),
                PeerDisconnected(b.peer_id),
            ]
        assert [event async for event in events] == []
        with pytest.raises(ClosedError):
            await a.connect(b.peer_id, b.listen_addrs)


async def test_full_event_feed_drops_and_counts(autojump_clock: MockClock) -> None:
    async with network(2, event_buffer=1) as (hub, (a, b)):
        events = a.events()
        await a.connect(b.peer_id, b.listen_addrs)
        await a.disconnect(b.peer_id)
        assert await anext(events) == PeerConnected(b.peer_id)
        assert hub.statistics().events_dropped_full == 1  # b has no open feed: nothing to drop


async def test_dht_strict_validation_and_newest_first(
    autojump_clock: MockClock,
) -> None:
    async with network(3) as (_, (a, b, c)):
        for node in (a, b):
            node.dht.register_namespace("rec", SeqValidator())
        c.dht.register_namespace("rec", AcceptAll())  # a lax (or malicious) node
        with pytest.raises(LocalProtocolError):
            await a.dht.put("/other/k", b"1:x")
        with pytest.raises(LocalProtocolError):
            await a.dht.put("no-namespace", b"1:x")
        with pytest.raises(LocalProtocolError):
            await a.dht.put("/rec/k", b"not a record")
        await a.dht.put("/rec/k", b"1:old")
        await b.dht.put("/rec/k", b"2:new")
        await c.dht.put("/rec/k", b"9:bad")
        assert await a.dht.get("/rec/k") == [b"2:new", b"1:old"]
        assert await c.dht.get("/rec/k") == [b"1:old", b"2:new", b"9:bad"]
        with pytest.raises(LocalProtocolError, match="older"):
            await b.dht.put("/rec/k", b"1:older")
        assert await a.dht.get("/rec/missing") == []


async def test_dht_routing_lets_a_stranger_open_a_stream(
    autojump_clock: MockClock,
) -> None:
    async with network(3) as (_, (a, b, c)):
        c.set_stream_handler(PROTO, echo)
        await c.dht.provide("/svc/echo")
        assert await a.dht.find_providers("/svc/echo") == [
            PeerInfo(c.peer_id, (c.listen_addrs[0],))
        ]
        stream = await a.open_stream(c.peer_id, PROTO)
        await stream.write_frame(b"via provider record")
        assert await stream.read_frame(100) == b"via provider record"
        found = await b.dht.find_peer(c.peer_id)
        assert found is not None
        assert found.peer_id == c.peer_id
        await (await b.open_stream(c.peer_id, PROTO)).close()


async def test_pubsub_reaches_connected_subscribers_after_validation(
    autojump_clock: MockClock,
) -> None:
    async with network(4) as (_, (a, b, c, d)):
        await a.connect(b.peer_id, b.listen_addrs)
        await b.connect(c.peer_id, c.listen_addrs)  # d is not connected to anyone
        subs = {n.peer_id: await n.pubsub.subscribe("t") for n in (a, b, c, d)}
        with pytest.raises(LocalProtocolError):
            await a.pubsub.subscribe("t")
        c.pubsub.set_validator("t", lambda origin, data: not data.startswith(b"spam"))
        await a.pubsub.publish("t", b"spam 1")
        await a.pubsub.publish("t", b"hello")
        assert await subs[a.peer_id].receive() == (a.peer_id, b"spam 1")
        assert await subs[b.peer_id].receive() == (a.peer_id, b"spam 1")
        assert await subs[c.peer_id].receive() == (a.peer_id, b"hello")
        with trio.move_on_after(5) as waited:
            await subs[d.peer_id].receive()
        assert waited.cancelled_caught
        await subs[c.peer_id].aclose()
        with pytest.raises(ClosedError):
            await subs[c.peer_id].receive()
        await a.pubsub.publish("t", b"after unsubscribe")
        assert await subs[b.peer_id].receive() == (a.peer_id, b"hello")
        assert await subs[b.peer_id].receive() == (a.peer_id, b"after unsubscribe")


async def test_full_subscription_queue_drops(autojump_clock: MockClock) -> None:
    async with network(1, subscription_buffer=2) as (hub, (a,)):
        sub = await a.pubsub.subscribe("t")
        for i in range(5):
            await a.pubsub.publish("t", b"%d" % i)
        assert [await sub.receive() for _ in range(2)] == [(a.peer_id, b"0"), (a.peer_id, b"1")]
        assert hub.statistics().gossip_dropped_full == 3


async def test_partition_drops_links_and_heal_allows_redial(
    autojump_clock: MockClock,
) -> None:
    async with network(3) as (hub, (a, b, c)):
        b.set_stream_handler(PROTO, echo)
        await a.connect(b.peer_id, b.listen_addrs)
        stream = await a.open_stream(b.peer_id, PROTO)
        events = a.events()
        hub.partition([a.peer_id, c.peer_id], [b.peer_id])
        assert await anext(events) == PeerDisconnected(b.peer_id)
        with pytest.raises(NetworkError):
            await stream.write_frame(b"x")
        with pytest.raises(PeerUnreachableError):
            await a.connect(b.peer_id, b.listen_addrs)
        assert await a.dht.find_peer(b.peer_id) is None
        await a.connect(c.peer_id, c.listen_addrs)
        hub.heal()
        await a.connect(b.peer_id, b.listen_addrs)
        assert a.connected_peers() == sorted([b.peer_id, c.peer_id])


async def test_node_down_and_up(autojump_clock: MockClock) -> None:
    async with network(2) as (hub, (a, b)):
        await a.connect(b.peer_id, b.listen_addrs)
        hub.set_down(b.peer_id)
        assert a.connected_peers() == []
        with pytest.raises(NetworkError):
            await b.pubsub.publish("t", b"x")
        with pytest.raises(PeerUnreachableError):
            await a.connect(b.peer_id, b.listen_addrs)
        hub.set_up(b.peer_id)
        await a.connect(b.peer_id, b.listen_addrs)
        assert b.connected_peers() == [a.peer_id]


async def _delivered_under_loss(seed: int) -> list[int]:
    async with network(2, seed=seed) as (hub, (a, b)):
        hub.set_default_faults(LinkFaults(loss=0.5))
        hub.set_link_faults(a.peer_id, b.peer_id, LinkFaults(loss=0.5))
        while True:
            try:
                await a.connect(b.peer_id, b.listen_addrs)
                break
            except PeerUnreachableError:
                continue
        sub = await b.pubsub.subscribe("t")
        for i in range(60):
            await a.pubsub.publish("t", b"%d" % i)
        got: list[int] = []
        while (message := sub.receive_nowait()) is not None:
            got.append(int(message[1]))
        return got


async def test_loss_is_seeded_and_reproducible(autojump_clock: MockClock) -> None:
    first = await _delivered_under_loss(3)
    assert first == await _delivered_under_loss(3)
    assert 0 < len(first) < 60
    assert first != await _delivered_under_loss(4)


async def test_latency_delays_streams_in_virtual_time(
    autojump_clock: MockClock,
) -> None:
    async with network(2) as (hub, (a, b)):
        hub.set_link_faults(a.peer_id, b.peer_id, LinkFaults(latency=0.25))
        b.set_stream_handler(PROTO, echo)
        await a.connect(b.peer_id, b.listen_addrs)
        stream = await a.open_stream(b.peer_id, PROTO)
        start = trio.current_time()
        await stream.write_frame(b"ping")
        assert await stream.read_frame(10) == b"ping"
        assert trio.current_time() - start == pytest.approx(0.5)
        sub = await b.pubsub.subscribe("t")
        start = trio.current_time()
        await a.pubsub.publish("t", b"late")
        assert await sub.receive() == (a.peer_id, b"late")
        assert trio.current_time() - start == pytest.approx(0.25)


async def test_duplicate_node_is_refused(autojump_clock: MockClock) -> None:
    async with network(1) as (hub, (a,)):
        with pytest.raises(NetworkError):
            async with hub.open_node(a.peer_id):
                pass


class HandlerBug(Exception):
    pass


async def test_errors_leave_the_async_with_unchanged(autojump_clock: MockClock) -> None:
    with pytest.raises(KeyError, match="from the body"):
        async with network(1):
            raise KeyError("from the body")

    async def buggy(stream: FramedStream) -> None:
        raise HandlerBug("a bug in a handler")

    async def run_until_the_bug_surfaces() -> None:
        async with network(2) as (_, (a, b)):
            b.set_stream_handler(PROTO, buggy)
            await a.connect(b.peer_id, b.listen_addrs)
            await a.open_stream(b.peer_id, PROTO)
            await trio.sleep_forever()  # only the handler's bug can end this block

    with pytest.raises(HandlerBug):
        await run_until_the_bug_surfaces()
