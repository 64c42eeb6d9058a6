"""Real py-libp2p hosts on 127.0.0.1: streams, Noise-only, DHT, gossipsub, shutdown."""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from p2pchat.errors import (
    ClosedError,
    LocalProtocolError,
    NetworkError,
    PeerUnreachableError,
    WireError,
)
from p2pchat.net.base import FramedStream, Network, PeerConnected, PeerDisconnected
from p2pchat.net.config import NetConfig, RetryConfig
from p2pchat.net.identity import seed_to_peer_id
from p2pchat.net.libp2p_host import Libp2pNetwork, open_libp2p_network

pytestmark = pytest.mark.integration

PROTO = "/p2pchat/test/1"
#: The NAT services (AutoNAT, relays, hole punching; on by default) are tested on their own
#: (test_net_nat, test_net_relay, test_nat_traversal); off here, so that these tests see
#: only the connections and events they make, and stay cheap.
NO_NAT = {"autonat": False, "relay_hop": False, "relay_client": False}
LOOPBACK = NetConfig(
    listen_hosts=("127.0.0.1",),
    port=0,
    dial_timeout=5,
    dht_retry=RetryConfig(attempt_timeout=5, attempts=3, base_delay=0.1),
    autonat=False,
    relay_hop=False,
    relay_client=False,
)


def seed(i: int) -> bytes:
    return bytes([0x40 + i]) * 32


@asynccontextmanager
async def hosts(n: int, *, first: int = 0, **config: object) -> AsyncIterator[list[Libp2pNetwork]]:
    async with AsyncExitStack() as stack:
        nets = []
        for i in range(n):
            cfg = NetConfig(**{**_fields(LOOPBACK), **config})  # type: ignore[arg-type]
            nets.append(
                await stack.enter_async_context(
                    open_libp2p_network(seed(first + i), cfg, jitter=random.Random(first + i))
                )
            )
        yield nets


def _fields(config: NetConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


async def wait_for(condition: Callable[[], bool], *, poll: float = 0.05) -> None:
    """Poll a condition (the caller bounds the wait with fail_after).

    Polling, because py-libp2p offers no event for mesh membership.
    """
    while not condition():  # noqa: ASYNC110
        await trio.sleep(poll)


async def echo(stream: FramedStream) -> None:
    while (frame := await stream.read_frame(4096)) is not None:
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


async def test_framed_echo_both_ways_and_events() -> None:
    with trio.fail_after(30):
        async with hosts(2) as (a, b):
            typed: Network = a
            assert typed.peer_id == seed_to_peer_id(seed(0))
            feed = a.events()
            for net in (a, b):
                net.set_stream_handler(PROTO, echo)
            await a.connect(b.peer_id, b.listen_addrs)
            assert await anext(feed) == PeerConnected(b.peer_id)
            assert a.connected_peers() == [b.peer_id]
            for src, dst in ((a, b), (b, a)):
                stream = await src.open_stream(dst.peer_id, PROTO)
                assert stream.remote_peer == dst.peer_id
                for payload in (b"", b"x" * 3000, b"from " + src.peer_id.encode()):
                    await stream.write_frame(payload)
                    assert await stream.read_frame(4096) == payload
                await stream.close()
                assert await stream.read_frame(4096) is None


async def test_handler_errors_reset_and_oversized_frames_are_refused() -> None:
    async def strict(stream: FramedStream) -> None:
        await stream.read_frame(8)

    with trio.fail_after(30):
        async with hosts(2) as (a, b):
            b.set_stream_handler(PROTO, strict)
            await a.connect(b.peer_id, b.listen_addrs)
            stream = await a.open_stream(b.peer_id, PROTO)
            await stream.write_frame(b"longer than eight bytes")
            with pytest.raises(NetworkError):
                await stream.read_frame(100)
            with pytest.raises(NetworkError, match="stream open"):
                await a.open_stream(b.peer_id, "/p2pchat/unknown/1")
            b.set_stream_handler(PROTO, echo)
            stream = await a.open_stream(b.peer_id, PROTO)
            await stream.write_frame(b"y" * 100)
            with pytest.raises(WireError):
                await stream.read_frame(99)
            await stream.reset()


async def test_plaintext_dial_is_refused() -> None:
    """A host offering only plaintext cannot connect; the same host with Noise can."""
    from libp2p import new_host
    from libp2p.abc import ISecureTransport
    from libp2p.crypto.x25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.exceptions import SwarmException
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from multiaddr import Multiaddr

    from p2pchat.net.libp2p_host import key_pair_from_seed

    def raw_host(sec_opt: dict[TProtocol, ISecureTransport]) -> object:
        return new_host(
            key_pair=key_pair,
            sec_opt=sec_opt,
            listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")],
        )

    key_pair = key_pair_from_seed(seed(9))
    plain = raw_host({TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)})
    noise = raw_host({NOISE_ID: NoiseTransport(key_pair, create_new_key_pair().private_key)})
    with trio.fail_after(30):
        async with hosts(1) as (ours,):
            target = info_from_p2p_addr(Multiaddr(ours.listen_addrs[0]))
            for host, refused in ((plain, True), (noise, False)):
                async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):  # type: ignore[attr-defined]
                    try:
                        if refused:
                            with pytest.raises(SwarmException):
                                await host.connect(target)  # type: ignore[attr-defined]
                            assert ours.connected_peers() == []
                        else:
                            await host.connect(target)  # type: ignore[attr-defined]
                            assert ours.connected_peers() == [seed_to_peer_id(seed(9))]
                    finally:
                        await host.close()  # type: ignore[attr-defined]


