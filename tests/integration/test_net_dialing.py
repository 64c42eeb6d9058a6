"""Our dialer on real py-libp2p hosts (127.0.0.1): every usable address in order, a failed
address does not block the peer, we never dial ourselves, and failures say why."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
from multiaddr import Multiaddr

from p2pchat.errors import PeerUnreachableError

from .test_net_libp2p import PROTO, echo, hosts

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    """A port nothing listens on (bound, then released; the kernel does not reuse it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_dead_address_first_does_not_keep_the_peer_unreachable() -> None:
    async with hosts(2) as (a, b):
        b.set_stream_handler(PROTO, echo)
        dead = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
        with trio.fail_after(10):
            await a.connect(b.peer_id, [dead, *b.listen_addrs])
        assert b.peer_id in a.connected_peers()
        assert a.dial_failure(b.peer_id) is None
        assert a.statistics()["addresses_tried"] >= 2


async def test_all_addresses_failing_says_why_and_the_next_dial_is_not_blocked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with hosts(2) as (a, b):
        dead = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
        with (
            caplog.at_level(logging.INFO, logger="p2pchat.net.dial"),
            trio.fail_after(10),
            pytest.raises(PeerUnreachableError) as err,
        ):
            await a.connect(b.peer_id, [dead])
        assert "connection refused" in str(err.value)
        assert dead in str(err.value)
        failure = a.dial_failure(b.peer_id)
        assert failure is not None
        assert failure.reasons == ((dead, "connection refused (no node listens there)"),)
        assert any(
            f"cannot reach peer {b.peer_id}" in r.getMessage() and dead in r.getMessage()
            for r in caplog.records
        )
        # py-libp2p would now block the peer for 60 s (negative cache); we do not.
        with trio.fail_after(10):
            await a.connect(b.peer_id, b.listen_addrs)
        assert b.peer_id in a.connected_peers()
        assert a.dial_failure(b.peer_id) is None


async def test_a_node_never_dials_its_own_address_for_another_peer() -> None:
    async with hosts(2) as (a, b):
        tried = a.statistics()["addresses_tried"]
        with trio.fail_after(10), pytest.raises(PeerUnreachableError, match="no usable address"):
            await a.connect(b.peer_id, a.listen_addrs)  # a stale record pointing at us
        assert a.statistics()["addresses_tried"] == tried
        assert a.statistics()["own_skipped"] >= 1


async def test_opening_a_stream_dials_through_our_dialer() -> None:
    async with hosts(2) as (a, b):
        b.set_stream_handler(PROTO, echo)
        dead = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
        known = [Multiaddr(x.split("/p2p/")[0]) for x in [dead, *b.listen_addrs]]
        a.host.get_peerstore().add_addrs(b.host.get_id(), known, 3600)
        with trio.fail_after(10):
            stream = await a.open_stream(b.peer_id, PROTO)
            await stream.write_frame(b"ping")
            assert await stream.read_frame(64) == b"ping"
            await stream.close()


async def test_loopback_nodes_advertise_loopback_and_wildcard_nodes_do_not() -> None:
    async with hosts(1) as (loop,), hosts(1, first=5, listen_hosts=("0.0.0.0",)) as (wild,):
        assert all("/ip4/127.0.0.1/" in a for a in loop.listen_addrs)
        assert wild.listen_addrs
        for addr in wild.listen_addrs:
            assert "/ip4/0.0.0.0/" not in addr
        if any("/ip4/127." not in a for a in wild.listen_addrs):
            assert not any("/ip4/127." in a for a in wild.listen_addrs)
        # what identify tells peers is the same list
        assert [str(m) for m in wild.host.get_addrs()] == wild.listen_addrs


async def test_a_peer_that_connects_to_us_is_no_longer_listed_unreachable() -> None:
    async with hosts(2) as (a, b):
        dead = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
        with trio.fail_after(10), pytest.raises(PeerUnreachableError):
            await a.connect(b.peer_id, [dead])
        assert [u["peer_id"] for u in a.statistics()["unreachable"]] == [b.peer_id]
        with trio.fail_after(10):
            await b.connect(a.peer_id, a.listen_addrs)  # inbound, from a's point of view
            while a.dial_failure(b.peer_id) is not None:  # noqa: ASYNC110 - no event for it
                await trio.sleep(0.02)
        assert a.statistics()["unreachable"] == []
