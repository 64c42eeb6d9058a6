"""Three machines (network namespaces), every node on the defaults users get.

Each node is a real ``p2pchat node run`` process in its own namespace, listening on the
default ``0.0.0.0:4242``; B and C bootstrap through A by its real address and meet each
other only through the DHT. They exchange DMs both ways and share a group, driven
through the public RPC only. On one host with a port per node this always worked; across
machines nodes used to advertise ``0.0.0.0``/``127.0.0.1``, dial themselves and block the
peer's real address (docs/networking.md, "Addresses").
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from p2pchat.net.config import DEFAULT_PORT
from tests.netns import NetnsWorld
from tests.testnet.nodes import NodeProcess, group_texts, history, node, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.netns]


def test_three_machines_on_the_default_port_talk_by_dm_and_in_a_group(
    netns_world: NetnsWorld, tmp_path: Path
) -> None:
    machines = [netns_world.add_host(name) for name in ("a", "b", "c")]
    with ExitStack() as stack:
        a = stack.enter_context(node(machines[0], tmp_path / "a" / "home"))
        a_status = a.call("node.status")
        # A advertises its real address on the default port, and nothing else.
        assert a_status["listen_addrs"] == [
            f"/ip4/{machines[0].ip}/tcp/{DEFAULT_PORT}/p2p/{a_status['peer_id']}"
        ]
        boot = a_status["listen_addrs"][0]
        b = stack.enter_context(node(machines[1], tmp_path / "b" / "home", boot))
        c = stack.enter_context(node(machines[2], tmp_path / "c" / "home", boot))
        b_status, c_status = b.call("node.status"), c.call("node.status")
        for machine, status in ((machines[1], b_status), (machines[2], c_status)):
            addrs = status["listen_addrs"]
            assert addrs == [f"/ip4/{machine.ip}/tcp/{DEFAULT_PORT}/p2p/{status['peer_id']}"]

        # B writes to C knowing only C's account key: bundle and address from the DHT.
        b.call("contacts.add", {"address": c_status["account_key"], "name": "carol"})
        sent = b.call("dm.send", {"to": "carol", "text": "hello from machine b"})

        def delivered() -> bool:
            return any(
                m["message_id"] == sent["message_id"] and m["state"] == "delivered"
                for m in b.call("dm.history", {"conversation": "carol"})
            )

        wait_until("B's first DM to be delivered to C", delivered)
        requests = c.call("contacts.requests")
        assert [r["account"] for r in requests] == [b_status["account_key"]]
        c.call("contacts.add", {"address": b_status["account_key"], "name": "bob"})
        assert history(c, "bob") == ["hello from machine b"]
        c.call("dm.send", {"to": "bob", "text": "hello back from machine c"})
        wait_until("C's reply at B", lambda: "hello back from machine c" in history(b, "carol"))
        # They found each other through the DHT and talk directly, not through A.
        assert c_status["peer_id"] in [p["peer_id"] for p in b.call("peers.list")["connected"]]

        # A group across the three machines.
        group = a.call("groups.create", {"name": "Across machines", "tags": ["netns"]})
        gid = group["group_id"]
        for who in (b, c):
            invite = a.call("groups.invite", {"group": gid})["link"]
            who.call("groups.join", {"invite": invite})
        b.call("groups.post", {"group": gid, "text": "b posts to the group"})
        c.call("groups.post", {"group": gid, "text": "c posts to the group"})
        both = {"b posts to the group", "c posts to the group"}
        for who in (a, b, c):

            def has_both(w: NodeProcess = who) -> bool:
                return both <= set(group_texts(w, gid))

            wait_until(f"both posts at {who.name}", has_both)

        # Nobody reached another node (or itself) at an address advertised for a peer.
        for who in (a, b, c):
            stats = who.call("node.statistics")["network"]
            assert not [u for u in stats["unreachable"] if "mismatch" in u["reason"]]
