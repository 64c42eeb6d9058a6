"""Three machines (network namespaces), every node on the defaults users get.

Each node is a real ``p2pchat node run`` process in its own namespace, listening on the
default ``0.0.0.0:4242``; B and C bootstrap through A by its real address and meet each
other only through the DHT. They exchange DMs both ways and share a group, driven
through the public RPC only. On one host with a port per node this always worked; across
machines nodes used to advertise ``0.0.0.0``/``127.0.0.1``, dial themselves and block the
peer's real address (docs/networking.md, "Addresses").
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from subprocess import Popen
from typing import Any, TypeVar

import pytest

from p2pchat.client import SyncClient
from p2pchat.errors import P2PChatError
from p2pchat.net.config import DEFAULT_PORT
from tests.netns import Host, NetnsWorld

pytestmark = [pytest.mark.integration, pytest.mark.netns]

START_LIMIT = 60.0  # a first start derives the keystore key (Argon2id) and loads libp2p
LIMIT = 45.0  # any one exchange between started nodes
T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], *, limit: float = LIMIT) -> T:
    """Poll ``probe`` until it returns something truthy (the nodes offer no event for it)."""
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Person:
    """A node on a machine, and an RPC client to it (the home's socket is on the shared
    filesystem, so the test talks to every node from outside their namespaces)."""

    def __init__(self, host: Host, home: Path, process: Popen[Any]) -> None:
        self.host = host
        self.home = home
        self.process = process
        self.client: SyncClient | None = None

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert self.client is not None
        return self.client.call(method, params, timeout=30.0)

    def connect(self) -> None:
        def ready() -> SyncClient | None:
            assert self.process.poll() is None, f"{self.host.name}'s node exited"
            if not (self.home / "rpc.sock").exists():
                return None
            try:
                client = SyncClient.connect(home=self.home, reconnect_timeout=1.0)
                client.call("rpc.ping", timeout=5.0)
            except P2PChatError:
                return None  # bound a moment before the token check passes
            return client

        self.client = wait_until(f"{self.host.name}'s RPC", ready, limit=START_LIMIT)


@contextmanager
def person(host: Host, home: Path, *bootstrap: str) -> Iterator[Person]:
    env = {**os.environ, "P2PCHAT_HOME": str(home), "P2PCHAT_PASSPHRASE": f"{host.name} pass"}
    args = [sys.executable, "-m", "p2pchat.cli", "node", "run", "--create-identity"]
    args += [option for addr in bootstrap for option in ("--bootstrap", addr)]
    home.parent.mkdir(parents=True, exist_ok=True)
    log = (home.parent / f"{host.name}.log").open("w")
    process = host.run(args, env=env, stdout=log, stderr=log)
    who = Person(host, home, process)
    try:
        who.connect()
        yield who
    finally:
        if who.client is not None:
            who.client.close()
        log.close()  # the world stops the process


def history(who: Person, conversation: str) -> list[str]:
    return [m["text"] for m in who.call("dm.history", {"conversation": conversation})]


def group_texts(who: Person, group: str) -> list[str]:
    return [m["text"] for m in who.call("groups.history", {"group": group})]


def test_three_machines_on_the_default_port_talk_by_dm_and_in_a_group(
    netns_world: NetnsWorld, tmp_path: Path
) -> None:
    machines = [netns_world.add_host(name) for name in ("a", "b", "c")]
    with ExitStack() as stack:
        a = stack.enter_context(person(machines[0], tmp_path / "a" / "home"))
        a_status = a.call("node.status")
        # A advertises its real address on the default port, and nothing else.
        assert a_status["listen_addrs"] == [
            f"/ip4/{machines[0].ip}/tcp/{DEFAULT_PORT}/p2p/{a_status['peer_id']}"
        ]
        boot = a_status["listen_addrs"][0]
        b = stack.enter_context(person(machines[1], tmp_path / "b" / "home", boot))
        c = stack.enter_context(person(machines[2], tmp_path / "c" / "home", boot))
        b_status, c_status = b.call("node.status"), c.call("node.status")
        for who, status in ((b, b_status), (c, c_status)):
            addrs = status["listen_addrs"]
            assert addrs == [f"/ip4/{who.host.ip}/tcp/{DEFAULT_PORT}/p2p/{status['peer_id']}"]

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

            def has_both(w: Person = who) -> bool:
                return both <= set(group_texts(w, gid))

            wait_until(f"both posts at {who.host.name}", has_both)

        # Nobody reached another node (or itself) at an address advertised for a peer.
        for who in (a, b, c):
            stats = who.call("node.statistics")["network"]
            assert not [u for u in stats["unreachable"] if "mismatch" in u["reason"]]
