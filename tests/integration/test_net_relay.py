"""Circuit relay v2 on loopback: a reservation, a relayed dial, a stream end to end."""

from __future__ import annotations

import random

import pytest
import trio

from p2pchat.errors import PeerUnreachableError
from p2pchat.net.base import FramedStream
from p2pchat.net.config import NetConfig
from p2pchat.net.libp2p_host import open_libp2p_network

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