async def test_four_hosts_find_each_other_only_through_the_dht() -> None:
    with trio.fail_after(45):
        async with hosts(1) as (boot,):
            bootstrap = (boot.listen_addrs[0],)
            async with hosts(3, first=1, bootstrap=bootstrap) as (b, c, d):
                # The test gives b, c and d only the bootstrap address; whatever else they
                # learn (the bootstrap refresh may already connect them) is the DHT's.
                for net in (b, c, d):
                    assert boot.peer_id in net.connected_peers()
                d.set_stream_handler(PROTO, echo)
                found = await b.dht.find_peer(d.peer_id)
                assert found is not None
                d_port = d.listen_addrs[0].split("/tcp/")[1].split("/")[0]
                assert any(f"/tcp/{d_port}" in addr for addr in found.addrs)
                stream = await b.open_stream(d.peer_id, PROTO)
                await stream.write_frame(b"found you through the DHT")
                assert await stream.read_frame(100) == b"found you through the DHT"
                await stream.close()

                await d.dht.provide("/p2pchat/test/service")
                providers = await c.dht.find_providers("/p2pchat/test/service")
                assert d.peer_id in [p.peer_id for p in providers]
                stream = await c.open_stream(d.peer_id, PROTO)
                await stream.write_frame(b"and through a provider record")
                assert await stream.read_frame(100) == b"and through a provider record"
                await stream.close()


async def test_dht_strict_validation_keeps_the_newest_valid_record() -> None:
    with trio.fail_after(45):
        async with hosts(1) as (boot,):
            boot.dht.register_namespace("rec", SeqValidator())
            async with hosts(4, first=1, bootstrap=(boot.listen_addrs[0],)) as (b, c, d, lax):
                for net in (b, c, d):
                    net.dht.register_namespace("rec", SeqValidator())
                lax.dht.register_namespace("rec", AcceptAll())
                with pytest.raises(LocalProtocolError):
                    await b.dht.put("/other/k", b"1:x")
                with pytest.raises(LocalProtocolError):
                    await b.dht.put("/rec/k", b"not a record")
                await b.dht.put("/rec/k", b"1:old")
                await c.dht.put("/rec/k", b"2:new")
                await lax.dht.put("/rec/k", b"9:bad")
                assert await d.dht.get("/rec/k") == [b"2:new"]
                assert await boot.dht.get("/rec/k") == [b"2:new"]
                with pytest.raises(LocalProtocolError):
                    await d.dht.get("/unregistered/k")


