"""People nearby (mDNS): shown with the name they announce, never added as contacts."""

from __future__ import annotations

from pathlib import Path

from p2pchat.events import PeerNearby
from p2pchat.net.mdns import parse_announcement
from tests.node.harness import hub, new_peer, running, wait_for


async def test_nearby_peers_show_their_announced_name_and_are_not_contacts(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path):
        h.announce_nearby([alice.peer_id, bob.peer_id], names={bob.peer_id: "Bob's laptop"})
        await wait_for(lambda: any(isinstance(e, PeerNearby) for e in alice.events))
        [event] = [e for e in alice.events if isinstance(e, PeerNearby)]
        assert (event.peer_id, event.name) == (bob.peer_id, "Bob's laptop")
        nearby = (await a.peers())["nearby"]
        assert [(p["peer_id"], p["name"]) for p in nearby] == [(bob.peer_id, "Bob's laptop")]
        assert await a.contacts() == []


def test_an_announced_name_is_untrusted_text() -> None:
    addr = b"/ip4/192.0.2.7/tcp/4242/p2p/12D3KooWPeer"
    ok = parse_announcement({b"dnsaddr": addr, b"name": "Zoë".encode()}, own_peer_id="me")
    assert ok is not None
    assert ok.name == "Zoë"
    for bad in (b"\xff\xfe", b"x" * 65, b"bell\x07", b"   ", None):
        info = parse_announcement({b"dnsaddr": addr, b"name": bad}, own_peer_id="me")
        assert info is not None
        assert info.name is None  # the peer is still discovered, just without a name
