"""mDNS discovery: TXT parsing and the zeroconf-thread → trio hand-over, with fakes.

No multicast is sent: the zeroconf side is a fake whose callbacks run on a real OS
thread, as zeroconf's do, so the hand-over is exercised exactly where it matters.
"""

from __future__ import annotations

import threading

import pytest
import trio

from p2pchat.net.base import PeerInfo
from p2pchat.net.identity import seed_to_peer_id
from p2pchat.net.mdns import HandOver, MdnsListener, parse_announcement

ME = seed_to_peer_id(b"\x01" * 32)
PEER = seed_to_peer_id(b"\x02" * 32)
OTHER = seed_to_peer_id(b"\x03" * 32)


def test_parse_announcement_accepts_one_peer_and_rejects_the_rest() -> None:
    props: dict[bytes, bytes | None] = {
        b"dnsaddr": f"/ip4/192.0.2.7/tcp/4242/p2p/{PEER}".encode(),
        b"dnsaddr1": f"/ip6/2001:db8::7/tcp/4242/p2p/{PEER}".encode(),
        b"unrelated": b"x",
        b"dnsaddr2": None,
    }
    assert parse_announcement(props, own_peer_id=ME) == PeerInfo(
        PEER, ("/ip4/192.0.2.7/tcp/4242", "/ip6/2001:db8::7/tcp/4242")
    )
    assert parse_announcement(props, own_peer_id=PEER) is None  # our own announcement
    mixed = {**props, b"dnsaddr3": f"/ip4/192.0.2.8/tcp/1/p2p/{OTHER}".encode()}
    assert parse_announcement(mixed, own_peer_id=ME) is None
    for junk in (b"\xff\xfe", b"no-slash/p2p/x", b"/ip4/1.2.3.4/tcp/1", b"/ip4/1/p2p/a b"):
        assert parse_announcement({b"dnsaddr": junk}, own_peer_id=ME) is None


class FakeInfo:
    def __init__(self, properties: dict[bytes, bytes | None]) -> None:
        self.properties = properties


class FakeZeroconf:
    """Answers ``get_service_info`` like zeroconf, from a table."""

    def __init__(self, services: dict[str, FakeInfo | None]) -> None:
        self.services = services
        self.threads: list[str] = []

    def get_service_info(self, type_: str, name: str, timeout: int) -> FakeInfo | None:
        self.threads.append(threading.current_thread().name)
        return self.services.get(name)


async def test_discoveries_cross_from_a_foreign_thread_to_trio() -> None:
    trio_thread = threading.current_thread()
    delivered: list[tuple[PeerInfo, bool]] = []
    arrived = trio.Event()

    def deliver(peer: PeerInfo) -> None:
        delivered.append((peer, threading.current_thread() is trio_thread))
        arrived.set()

    listener = MdnsListener(own_peer_id=ME, hand_over=HandOver(deliver))
    zc = FakeZeroconf(
        {
            "peer._p2p._udp.local.": FakeInfo(
                {b"dnsaddr": f"/ip4/192.0.2.7/tcp/1/p2p/{PEER}".encode()}
            ),
            "me._p2p._udp.local.": FakeInfo(
                {b"dnsaddr": f"/ip4/192.0.2.1/tcp/1/p2p/{ME}".encode()}
            ),
            "gone._p2p._udp.local.": None,
        }
    )

    def zeroconf_thread() -> None:
        for name in ("me", "gone", "peer"):
            listener.add_service(zc, "_p2p._udp.local.", f"{name}._p2p._udp.local.")  # type: ignore[arg-type]
        listener.remove_service(zc, "_p2p._udp.local.", "peer._p2p._udp.local.")  # type: ignore[arg-type]

    with trio.fail_after(10):
        await trio.to_thread.run_sync(zeroconf_thread)
        await arrived.wait()
    assert delivered == [(PeerInfo(PEER, ("/ip4/192.0.2.7/tcp/1",)), True)]
    assert trio_thread.name not in zc.threads


def test_hand_over_after_trio_has_finished_is_dropped() -> None:
    delivered: list[PeerInfo] = []

    async def make() -> HandOver:
        return HandOver(delivered.append)

    hand_over = trio.run(make)
    errors: list[BaseException] = []

    def late() -> None:
        try:
            hand_over(PeerInfo(PEER, ()))
        except BaseException as exc:  # the thread must not die with an error
            errors.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(timeout=10)
    assert errors == []
    assert delivered == []


@pytest.mark.parametrize("hosts", [("127.0.0.1",), ("0.0.0.0",)])
def test_service_info_announces_our_addresses(hosts: tuple[str, ...]) -> None:
    from p2pchat.net.mdns import SERVICE_TYPE, _service_info

    specific = [h for h in hosts if h != "0.0.0.0"]
    info = _service_info(ME, ["/ip4/127.0.0.1/tcp/4242"], 4242, specific)
    assert info.type == SERVICE_TYPE
    assert info.properties == {b"dnsaddr": f"/ip4/127.0.0.1/tcp/4242/p2p/{ME}".encode()}
    assert parse_announcement(info.properties, own_peer_id=PEER) == PeerInfo(
        ME, ("/ip4/127.0.0.1/tcp/4242",)
    )
    assert ME not in info.name  # the instance name is random, not our identity


@pytest.mark.integration
async def test_two_hosts_discover_each_other_over_loopback_multicast() -> None:
    """Real zeroconf pinned to 127.0.0.1 (no other interface is touched)."""
    import random

    from p2pchat.net.base import PeerDiscovered
    from p2pchat.net.config import NetConfig
    from p2pchat.net.libp2p_host import open_libp2p_network

    config = NetConfig(listen_hosts=("127.0.0.1",), port=0, mdns=True)
    with trio.fail_after(30):
        async with open_libp2p_network(b"\x11" * 32, config, jitter=random.Random(1)) as a:
            feed = a.events()
            async with open_libp2p_network(b"\x12" * 32, config, jitter=random.Random(2)) as b:
                event = await anext(feed)
                assert isinstance(event, PeerDiscovered)
                assert event.peer.peer_id == b.peer_id
                assert [f"{addr}/p2p/{b.peer_id}" for addr in event.peer.addrs] == b.listen_addrs
                await a.connect(event.peer.peer_id, event.peer.addrs)
                assert a.connected_peers() == [b.peer_id]


def test_wildcard_listen_addresses_are_announced_as_lan_addresses() -> None:
    from p2pchat.net.mdns import announce_addrs

    listen = [f"/ip4/0.0.0.0/tcp/4242/p2p/{ME}", "/ip4/127.0.0.1/tcp/5/p2p/x", "/ip6/::/tcp/4242"]
    ips = ["127.0.0.1", "192.0.2.2", "fd00::2", "198.51.100.9"]
    assert announce_addrs(listen, ips) == [
        f"/ip4/192.0.2.2/tcp/4242/p2p/{ME}",
        f"/ip4/198.51.100.9/tcp/4242/p2p/{ME}",
        "/ip4/127.0.0.1/tcp/5/p2p/x",
    ]
    assert announce_addrs(["/ip4/0.0.0.0/tcp/1"], ["127.0.0.1"]) == []