async def test_gossipsub_delivers_to_subscribers_after_validation() -> None:
    with trio.fail_after(45):
        async with hosts(3) as (a, b, c):
            await a.connect(b.peer_id, b.listen_addrs)
            await b.connect(c.peer_id, c.listen_addrs)
            c.pubsub.set_validator("room", lambda origin, data: not data.startswith(b"spam"))
            subs = [await net.pubsub.subscribe("room") for net in (a, b, c)]
            with pytest.raises(LocalProtocolError):
                await a.pubsub.subscribe("room")
            await wait_for(
                lambda: (
                    b.peer_id in a.pubsub.mesh_peers("room")
                    and c.peer_id in b.pubsub.mesh_peers("room")
                )
            )
            await a.pubsub.publish("room", b"spam first")
            await a.pubsub.publish("room", b"hello room")
            assert await subs[1].receive() == (a.peer_id, b"spam first")
            assert await subs[1].receive() == (a.peer_id, b"hello room")
            assert await subs[2].receive() == (a.peer_id, b"hello room")
            for sub in subs:
                await sub.aclose()


async def test_clean_shutdown_leaves_no_warnings_and_refuses_use() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with trio.fail_after(30):
            async with hosts(2) as (a, b):
                b.set_stream_handler(PROTO, echo)
                await a.connect(b.peer_id, b.listen_addrs)
                stream = await a.open_stream(b.peer_id, PROTO)
                await stream.write_frame(b"bye")
                assert await stream.read_frame(10) == b"bye"
                feed = a.events()
        gc.collect()
    assert [str(w.message) for w in caught] == []
    # b closed first (the exit stack unwinds in reverse), then a's feed ended.
    assert [event async for event in feed] == [PeerDisconnected(b.peer_id)]
    with pytest.raises(ClosedError):
        await a.open_stream(b.peer_id, PROTO)


async def test_the_device_seed_never_shows_in_reprs_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = bytes(range(32))
    texts: list[str] = []
    with trio.fail_after(30):
        async with open_libp2p_network(secret, LOOPBACK, jitter=random.Random(0)) as net:
            texts += [repr(net), repr(net.dht), repr(net.pubsub), str(net.listen_addrs)]
            with pytest.raises(PeerUnreachableError) as info:
                await net.connect(seed_to_peer_id(seed(6)), ["/ip4/127.0.0.1/tcp/1"])
            texts += [str(info.value), repr(info.value)]
    texts.append(caplog.text)
    for text in texts:
        assert secret.hex() not in text
        assert repr(secret)[2:-1] not in text


class HandlerBug(Exception):
    pass


async def test_errors_leave_the_async_with_unchanged() -> None:
    """py-libp2p's service managers must neither swallow nor bury our exceptions."""
    with trio.fail_after(30):
        with pytest.raises(KeyError, match="from the body"):
            async with hosts(1):
                raise KeyError("from the body")

        async def buggy(stream: FramedStream) -> None:
            raise HandlerBug("a bug in a handler")

        async def run_until_the_bug_surfaces() -> None:
            async with hosts(2) as (a, b):
                b.set_stream_handler(PROTO, buggy)
                await a.connect(b.peer_id, b.listen_addrs)
                await a.open_stream(b.peer_id, PROTO)
                await trio.sleep_forever()  # only the handler's bug can end this block

        with pytest.raises(HandlerBug):
            await run_until_the_bug_surfaces()


