"""Inbound connection slots on real hosts (127.0.0.1): py-libp2p 0.8.1 held a slot per
inbound connection until the node stopped, so after 120 inbound connections in total a
node refused every new one (issue 12). Also: per-IP inbound limits, protection tags."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchat.config import NodeConfig
from p2pchat.net.config import NetConfig
from p2pchat.node import Node

from ._raw_dial import raw_connection
from .test_net_libp2p import NO_NAT, PROTO, echo, hosts, wait_for
from .test_node_libp2p import FAST, address, identity, received, started

pytestmark = pytest.mark.integration


def node_config(home: Path, bootstrap: tuple[str, ...] = (), **net: object) -> NodeConfig:
    net = {**NO_NAT, **net}  # hundreds of connections: no AutoNAT round per peer
    loopback = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap, **net)  # type: ignore[arg-type]
    return NodeConfig(home=home, net=loopback, delivery=FAST, rpc=False)


async def _one_cycle(addr: str, peer_id: str) -> None:
    async with raw_connection(addr, peer_id):
        pass


async def _dm_arrives(tmp_path: Path, server: Node, server_events: object) -> None:
    """A new peer (a real node) connects to ``server`` and its DM arrives."""
    async with started(Node(node_config(tmp_path / "late", (address(server),)), identity())) as (
        late,
        _,
    ):
        await late.wait_published()
        await server.wait_published()
        await late.send_dm(server.account_key, "still accepting")
        await server_events.wait(received("still accepting"))  # type: ignore[attr-defined]


async def test_500_sequential_connections_then_a_new_peer_connects_and_a_dm_arrives(
    tmp_path: Path,
) -> None:
    # Closed connections linger for a moment on the server: room for them from 127.0.0.1.
    home = tmp_path / "s"
    with trio.fail_after(60):
        async with started(Node(node_config(home, max_inbound_per_ip=64), identity())) as (
            server,
            events,
        ):
            addr, pid = server.listen_addrs[0], server.peer_id

            async def lane() -> None:  # sequential; four lanes only to use the time well
                for _ in range(125):
                    await _one_cycle(addr, pid)

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(lane)
            await _dm_arrives(tmp_path, server, events)


async def test_a_burst_of_300_connections_leaves_the_node_accepting(tmp_path: Path) -> None:
    # No per-IP limit here: the burst must reach the slots (all come from 127.0.0.1).
    home = tmp_path / "s"
    with trio.fail_after(60):
        async with started(Node(node_config(home, max_inbound_per_ip=300), identity())) as (
            server,
            events,
        ):
            addr, pid = server.listen_addrs[0], server.peer_id

            async def attempt() -> None:
                try:
                    async with raw_connection(addr, pid):
                        await trio.sleep(0.5)  # all 300 are open (or refused) at once
                except Exception:
                    pass

            async with trio.open_nursery() as nursery:
                for _ in range(300):
                    nursery.start_soon(attempt)
            await _one_cycle(addr, pid)
            await _dm_arrives(tmp_path, server, events)


async def test_inbound_connections_from_one_ip_are_limited() -> None:
    with trio.fail_after(30):
        async with hosts(1, max_inbound_per_ip=3) as (server,):
            addr, pid = server.listen_addrs[0], server.peer_id
            async with (
                raw_connection(addr, pid),
                raw_connection(addr, pid),
                raw_connection(addr, pid),
            ):
                with pytest.raises(Exception):  # noqa: B017,PT011 - closed during Noise
                    await _one_cycle(addr, pid)
                assert server.statistics()["inbound_refused_ip"] == 1
            # Closed connections give their slots back.
            await wait_for(lambda: server.statistics()["connections"] == 0)
            await _one_cycle(addr, pid)


async def test_protection_tags_are_kept_per_reason() -> None:
    with trio.fail_after(30):
        async with hosts(2) as (server, peer):
            server.protect(peer.peer_id, "contact")
            server.protect(peer.peer_id, "group")
            assert server.is_protected(peer.peer_id, "group")
            assert server.unprotect(peer.peer_id, "contact") is True  # still a group member
            assert server.unprotect(peer.peer_id, "group") is False
            assert not server.is_protected(peer.peer_id)


async def test_above_the_high_watermark_idle_unprotected_connections_are_trimmed() -> None:
    """The connection manager policy: above ``high_watermark``, connections past their
    grace period are closed down towards ``low_watermark``, except those to protected
    peers (contacts, group members, relays) and those with an open stream. Every
    connection between these hosts carries gossipsub's long-lived streams: py-libp2p's
    own pass counted them as activity and never trimmed anything."""
    watermarks = {"min_connections": 0, "low_watermark": 1, "high_watermark": 4}
    with trio.fail_after(30):
        async with (
            hosts(1, trim_grace_period=0.3, **watermarks) as (server,),
            hosts(5, first=1) as peers,
        ):
            server.set_stream_handler(PROTO, echo)
            contact, busy, *idle = peers
            server.protect(contact.peer_id, "contact")
            for peer in peers[:4]:
                await peer.connect(server.peer_id, server.listen_addrs)
            stream = await busy.open_stream(server.peer_id, PROTO)
            await stream.write_frame(b"still talking")
            assert await stream.read_frame(64) == b"still talking"
            await wait_for(lambda: len(server.connected_peers()) == 4)
            # Past the grace period (and py-libp2p's one-second debounce of pruning), one
            # more connection puts the node above the high watermark: a prune runs.
            await trio.sleep(1.2)
            await idle[-1].connect(server.peer_id, server.listen_addrs)
            kept = {contact.peer_id, busy.peer_id, idle[-1].peer_id}  # the last: in grace
            await wait_for(lambda: set(server.connected_peers()) == kept)
            assert server.statistics()["connections_trimmed"] == 2
            await stream.write_frame(b"untouched")
            assert await stream.read_frame(64) == b"untouched"
