"""AutoNAT dial-back on loopback: a verdict that tells the truth (see p2pchat/net/reachability.py).

Behind real NAT: tests/integration/test_nat_traversal.py.
"""

from __future__ import annotations

import random
import socket

import pytest
import trio
from libp2p.host.autonat.pb.autonat_pb2 import Message
from multiaddr import Multiaddr

from p2pchat.net._dialer import relay_circuits
from p2pchat.net.config import NetConfig
from p2pchat.net.libp2p_host import open_libp2p_network
from p2pchat.net.reachability import Reachability, dialback_addrs

pytestmark = pytest.mark.integration

CONFIG = NetConfig(
    listen_hosts=("127.0.0.1",),
    port=0,
    autonat=True,
    relay_hop=True,
    relay_client=True,
    autonat_interval=3600,
)


def test_dial_back_addresses_are_the_observed_ip_at_the_advertised_ports() -> None:
    advertised = [
        Multiaddr(a).to_bytes()
        for a in (
            "/ip4/10.77.0.10/tcp/4242",
            "/ip4/192.168.1.5/tcp/4242",  # same port: once
            "/ip4/10.77.0.10/tcp/5000/p2p/12D3KooWRJHLUyqSvo34s8xbP6bADuxWheMEVEg6VpaMynaK3fox",
            "/ip4/198.51.100.10/tcp/4242/p2p/12D3KooWRJHLUyqSvo34s8xbP6bADuxWheMEVEg6VpaMynaK3fox"
            "/p2p-circuit",
        )
    ] + [b"\xff garbage"]
    assert [str(a) for a in dialback_addrs(advertised, "203.0.113.7")] == [
        "/ip4/203.0.113.7/tcp/4242",
        "/ip4/203.0.113.7/tcp/5000",
    ]
    assert dialback_addrs(advertised, None) == []
    assert dialback_addrs(advertised, "not an ip") == []


def test_relay_circuits_are_completed_with_the_target() -> None:
    target = "12D3KooWAXmV3ER8K61BRJCf5iSDQUq7uQtXWAQ3Dv48LXa5zqbP"
    relay = "12D3KooWRJHLUyqSvo34s8xbP6bADuxWheMEVEg6VpaMynaK3fox"
    known = [
        "/ip4/10.77.0.10/tcp/4242",
        f"/ip4/198.51.100.10/tcp/4242/p2p/{relay}/p2p-circuit",
        f"/ip4/198.51.100.10/tcp/4242/p2p/{relay}/p2p-circuit/p2p/{target}",
    ]
    assert relay_circuits(target, known) == [
        f"/ip4/198.51.100.10/tcp/4242/p2p/{relay}/p2p-circuit/p2p/{target}"
    ]


async def test_a_dial_back_succeeds_only_where_the_node_really_listens() -> None:
    with trio.fail_after(30):
        async with (
            open_libp2p_network(b"\x41" * 32, CONFIG, jitter=random.Random(1)) as server,
            open_libp2p_network(b"\x42" * 32, CONFIG, jitter=random.Random(2)) as client,
        ):
            await client.connect(server.peer_id, server.listen_addrs)
            assert client.nat is not None
            assert client.nat.tracker is not None
            assert server.nat is not None
            assert server.nat.autonat_server is not None
            autonat = client.nat.autonat_server
            assert autonat is not None
            status, addr = await autonat.query_server(server.host.get_id())
            assert status == Message.OK
            assert addr is not None
            assert str(Multiaddr(addr)) in client.listen_addrs[0]

            # py-libp2p's own server would say OK here too: it reuses the connection.
            with socket.socket() as closed:
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
            nowhere = [Multiaddr(f"/ip4/127.0.0.1/tcp/{port}").to_bytes()]
            status, _ = await autonat.query_server(server.host.get_id(), addrs=nowhere)
            assert status == Message.E_DIAL_ERROR
            assert server.nat.autonat_server.stats == {
                "dialback_requests": 2,
                "dialback_ok": 1,
                "dialback_failed": 1,
            }

            # The tracker asks connected peers and concludes.
            assert await client.nat.tracker.check() is Reachability.PUBLIC
            assert client.statistics()["reachability"] == "public"
            assert client.connection_paths() == {server.peer_id: "direct"}
