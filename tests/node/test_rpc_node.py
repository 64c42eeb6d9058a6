"""The node's RPC methods, driven by the real client over the node's unix socket.

Nodes run on the in-memory network with the real clock (the client and server talk
over a real socket); every wait is bounded by ``fail_after``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchat.api.methods import build_registry
from p2pchat.api.serve import open_api
from p2pchat.api.shapes import resolve_contact
from p2pchat.client import Client, Event
from p2pchat.config import NodeConfig
from p2pchat.errors import ConfigError, NotFoundError, PermissionDeniedError
from p2pchat.node import Node
from p2pchat.rpc import mint_token
from p2pchat.rpc.errors import InvalidParamsError
from p2pchat.storage.memory import MemoryStore
from p2pchat.storage.records import Contact, ContactState
from tests.conftest import NOW_MS, DeterministicRng
from tests.node.harness import Peer, hub, memory_opener, new_peer, running

LIMIT = 20  # seconds of real time any one step may take


@asynccontextmanager
async def client_of(
    tmp_path: Path, peer: Peer, *, token: str | None = None
) -> AsyncIterator[Client]:
    async with await Client.connect(home=tmp_path / peer.name, token=token) as client:
        yield client


async def next_event(events: Any, kind: str) -> Event:
    with trio.fail_after(LIMIT):
        async for item in events:
            if isinstance(item, Event) and item.type == kind:
                return item
    raise AssertionError(f"the stream ended before a {kind} event")


async def test_info_status_and_method_table(tmp_path: Path) -> None:
    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path) as node, client_of(tmp_path, alice) as c:
        assert c.info.node["peer_id"] == alice.peer_id
        assert c.info.node["account_key"] == alice.account.hex()
        info = await c.call("node.info")
        assert info["fingerprint"] == node.fingerprint
        assert info["device_key"] == node.device_key.hex()
        assert info["listen_addrs"] == node.listen_addrs
        status = await c.call("node.status")
        assert (status["peer_id"], status["conversations"], status["unread"]) == (
            alice.peer_id,
            0,
            0,
        )
        assert (await c.call("node.statistics"))["peer_id"] == alice.peer_id
        assert await c.call("peers.list") == {"connected": [], "nearby": []}
        methods = await c.call("rpc.methods")
        scopes = {name: m["scope"] for name, m in methods.items()}
        assert scopes["dm.send"] == "send"
        assert scopes["dm.history"] == "read"
        assert scopes["contacts.block"] == "admin"
        assert scopes["peers.connect"] == "admin"
        assert methods["dm.history"]["params"]["limit"] == {
            "type": "int",
            "required": False,
            "min": 1,
            "max": 500,
        }


async def test_contacts_by_key_and_by_name(tmp_path: Path) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with hub() as h, running(h, alice, tmp_path), client_of(tmp_path, alice) as c:
        added = await c.call("contacts.add", {"address": bob.account.hex(), "name": "Bob"})
        assert (added["account"], added["name"], added["state"]) == (
            bob.account.hex(),
            "Bob",
            "accepted",
        )
        await c.call("contacts.add", {"address": carol.account.hex(), "name": "carol"})
        listed = await c.call("contacts.list")
        assert [x["name"] for x in listed] == ["Bob", "carol"]

        blocked = await c.call("contacts.block", {"contact": "bob"})  # names are case-blind
        assert blocked["state"] == "blocked"
        only = await c.call("contacts.list", {"state": "blocked"})
        assert [x["account"] for x in only] == [bob.account.hex()]
        unblocked = await c.call("contacts.unblock", {"contact": bob.account.hex()})
        assert unblocked["state"] == "accepted"

        with pytest.raises(NotFoundError, match="no contact named"):
            await c.call("contacts.block", {"contact": "mallory"})
        with pytest.raises(NotFoundError):
            await c.call("contacts.accept", {"contact": "ab" * 32})
        with pytest.raises(ConfigError, match="unknown contact state"):
            await c.call("contacts.list", {"state": "friendly"})
        with pytest.raises(ConfigError, match="own account"):
            await c.call("contacts.add", {"address": alice.account.hex()})
        with pytest.raises(InvalidParamsError):
            await c.call("contacts.add", {"address": 42})


async def test_dm_between_two_nodes_reaches_the_recipients_event_stream(tmp_path: Path) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with (
        hub() as h,
        running(h, alice, tmp_path),
        running(h, bob, tmp_path),
        client_of(tmp_path, alice) as a,
        client_of(tmp_path, bob) as b,
    ):
        await a.call("contacts.add", {"address": bob.account.hex(), "name": "bob"})
        async with b.subscribe(["dm.received"]) as received, a.subscribe(["dm.delivery"]) as ack:
            sent = await a.call("dm.send", {"to": "bob", "text": "hello over rpc"})
            assert (sent["state"], sent["direction"], sent["text"]) == (
                "queued",
                "out",
                "hello over rpc",
            )
            event = await next_event(received, "dm.received")
            assert event.data["text"] == "hello over rpc"
            assert event.data["sender"] == alice.account.hex()
            assert event.data["message_id"] == sent["message_id"]
            with trio.fail_after(LIMIT):
                async for item in ack:
                    if isinstance(item, Event) and item.data["state"] == "delivered":
                        break

        history = await a.call("dm.history", {"conversation": "bob"})
        assert [(m["seq"], m["text"], m["state"]) for m in history] == [
            (sent["seq"], "hello over rpc", "delivered")
        ]
        requests = await b.call("contacts.requests")
        assert [r["account"] for r in requests] == [alice.account.hex()]
        [conversation] = await b.call("dm.conversations")
        assert (conversation["peer"], conversation["unread"]) == (alice.account.hex(), 1)
        bob_view = await b.call("dm.history", {"conversation": conversation["conversation_id"]})
        assert [(m["direction"], m["sender"]) for m in bob_view] == [("in", alice.account.hex())]
        await b.call("dm.mark_read", {"conversation": alice.account.hex()})
        assert (await b.call("dm.conversations"))[0]["unread"] == 0
        accepted = await b.call("contacts.accept", {"contact": alice.account.hex()})
        assert accepted["state"] == "accepted"


async def test_history_pages_and_custom_content(tmp_path: Path) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path), client_of(tmp_path, alice) as c:
        await c.call("contacts.add", {"address": bob.account.hex(), "name": "bob"})
        seqs = [(await c.call("dm.send", {"to": "bob", "text": f"m{i}"}))["seq"] for i in range(5)]
        latest = await c.call("dm.history", {"conversation": "bob", "limit": 2})
        assert [m["text"] for m in latest] == ["m3", "m4"]
        older = await c.call(
            "dm.history", {"conversation": "bob", "before_seq": seqs[3], "limit": 2}
        )
        assert [m["text"] for m in older] == ["m1", "m2"]
        newer = await c.call("dm.history", {"conversation": "bob", "after_seq": seqs[3]})
        assert [m["text"] for m in newer] == ["m4"]

        custom = await c.call(
            "dm.send",
            {
                "to": "bob",
                "content_type": "shop/order",
                "body": {"sku": "a1", "qty": 2},
                "text": "order a1",
                "reply_to": latest[0]["message_id"],
            },
        )
        assert (custom["content_type"], custom["body"], custom["text"]) == (
            "shop/order",
            {"sku": "a1", "qty": 2},
            "order a1",
        )
        with pytest.raises(ConfigError, match="content"):
            await c.call("dm.send", {"to": "bob", "content_type": "nonsense", "body": {}})
        with pytest.raises(ConfigError, match="the message is empty"):
            await c.call("dm.send", {"to": "bob"})

        batch = await c.call("dm.send_batch", {"to": "bob", "texts": ["b1", "b2", "b3"]})
        assert [(m["text"], m["state"]) for m in batch] == [(f"b{i}", "queued") for i in (1, 2, 3)]
        assert [m["seq"] for m in batch] == [custom["seq"] + i for i in (1, 2, 3)]
        tail = await c.call("dm.history", {"conversation": "bob", "after_seq": custom["seq"]})
        assert [m["message_id"] for m in tail] == [m["message_id"] for m in batch]
        with pytest.raises(ConfigError, match="empty"):
            await c.call("dm.send_batch", {"to": "bob", "texts": []})
        with pytest.raises(InvalidParamsError):
            await c.call("dm.send_batch", {"to": "bob", "texts": ["x"] * 257})


async def test_a_read_only_token_can_read_but_not_send(tmp_path: Path) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path):
        _, token = mint_token(
            tmp_path / "alice", scopes=["read"], label="viewer", rng=DeterministicRng("t")
        )
        async with client_of(tmp_path, alice, token=token) as viewer:
            assert viewer.info.scopes == frozenset({"read"})
            assert await viewer.call("contacts.list") == []
            with pytest.raises(PermissionDeniedError):
                await viewer.call("dm.send", {"to": bob.account.hex(), "text": "no"})
            with pytest.raises(PermissionDeniedError):
                await viewer.call("contacts.add", {"address": bob.account.hex()})
            with pytest.raises(NotFoundError):
                await viewer.call("dm.history", {"conversation": bob.account.hex()})


async def test_the_socket_lives_exactly_as_long_as_the_api_around_the_node(
    tmp_path: Path,
) -> None:
    alice = new_peer("alice")

    def node_in(home: str, *, rpc: bool) -> Node:
        return Node(
            NodeConfig(home=tmp_path / home, rpc=rpc),
            alice.identity,
            network=memory_opener(h),
            store=MemoryStore(),
            rng=DeterministicRng(home),
        )

    async with hub() as h:
        served = node_in("served", rpc=True)
        socket = tmp_path / "served" / "rpc.sock"
        async with served:
            assert not socket.exists()  # the node itself never serves its API
            async with open_api(served, rng=DeterministicRng("api")) as server:
                assert server is not None
                assert server.unix_path == socket
                assert socket.is_socket()
                token = (tmp_path / "served" / "rpc.token").read_text().strip()
                assert token not in repr(server)
            assert not socket.exists()

        quiet = node_in("quiet", rpc=False)
        async with quiet, open_api(quiet) as nothing:
            assert nothing is None
            assert not (tmp_path / "quiet" / "rpc.sock").exists()


def test_names_resolve_only_when_unambiguous() -> None:
    def contact(account: bytes, name: str) -> Contact:
        return Contact(
            account=account,
            display_name=name,
            state=ContactState.ACCEPTED,
            created_at=NOW_MS,
            updated_at=NOW_MS,
        )

    one, two = bytes(range(32)), bytes(range(1, 33))
    contacts = [contact(one, "Sam"), contact(two, "sam"), contact(bytes(32), "Ann")]
    assert resolve_contact("ann", contacts) == bytes(32)
    assert resolve_contact(" " + two.hex().upper() + " ", contacts) == two
    with pytest.raises(ConfigError, match="2 contacts"):
        resolve_contact("SAM", contacts)
    with pytest.raises(NotFoundError):
        resolve_contact("bob", contacts)


def _documented_methods() -> dict[str, tuple[str, set[str]]]:
    """``protocol-spec/rpc.md`` §9.3: method -> (scope, param names), parsed from the text."""
    text = (Path(__file__).resolve().parents[2] / "protocol-spec" / "rpc.md").read_text()
    section = text.split("### 9.3 Node methods", 1)[1].split("\n## 10.", 1)[0]
    documented: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"^##### ", section, flags=re.M)[1:]:
        heading = re.match(r"`([a-z_.]+)` — scope `(\w+)`", block)
        assert heading is not None, block[:60]
        params = block.split("params:", 1)[1].split("result:", 1)[0]
        names = set(re.findall(r"^(?:\s*|\s+\?)\??([a-z_]+): ", " " + params, flags=re.M))
        documented[heading.group(1)] = (heading.group(2), names)
    return documented


async def test_the_spec_documents_every_method_with_its_scope_and_params(
    tmp_path: Path,
) -> None:
    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path) as node:
        registry = build_registry(node)
    actual = {m.name: (m.scope, {f.name for f in m.schema.fields}) for m in registry}
    assert _documented_methods() == actual


async def test_a_history_too_large_for_one_frame_is_cut_and_says_where_to_go_on(
    tmp_path: Path,
) -> None:
    """Issue 12: 500 messages of 2 KiB made dm.history fail with -32603."""
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path), client_of(tmp_path, alice) as c:
        await c.call("contacts.add", {"address": bob.account.hex(), "name": "bob"})
        with trio.fail_after(60):
            sent = [
                (await c.call("dm.send", {"to": "bob", "text": f"{i:04d}" + "x" * 2044}))[
                    "message_id"
                ]
                for i in range(500)
            ]
            params: dict[str, Any] = {"conversation": "bob", "limit": 500}
            first = await c.call_page("dm.history", params)
            assert first.next is not None
            assert 0 < len(first.result) < 500
            assert [m["message_id"] for m in first.result] == sent[-len(first.result) :]
            got = list(first.result)
            page = first
            while page.next is not None:  # scrolling back: each page is older
                page = await c.call_page("dm.history", {**params, **page.next})
                got = list(page.result) + got
            assert [m["message_id"] for m in got] == sent
            # Catching up from the start keeps the oldest first.
            forward = await c.call_page("dm.history", {**params, "after_seq": 0})
            assert forward.next is not None
            assert [m["message_id"] for m in forward.result] == sent[: len(forward.result)]
            # A result that fits says nothing more.
            small = await c.call_page("dm.history", {"conversation": "bob", "limit": 5})
            assert small.next is None
            assert len(small.result) == 5
