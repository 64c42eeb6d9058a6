"""Circuit relay v2 on loopback: a reservation, a relayed dial, a stream end to end."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import trio

from p2pchat.errors import PeerUnreachableError
from p2pchat.net.base import FramedStream
from p2pchat.net.config import NetConfig
from p2pchat.net.libp2p_host import Libp2pNetwork, open_libp2p_network, parse_peer_id

pytestmark = pytest.mark.integration

PROTO = "/p2pchat/test/1"


async def echo(stream: FramedStream) -> None:
    while (frame := await stream.read_frame(1024)) is not None:
        await stream.write_frame(frame)


async def test_a_peer_is_reached_through_a_relay_it_reserved_on() -> None:
    base = NetConfig(listen_hosts=("127.0.0.1",), port=0)

    def config(**changes: bool) -> NetConfig:
        fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
        return NetConfig(**{**fields, **changes})

    with trio.fail_after(30):
        async with (
            open_libp2p_network(
                b"\x21" * 32, config(relay_hop=True), jitter=random.Random(1)
            ) as relay,
            open_libp2p_network(
                b"\x22" * 32, config(relay_client=True), jitter=random.Random(2)
            ) as target,
            open_libp2p_network(
                b"\x23" * 32, config(relay_client=True), jitter=random.Random(3)
            ) as source,
            open_libp2p_network(
                b"\x24" * 32,
                config(relay_client=False, relay_hop=False),
                jitter=random.Random(4),
            ) as plain,
        ):
            assert plain.relay is None
            assert source.relay is not None
            assert target.relay is not None
            target.set_stream_handler(PROTO, echo)
            await source.connect(relay.peer_id, relay.listen_addrs)
            with pytest.raises(PeerUnreachableError):
                await source.relay.dial(relay.listen_addrs[0], target.peer_id)  # no reservation yet

            await target.connect(relay.peer_id, relay.listen_addrs)
            await target.relay.reserve(relay.peer_id)
            await source.relay.dial(relay.listen_addrs[0], target.peer_id)
            assert target.peer_id in source.connected_peers()
            connections = source.host.get_network().get_connections(target.host.get_id())
            assert [
                "/p2p-circuit/" in str(addr)
                for conn in connections
                for addr in conn.get_transport_addresses()
            ] == [True]

            stream = await source.open_stream(target.peer_id, PROTO)
            await stream.write_frame(b"through the relay")
            assert await stream.read_frame(100) == b"through the relay"
            await stream.close()
            assert await stream.read_frame(100) is None


def _relayed(network: Libp2pNetwork, peer_id: str) -> list[bool]:
    """For each open connection to ``peer_id``: does it run through a relay?"""
    conns = network.host.get_network().get_connections(parse_peer_id(peer_id))
    return [
        any("/p2p-circuit" in str(a) for a in c.get_transport_addresses())
        for c in conns
        if not c.is_closed
    ]


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (state of in-process hosts, no event for it) until it holds."""
    while not condition():  # noqa: ASYNC110 - py-libp2p offers no event to wait on
        await trio.sleep(0.02)


async def _echoes(network: Libp2pNetwork, peer_id: str, text: bytes) -> bool:
    stream = await network.open_stream(peer_id, PROTO)
    await stream.write_frame(text)
    echoed = await stream.read_frame(100)
    await stream.close()
    return echoed == text


async def test_the_end_of_a_circuit_leaves_other_circuits_through_the_relay_alone() -> None:
    """py-libp2p 0.8.1's relay closes the streams it finds under a *peer id* when a
    circuit ends, so the end of c's circuit to b also ended a's (docs/networking.md,
    "half-dead circuits"); ours closes only the circuit's own streams."""
    config = NetConfig(
        listen_hosts=("127.0.0.1",),
        port=0,
        autonat=False,
        hole_punching=False,
        relay_ping_interval=0.0,  # the relay alone, without the endpoints' liveness check
    )
    with trio.fail_after(40):
        async with (
            open_libp2p_network(b"\x31" * 32, config, jitter=random.Random(1)) as relay,
            open_libp2p_network(b"\x32" * 32, config, jitter=random.Random(2)) as b,
            open_libp2p_network(b"\x33" * 32, config, jitter=random.Random(3)) as a,
            open_libp2p_network(b"\x34" * 32, config, jitter=random.Random(4)) as c,
        ):
            assert a.relay is not None
            assert b.relay is not None
            assert c.relay is not None
            assert relay.nat is not None
            service = relay.nat.relay_service
            assert service is not None
            for node in (a, b, c):
                node.set_stream_handler(PROTO, echo)
                await node.connect(relay.peer_id, relay.listen_addrs)
            await b.relay.reserve(relay.peer_id)
            await c.relay.dial(relay.listen_addrs[0], b.peer_id)
            await a.relay.dial(relay.listen_addrs[0], b.peer_id)
            assert _relayed(a, b.peer_id) == [True]
            assert await _echoes(a, b.peer_id, b"before")

            assert service.copies_open == 4  # two circuits, two directions each
            await c.disconnect(b.peer_id)
            # The relay has finished with c's circuit (upstream closed a's streams then).
            await wait_for(lambda: service.copies_open == 2 and service.copies_ended == 2)
            assert _relayed(a, b.peer_id) == [True]
            assert _relayed(b, a.peer_id) == [True]
            assert await _echoes(a, b.peer_id, b"after")
            assert await _echoes(b, a.peer_id, b"and back")