async def test_a_client_mode_node_uses_the_dht_without_serving_it() -> None:
    from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL

    with trio.fail_after(30):
        async with hosts(2) as (server, other):
            bootstrap = (server.listen_addrs[0],)
            await other.connect(server.peer_id, server.listen_addrs)
            await other.dht.add_peer(server.peer_id)
            async with hosts(1, first=2, bootstrap=bootstrap, dht_mode="client") as (client,):
                for net in (server, other, client):
                    net.dht.register_namespace("rec", SeqValidator())
                await client.dht.put("/rec/c", b"1:from a client")
                assert await other.dht.get("/rec/c") == [b"1:from a client"]
                found = await client.dht.find_peer(other.peer_id)
                assert found is not None
                with pytest.raises(NetworkError):  # a client does not speak kad inbound
                    await server.open_stream(client.peer_id, str(KAD_PROTOCOL))


async def test_a_node_starts_offline_when_its_bootstrap_peer_is_down() -> None:
    dead = f"/ip4/127.0.0.1/tcp/1/p2p/{seed_to_peer_id(seed(7))}"
    with trio.fail_after(30):
        async with hosts(1, first=3, bootstrap=(dead,)) as (net,):
            assert net.connected_peers() == []
            assert net.listen_addrs


async def test_a_fixed_port_in_use_is_refused_before_starting() -> None:
    import socket

    from p2pchat.errors import NetworkError
    from p2pchat.net.libp2p_host import open_libp2p_network

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = NetConfig(listen_hosts=("127.0.0.1",), port=port)
        with trio.fail_after(10), pytest.raises(NetworkError, match="another node"):
            async with open_libp2p_network(bytes(32), config, jitter=random.Random(0)):
                pass


async def test_garbage_on_the_pubsub_protocol_does_not_take_the_node_down() -> None:
    """py-libp2p's pubsub reader lets a protobuf DecodeError escape; unguarded, four bytes
    from any peer stopped the whole host. Now only that stream is dropped."""
    with trio.fail_after(45):
        async with hosts(3) as (a, b, c):
            await a.connect(b.peer_id, b.listen_addrs)
            await c.connect(b.peer_id, b.listen_addrs)
            subs = [await net.pubsub.subscribe("room") for net in (a, b)]
            await wait_for(lambda: b.peer_id in a.pubsub.mesh_peers("room"))
            attack = await c.open_stream(b.peer_id, "/meshsub/1.1.0")
            await attack.write_frame(b"\xff\xff\xff\xff")
            with contextlib.suppress(NetworkError, WireError):
                # b drops the stream; a crashed b would not answer anything after this
                await attack.read_frame(1024)
            await a.pubsub.publish("room", b"still here?")
            assert await subs[1].receive() == (a.peer_id, b"still here?")
            for sub in subs:
                await sub.aclose()


async def test_a_reset_in_a_cancelled_scope_still_reaches_the_peer() -> None:
    # Callers reset streams in `except BaseException:` blocks, often because they were
    # cancelled: the reset must still be sent, or the peer's reader waits for its deadline.
    outcome: list[BaseException | bytes | None] = []
    ended = trio.Event()

    async def reader(stream: FramedStream) -> None:
        try:
            outcome.append(await stream.read_frame(4096))
            outcome.append(await stream.read_frame(4096))
        except NetworkError as exc:
            outcome.append(exc)
        finally:
            ended.set()

    with trio.fail_after(20):
        async with hosts(2) as (a, b):
            b.set_stream_handler(PROTO, reader)
            await a.connect(b.peer_id, b.listen_addrs)
            stream = await a.open_stream(b.peer_id, PROTO)
            await stream.write_frame(b"first")
            await wait_for(lambda: bool(outcome))
            with trio.CancelScope() as scope:
                scope.cancel()
                await stream.reset()
            with trio.fail_after(5):  # far below the stream's idle deadline
                await ended.wait()
    assert outcome[0] == b"first"
    assert len(outcome) == 2
    assert outcome[1] is None or isinstance(outcome[1], NetworkError)
