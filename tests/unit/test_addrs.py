"""Address hygiene (p2pchat.net._addrs): what a node advertises and dials, and in which order."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.net._addrs import (
    AddrClass,
    LocalInterfaces,
    advertised,
    classify,
    dial_order,
    is_own,
    split_ip_port,
)

# A machine on the "internet" 198.51.100.0/24 and a home LAN 192.168.1.0/24.
HOST = LocalInterfaces(
    tuple(
        ipaddress.ip_interface(n)
        for n in ("127.0.0.1/8", "198.51.100.7/24", "192.168.1.5/24", "fe80::1/64")
    )
)
LOOPBACK_ONLY = LocalInterfaces((ipaddress.ip_interface("127.0.0.1/8"),))


@pytest.mark.parametrize(
    ("addr", "kind"),
    [
        ("/ip4/8.8.8.8/tcp/4242", AddrClass.PUBLIC),
        ("/ip4/198.51.100.9/tcp/4242", AddrClass.PUBLIC),  # documentation range: our "internet"
        ("/ip4/192.168.1.9/tcp/4242", AddrClass.LAN),
        ("/ip4/10.77.0.2/tcp/4242", AddrClass.PRIVATE),
        ("/ip4/100.64.1.1/tcp/4242", AddrClass.PRIVATE),  # carrier-grade NAT
        ("/ip4/127.0.0.1/tcp/4242", AddrClass.LOOPBACK),
        ("/ip6/::1/tcp/4242", AddrClass.LOOPBACK),
        ("/ip4/169.254.3.4/tcp/4242", AddrClass.LINK_LOCAL),
        ("/ip4/0.0.0.0/tcp/4242", AddrClass.UNSPECIFIED),
        ("/ip6/::/tcp/4242", AddrClass.UNSPECIFIED),
        ("/ip4/8.8.8.8/tcp/1/p2p/QmRelay/p2p-circuit", AddrClass.RELAY),
        ("/dns4/example.org/tcp/4242", AddrClass.OTHER),
        ("/ip4/8.8.8.8/udp/4242/quic-v1", AddrClass.OTHER),
    ],
)
def test_classify(addr: str, kind: AddrClass) -> None:
    assert classify(addr, HOST) is kind


def test_split_ip_port_refuses_what_is_not_ip_tcp() -> None:
    assert split_ip_port("/ip4/1.2.3.4/tcp/5/p2p/x") == ("ip4", "1.2.3.4", 5)
    for bad in ("", "/ip4/1.2.3.4", "/ip4/1.2.3/tcp/5", "/ip4/1.2.3.4/tcp/x", "/dns4/a/tcp/5"):
        assert split_ip_port(bad) is None


def test_a_wildcard_listener_advertises_its_interfaces_never_loopback_or_wildcard() -> None:
    got = advertised(["/ip4/0.0.0.0/tcp/4242", "/ip6/::/tcp/4242"], HOST)
    assert got == ["/ip4/198.51.100.7/tcp/4242", "/ip4/192.168.1.5/tcp/4242"]


def test_observed_public_address_is_advertised_first() -> None:
    got = advertised(["/ip4/0.0.0.0/tcp/4242", "/ip4/203.0.113.50/tcp/4242"], HOST)
    assert got[0:2] == ["/ip4/198.51.100.7/tcp/4242", "/ip4/203.0.113.50/tcp/4242"]
    assert got[-1] == "/ip4/192.168.1.5/tcp/4242"


def test_loopback_is_advertised_only_when_it_is_all_there_is() -> None:
    assert advertised(["/ip4/127.0.0.1/tcp/4001"], HOST) == ["/ip4/127.0.0.1/tcp/4001"]
    assert advertised(["/ip4/0.0.0.0/tcp/4001"], LOOPBACK_ONLY) == ["/ip4/127.0.0.1/tcp/4001"]
    assert advertised(["/ip4/169.254.1.1/tcp/1"], HOST) == []


def test_own_addresses_are_recognised() -> None:
    listening = ["/ip4/0.0.0.0/tcp/4242", "/ip4/203.0.113.50/tcp/4242/p2p/12D3KooWx"]
    for own in (
        "/ip4/127.0.0.1/tcp/4242",
        "/ip4/0.0.0.0/tcp/4242",
        "/ip4/198.51.100.7/tcp/4242",
        "/ip4/203.0.113.50/tcp/4242",  # our public (NAT) address: a hairpin reaches us
    ):
        assert is_own(own, listening=listening, local=HOST), own
    for other in (
        "/ip4/198.51.100.8/tcp/4242",  # another host, same port
        "/ip4/127.0.0.1/tcp/4243",  # another node on this host
        "/ip6/::1/tcp/4242",  # another family: we listen on IPv4 only
    ):
        assert not is_own(other, listening=listening, local=HOST), other
    # A specific listener: only that endpoint (and 0.0.0.0 at its port) is ours.
    specific = ["/ip4/127.0.0.1/tcp/4001"]
    assert is_own("/ip4/127.0.0.1/tcp/4001", listening=specific, local=HOST)
    assert is_own("/ip4/0.0.0.0/tcp/4001", listening=specific, local=HOST)
    assert not is_own("/ip4/127.0.0.1/tcp/4002", listening=specific, local=HOST)


def test_dial_order_prefers_what_can_work_and_skips_ourselves() -> None:
    peer = [
        "/ip4/127.0.0.1/tcp/4242",  # ours (same port): never
        "/ip4/0.0.0.0/tcp/4242",  # a wildcard: never
        "/ip4/10.9.9.9/tcp/4242",  # private elsewhere
        "/ip4/192.168.1.9/tcp/4242",  # same LAN
        "/ip4/8.8.4.4/tcp/4242",  # public
        "/ip4/8.8.8.8/tcp/1/p2p/QmRelay/p2p-circuit/p2p/QmPeer",  # relay transport's
    ]
    got = dial_order(
        peer,
        listening=["/ip4/0.0.0.0/tcp/4242"],
        local=HOST,
        observed_ips=["203.0.113.9"],
    )
    assert got == [
        "/ip4/8.8.4.4/tcp/4242",
        "/ip4/203.0.113.9/tcp/4242",  # the observed IP at the peer's port
        "/ip4/192.168.1.9/tcp/4242",
        "/ip4/10.9.9.9/tcp/4242",
    ]


def test_recently_failed_addresses_go_last_but_are_not_dropped() -> None:
    peer = ["/ip4/8.8.4.4/tcp/4242", "/ip4/192.168.1.9/tcp/4242"]
    got = dial_order(peer, listening=[], local=HOST, recently_failed={"/ip4/8.8.4.4/tcp/4242"})
    assert got == ["/ip4/192.168.1.9/tcp/4242", "/ip4/8.8.4.4/tcp/4242"]


def test_another_node_on_this_host_is_dialled_on_loopback() -> None:
    got = dial_order(["/ip4/127.0.0.1/tcp/4002"], listening=["/ip4/127.0.0.1/tcp/4001"], local=HOST)
    assert got == ["/ip4/127.0.0.1/tcp/4002"]


_ips = st.sampled_from(
    ["127.0.0.1", "0.0.0.0", "198.51.100.7", "198.51.100.8", "192.168.1.9", "10.0.0.1", "::1"]
)


@given(st.lists(st.tuples(_ips, st.sampled_from([4242, 4243])), max_size=8))
def test_dial_order_never_returns_an_own_or_unspecified_address(
    endpoints: list[tuple[str, int]],
) -> None:
    addrs = [f"/{'ip6' if ':' in ip else 'ip4'}/{ip}/tcp/{port}" for ip, port in endpoints]
    listening = ["/ip4/0.0.0.0/tcp/4242"]
    got = dial_order(addrs, listening=listening, local=HOST, observed_ips=["198.51.100.8"])
    assert len(got) == len(set(got))
    for addr in got:
        assert not is_own(addr, listening=listening, local=HOST)
        assert classify(addr, HOST) is not AddrClass.UNSPECIFIED


def test_one_endpoint_is_dialled_once_whatever_its_spelling() -> None:
    peer = [
        "/ip4/8.8.4.4/tcp/4242/p2p/12D3KooWpeer",
        "/ip4/8.8.4.4/tcp/4242",
        "/ip4/8.8.4.4/tcp/4242/ws",
    ]
    got = dial_order(peer, listening=[], local=HOST, observed_ips=["8.8.4.4"])
    assert got == ["/ip4/8.8.4.4/tcp/4242", "/ip4/8.8.4.4/tcp/4242/ws"]
