"""Nodes behind real NAT (MASQUERADE routers in network namespaces) reach each other.

Real ``p2pchat node run`` processes on the defaults (``0.0.0.0:4242``): public nodes find
out they are public and serve AutoNAT and relaying; nodes behind NAT find out they are
private, reserve with relays, advertise ``/p2p/<relay>/p2p-circuit`` addresses, and are
reached there by peers that know only their account key. See docs/networking.md,
"Behind NAT".
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Host, Nat, NetnsWorld
from tests.testnet.nodes import LIMIT, NodeProcess, group_texts, history, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.netns]


def network(who: NodeProcess) -> dict[str, Any]:
    stats: dict[str, Any] = who.call("node.statistics")["network"]
    return stats


def reachability(who: NodeProcess, expected: str) -> bool:
    return network(who).get("reachability") == expected


def relayed_addrs(who: NodeProcess) -> list[str]:
    return [a for a in who.call("node.status")["listen_addrs"] if "/p2p-circuit" in a]


def path_to(who: NodeProcess, peer_id: str) -> str | None:
    for peer in who.call("peers.list")["connected"]:
        if peer["peer_id"] == peer_id:
            return str(peer["path"])
    return None


def dm_round_trip(
    sender: NodeProcess, receiver: NodeProcess, to: str, text: str, limit: float = LIMIT
) -> float:
    """Send a DM and wait until it is marked delivered; seconds it took."""
    started = time.monotonic()
    sent = sender.call("dm.send", {"to": to, "text": text})

    def delivered() -> bool:
        return any(
            m["message_id"] == sent["message_id"] and m["state"] == "delivered"
            for m in sender.call("dm.history", {"conversation": to})
        )

    wait_until(f"{text!r} delivered", delivered, limit=limit)
    return time.monotonic() - started


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


class StallingRelay(NodeProcess):
    """A node whose hop relay half-kills existing circuits on demand
    (``_stalling_relay.py``: fault injection into py-libp2p's relay, nothing else changed)."""

    def wrapper(self) -> list[str]:
        return [sys.executable, "-m", "tests.integration._stalling_relay", str(self.trigger)]

    @property
    def trigger(self) -> Path:
        return self.home.parent / "stall-from"

    def stall_circuits_from(self, peer_id: str) -> None:
        self.trigger.write_text(peer_id)


def start(
    stack: ExitStack,
    hosts: list[Host],
    base: Path,
    *bootstrap: str,
    kind: Callable[..., NodeProcess] = NodeProcess,
) -> list[NodeProcess]:
    """Start a node on each host at once (a first start spends seconds on the keystore's
    Argon2id and on importing libp2p), then wait until each answers its RPC."""
    people = [kind(host, base / host.name / "home", bootstrap) for host in hosts]
    for who in people:
        stack.callback(who.close)
        who.start(wait=False)
    for who in people:
        who.connect()
    return people


def drop_unsolicited(nat: Nat) -> None:
    """Make a router drop unsolicited inbound packets, as most home routers do (Linux
    answers a SYN to a port nobody listens on with a RST, which defeats hole punching)."""
    nat.exec(["iptables", "-w", "-A", "INPUT", "-i", "eth0", "-m", "conntrack",
              "--ctstate", "NEW", "-j", "DROP"])  # fmt: skip


@pytest.mark.parametrize("routers", ["refuse", "drop"])
def test_two_nodes_behind_different_nats_talk_through_a_relay(
    netns_world: NetnsWorld, tmp_path: Path, stack: ExitStack, routers: str
) -> None:
    relay_host = netns_world.add_host("relay")
    nat_a, nat_b = netns_world.add_nat("nata"), netns_world.add_nat("natb")
    if routers == "drop":
        drop_unsolicited(nat_a)
        drop_unsolicited(nat_b)
    host_a = netns_world.add_host("alice", behind=nat_a)
    host_b = netns_world.add_host("bob", behind=nat_b)

    [relay] = start(stack, [relay_host], tmp_path, kind=StallingRelay)
    boot = relay.call("node.status")["listen_addrs"][0]
    started = time.monotonic()
    alice, bob = start(stack, [host_a, host_b], tmp_path, boot)

    # Both learn they are behind NAT and reserve with the relay; the relay learns it is
    # public (the NATed nodes dial it back successfully).
    for who in (alice, bob):

        def private(w: NodeProcess = who) -> bool:
            return reachability(w, "private")

        def relayed(w: NodeProcess = who) -> list[str]:
            return relayed_addrs(w)

        wait_until(f"{who.name} private", private)
        wait_until(f"{who.name} relayed", relayed)
    reachable_after = time.monotonic() - started
    wait_until("relay public", lambda: reachability(relay, "public"))
    relay_id = relay.call("node.status")["peer_id"]
    for who in (alice, bob):
        assert all(f"/p2p/{relay_id}/p2p-circuit/" in a for a in relayed_addrs(who))
        assert network(who)["relays"] == [relay_id]

    a_status, b_status = alice.call("node.status"), bob.call("node.status")
    # Alice knows only Bob's account key: bundle from the DHT, address from peer routing,
    # which carries his relayed address.
    alice.call("contacts.add", {"address": b_status["account_key"], "name": "bob"})
    first = dm_round_trip(alice, bob, "bob", "hello across two NATs")
    bob.call("contacts.add", {"address": a_status["account_key"], "name": "alice"})
    assert history(bob, "alice") == ["hello across two NATs"]
    dm_round_trip(bob, alice, "alice", "hello back")
    assert "hello back" in history(alice, "bob")
    if routers == "drop":
        # Hole punching (DCUtR) turns the relayed connection into a direct one, and
        # messages keep flowing on it.
        wait_until("a direct connection", lambda: path_to(alice, b_status["peer_id"]) == "direct")
    else:
        # Linux routers refuse the other side's first SYN: the punch fails, the relay stays.
        wait_until(
            "a hole punch attempt", lambda: network(alice)["hole_punch_attempted_peers"] >= 1
        )
        assert path_to(alice, b_status["peer_id"]) == "relayed"
    dm_round_trip(bob, alice, "alice", f"over the {routers} path")

    # A group across the relay and both NATs.
    gid = relay.call("groups.create", {"name": "Behind NAT", "tags": ["nat"]})["group_id"]
    for who in (alice, bob):
        who.call("groups.join", {"invite": relay.call("groups.invite", {"group": gid})["link"]})
    alice.call("groups.post", {"group": gid, "text": "alice posts"})
    bob.call("groups.post", {"group": gid, "text": "bob posts"})
    for who in (relay, alice, bob):

        def both(w: NodeProcess = who) -> bool:
            return {"alice posts", "bob posts"} <= set(group_texts(w, gid))

        wait_until(f"both posts at {who.name}", both)
    if routers == "refuse":
        # The relay keeps the circuit open but drops what alice sends on it from now on
        # (a half-dead circuit, as in the testnet); bob -> alice still flows. The liveness
        # check finds the circuit dead, closes it and redials: the DM goes out on a new one.
        assert isinstance(relay, StallingRelay)
        relay.stall_circuits_from(a_status["peer_id"])
        # Found within 10 s + 2 x 15 s (NetConfig.relay_ping_*), then a redial.
        stalled = dm_round_trip(alice, bob, "bob", "through a half-dead circuit", limit=90)
        closed = sum(network(w)["relayed_closed_dead"] for w in (alice, bob))
        assert closed >= 1
        assert path_to(alice, b_status["peer_id"]) == "relayed"
        dm_round_trip(bob, alice, "alice", "after the half-dead circuit")
        print(f"\nhalf-dead circuit: DM delivered after {stalled:.1f}s, {closed} closed")
    stats = network(alice)
    print(
        f"\nNAT ({routers}): reachable via relay {reachable_after:.1f}s after start; "
        f"first DM {first:.2f}s; path {path_to(alice, b_status['peer_id'])}; hole punches "
        f"attempted {stats['hole_punch_attempted_peers']}, "
        f"direct {stats['hole_punch_direct_peers']}"
    )


def test_a_relay_that_goes_away_is_replaced_and_a_stranger_still_reaches_the_node(
    netns_world: NetnsWorld, tmp_path: Path, stack: ExitStack
) -> None:
    relays = [netns_world.add_host(f"relay{i}") for i in range(3)]
    nat = netns_world.add_nat("nat")
    home = netns_world.add_host("alice", behind=nat)
    stranger_host = netns_world.add_host("stranger")

    public = start(stack, relays, tmp_path)
    boots = [p.call("node.status")["listen_addrs"][0] for p in public]
    [alice] = start(stack, [home], tmp_path, *boots)
    wait_until("alice reserved with two relays", lambda: len(network(alice)["relays"]) == 2)
    held = network(alice)["relays"]
    ids = {p.call("node.status")["peer_id"]: p for p in public}
    gone = ids[held[0]]
    gone.stop()

    def replaced() -> bool:
        now = network(alice)["relays"]
        return len(now) == 2 and held[0] not in now

    wait_until("the lost relay replaced", replaced)
    assert network(alice)["relays_replaced"] >= 1
    assert all(held[0] not in a for a in relayed_addrs(alice))

    # A stranger (public, bootstrapping through a relay alice did not lose) finds her by
    # account key and writes to her through her advertised relayed address.
    alive = next(b for b, p in zip(boots, public, strict=True) if p is not gone)
    [stranger] = start(stack, [stranger_host], tmp_path, alive)
    a_status = alice.call("node.status")
    stranger.call("contacts.add", {"address": a_status["account_key"], "name": "alice"})
    dm_round_trip(stranger, alice, "alice", "hello from a stranger")
    assert path_to(stranger, a_status["peer_id"]) in ("relayed", "direct")


#: miniupnpd's chains, in a table of their own in the router's namespace (the router's NAT
#: and filter rules stay in iptables; a DNAT'd connection is accepted there, see below).
UPNP_NFT = """
table inet upnp {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_upnp; }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept; jump postrouting_upnp;
  }
  chain prerouting_upnp { }
  chain postrouting_upnp { }
}
"""


def make_upnp_router(world: NetnsWorld, nat: Nat, base: Path) -> None:
    """Turn ``nat`` into a UPnP IGD: Debian's miniupnpd 2.3.1 (nftables backend).

    miniupnpd refuses a reserved external address, and the test world's are all TEST-NET
    (RFC 5737); 2.3.1 has no ``ext_allow_private_ipv4`` and rejects such an ``ext_ip``. It does
    accept the address a STUN server reports when its four-request test finds no filtering
    (``ext_perform_stun``), so a STUN server (Debian's stund, RFC 3489: two addresses for its
    change-IP answers) runs on a public host.
    """
    stun = world.add_host("stun")
    alternate = "198.51.100.250"  # the world hands out host addresses from .10 upwards
    stun.exec(["ip", "addr", "add", f"{alternate}/24", "dev", "eth0"])
    stun.run(["stund", "-h", stun.ip, "-a", alternate],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until("stund listening", lambda: stun.exec(["ss", "-Hlun", "sport = :3478"]).stdout)
    (base / "upnp.nft").write_text(UPNP_NFT)
    nat.exec(["nft", "-f", str(base / "upnp.nft")])
    # The router forwards what it mapped (its iptables FORWARD chain drops new inbound).
    nat.exec(["iptables", "-w", "-I", "FORWARD", "-i", "eth0", "-o", "lan0", "-m", "conntrack",
              "--ctstate", "DNAT", "-j", "ACCEPT"])  # fmt: skip
    conf = base / "miniupnpd.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        ext_ifname=eth0
        listening_ip=lan0
        enable_natpmp=no
        secure_mode=yes
        ext_perform_stun=yes
        ext_stun_host={stun.ip}
        upnp_table_name=upnp
        upnp_nat_table_name=upnp
        upnp_forward_chain=miniupnpd
        upnp_nat_chain=prerouting_upnp
        upnp_nat_postrouting_chain=postrouting_upnp
        uuid=3c1f5a10-0000-4000-8000-000000000001
        allow 1024-65535 {nat.private_subnet} 1024-65535
        deny 0-65535 0.0.0.0/0 0-65535
        """)
    )
    log = (base / "miniupnpd.log").open("w")
    nat.run(["miniupnpd", "-d", "-f", str(conf), "-P", str(base / "miniupnpd.pid")],
            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    log.close()
    # It asks STUN at start-up and says so in its log.
    started = "Port forwarding is now enabled"
    wait_until("miniupnpd up", lambda: started in (base / "miniupnpd.log").read_text())


def test_a_node_behind_a_upnp_router_maps_its_port_and_is_reached_directly(
    netns_world: NetnsWorld, tmp_path: Path, stack: ExitStack
) -> None:
    seed_host = netns_world.add_host("seed")
    nat = netns_world.add_nat("home")
    make_upnp_router(netns_world, nat, tmp_path)
    home = netns_world.add_host("alice", behind=nat)
    stranger_host = netns_world.add_host("stranger")

    [seed] = start(stack, [seed_host], tmp_path)
    boot = seed.call("node.status")["listen_addrs"][0]
    alice = NodeProcess(home, tmp_path / "alice" / "home", [boot], extra_args=["--upnp"])
    stranger = NodeProcess(stranger_host, tmp_path / "stranger" / "home", [boot])
    for who in (alice, stranger):  # started at once, as start() does
        stack.callback(who.close)
        who.start(wait=False)
    for who in (alice, stranger):
        who.connect()

    # The router maps alice's port at its public address; she advertises it, and AutoNAT
    # (peers dialling her back there, through the router's forwarding) finds her public.
    mapped = f"/ip4/{nat.ip}/tcp/4242"
    assert network(alice)["upnp_mapping"] == mapped
    assert any(a.startswith(mapped + "/") for a in alice.call("node.status")["listen_addrs"])
    wait_until("alice public", lambda: reachability(alice, "public"))
    wait_until("no relayed address", lambda: relayed_addrs(alice) == [])

    # A stranger who knows only her account key reaches her directly at the mapped port.
    a_status = alice.call("node.status")
    stranger.call("contacts.add", {"address": a_status["account_key"], "name": "alice"})
    dm_round_trip(stranger, alice, "alice", "hello through your router's mapping")
    assert path_to(stranger, a_status["peer_id"]) == "direct"
