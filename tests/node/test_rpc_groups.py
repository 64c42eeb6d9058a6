"""The node's ``groups.*`` RPC methods, driven by the real client over each node's socket.

Nodes run on the in-memory network with the real clock (client and server talk over a
real unix socket); every wait is bounded by ``fail_after``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio

from p2pchat.api.groups import register_group_methods, resolve_group
from p2pchat.client import Event
from p2pchat.errors import ConfigError, LocalProtocolError, NotFoundError, PermissionDeniedError
from p2pchat.rpc import Registry, mint_token
from p2pchat.rpc.errors import InvalidParamsError
from p2pchat.storage.records import GroupInfo, GroupStatus
from tests.conftest import NOW_MS, DeterministicRng
from tests.node.harness import hub, new_peer, running
from tests.node.test_rpc_node import LIMIT, client_of

if TYPE_CHECKING:
    from p2pchat.node import Node

DAY_MS = 86_400_000


async def until(check: Callable[[], bool]) -> None:
    """Wait, in real time and bounded, for a condition on the nodes' state."""
    with trio.fail_after(LIMIT):
        while not check():  # noqa: ASYNC110 - a condition on node state, bounded
            await trio.sleep(0.01)


async def group_text(events: Any, text: str) -> Event:
    """The first ``group.message`` event carrying ``text``."""
    with trio.fail_after(LIMIT):
        async for item in events:
            if isinstance(item, Event) and item.data.get("text") == text:
                return item
    raise AssertionError(f"the stream ended before {text!r}")


async def test_create_invite_join_post_reply_react_and_page_history(tmp_path: Path) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a_node,
        running(h, bob, tmp_path),
        client_of(tmp_path, alice) as a,
        client_of(tmp_path, bob) as b,
    ):
        created = await a.call(
            "groups.create",
            {"name": "Vinyl collectors", "tags": ["vinyl", "music"], "about": "records"},
        )
        group = created["group_id"]
        assert len(group) == 64
        assert (created["kind"], created["role"], created["members"], created["epoch"]) == (
            "public",
            "owner",
            1,
            0,
        )
        assert (created["about"], created["rules"]["join"], created["tags"]) == (
            "records",
            "open",
            ["vinyl", "music"],
        )
        invite = await a.call("groups.invite", {"group": "vinyl COLLECTORS"})  # by name
        assert invite["group_id"] == group
        assert invite["link"].startswith("p2pchat-invite:")

        async with b.subscribe(["group.message"]) as inbox:
            joined = await b.call("groups.join", {"invite": invite["link"]})
            assert (joined["group_id"], joined["role"]) == (group, "member")
            await until(lambda: bob.account in a_node.group_state(bytes.fromhex(group)).members)
            posted = await a.call("groups.post", {"group": group[:8], "text": "welcome!"})
            event = await group_text(inbox, "welcome!")
        assert event.type == "group.message"
        assert (event.data["group_id"], event.data["event_id"], event.data["author"]) == (
            group,
            posted["event_id"],
            alice.account.hex(),
        )

        reply = await b.call(
            "groups.post", {"group": group, "text": "thanks", "reply_to": posted["event_id"]}
        )
        replied = bytes.fromhex(reply["event_id"])
        await until(lambda: a_node.group_view(bytes.fromhex(group)).message(replied) is not None)
        await a.call("groups.react", {"group": group, "target": reply["event_id"], "emoji": "👍"})
        for i in range(3):
            await a.call("groups.post", {"group": group, "text": f"n{i}"})
        await until(lambda: len(a_node.group_history(bytes.fromhex(group))) == 5)

        history = await a.call("groups.history", {"group": group})
        assert [m["text"] for m in history] == ["welcome!", "thanks", "n0", "n1", "n2"]
        first, second = history[0], history[1]
        assert (first["author"], first["kind"], first["reply_to"]) == (
            alice.account.hex(),
            "post",
            None,
        )
        assert (second["author"], second["reply_to"], second["reactions"]) == (
            bob.account.hex(),
            posted["event_id"],
            {"👍": 1},
        )
        assert not any(m["edited"] or m["deleted"] or m["sealed"] for m in history)
        page = await a.call("groups.history", {"group": group, "limit": 2})
        assert [m["text"] for m in page] == ["n1", "n2"]
        older = await a.call(
            "groups.history", {"group": group, "limit": 2, "before": page[0]["event_id"]}
        )
        assert [m["text"] for m in older] == ["thanks", "n0"]

        members = await a.call("groups.members", {"group": group})
        assert [(m["account"], m["role"], m["me"]) for m in members] == [
            (alice.account.hex(), "owner", True),
            (bob.account.hex(), "member", False),
        ]
        [listed] = await b.call("groups.list")
        assert (listed["group_id"], listed["status"], listed["members"]) == (group, "active", 2)

        # The history digest: equal once both hold the same events, different after a post
        # only one of them has seen.
        a_info = await a.call("groups.info", {"group": group})
        with trio.fail_after(LIMIT):
            while (await b.call("groups.info", {"group": group}))["events"] < a_info["events"]:  # noqa: ASYNC110 - polled over RPC, bounded
                await trio.sleep(0.01)
        b_info = await b.call("groups.info", {"group": group})
        assert len(a_info["history_hash"]) == 64
        assert (b_info["history_hash"], b_info["events"]) == (
            a_info["history_hash"],
            a_info["events"],
        )
        async with b.subscribe(["group.message"]) as inbox:
            await a.call("groups.post", {"group": group, "text": "one more"})
            await group_text(inbox, "one more")
        after = await a.call("groups.info", {"group": group})
        assert after["events"] == a_info["events"] + 1  # b saw it: a has it too
        assert after["history_hash"] != a_info["history_hash"]
        assert (await b.call("groups.info", {"group": group}))["history_hash"] == after[
            "history_hash"
        ]

        await b.call("groups.leave", {"group": "Vinyl collectors"})
        [left] = await b.call("groups.list")
        # A group we left stays readable: its last known state, without us.
        assert (left["status"], left["role"], left["members"]) == ("left", None, 1)
        history = await b.call("groups.history", {"group": group})
        assert [m["text"] for m in history if m["kind"] == "post"]
        await until(lambda: bob.account not in a_node.group_state(bytes.fromhex(group)).members)


async def test_search_join_by_id_promote_and_remove_with_three_nodes(tmp_path: Path) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a_node,
        running(h, bob, tmp_path),
        running(h, carol, tmp_path) as c_node,
        client_of(tmp_path, alice) as a,
        client_of(tmp_path, bob) as b,
        client_of(tmp_path, carol) as c,
    ):
        group = (await a.call("groups.create", {"name": "Jazz", "tags": ["jazz"]}))["group_id"]
        found = await c.call("groups.search", {"tag": "JAZZ"})
        assert [(r["group_id"], r["name"], r["joined"]) for r in found] == [(group, "Jazz", False)]
        await c.call("groups.join", {"invite": group})  # open group: the id is enough
        await b.call("groups.join", {"invite": group})
        state = lambda: a_node.group_state(bytes.fromhex(group))  # noqa: E731
        await until(lambda: len(state().members) == 3)

        await a.call("contacts.add", {"address": bob.account.hex(), "name": "Bob"})
        promoted = await a.call(
            "groups.set_role", {"group": group, "account": "bob", "role": "moderator"}
        )
        assert promoted["group_id"] == group
        assert state().role_of(bob.account) == "moderator"
        carol_events = c_node._groups.engine(bytes.fromhex(group)).statistics()["events"]
        with pytest.raises(PermissionDeniedError, match="cannot remove a moderator"):
            await c.call("groups.remove", {"group": group, "account": bob.account.hex()})
        with pytest.raises(PermissionDeniedError, match="cannot role"):
            await c.call("groups.set_role", {"group": group, "account": "ab" * 32, "role": "admin"})
        assert state().role_of(bob.account) == "moderator"
        # Refused before signing: carol's node authored nothing.
        assert c_node._groups.engine(bytes.fromhex(group)).statistics()["events"] == carol_events
        async with c.subscribe(["group.changed"]) as changes:
            await a.call("groups.remove", {"group": group, "account": carol.account.hex()})
            with trio.fail_after(LIMIT):  # carol may first hear of bob's promotion
                async for item in changes:
                    if isinstance(item, Event) and item.data["change"] != "role":
                        break
        assert isinstance(item, Event)
        assert (item.data["change"], item.data["account"]) == ("left", carol.account.hex())
        members = await a.call("groups.members", {"group": "jazz"})
        assert [(m["name"], m["role"]) for m in members] == [(None, "owner"), ("Bob", "moderator")]
        info = await a.call("groups.info", {"group": group})
        assert (info["members"], info["epoch"], info["roles"]["moderator"]) == (2, 1, 1)

        await a.call("groups.ban", {"group": group, "account": carol.account.hex(), "until": 1})
        banned = (await a.call("groups.info", {"group": group}))["banned"]
        assert banned == [{"account": carol.account.hex(), "until": 1}]


async def test_polls_buys_shares_edits_deletes_and_live_comments(tmp_path: Path) -> None:
    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path), client_of(tmp_path, alice) as a:
        group = (await a.call("groups.create", {"name": "Shop"}))["group_id"]
        deadline = NOW_MS + 400 * DAY_MS
        poll = await a.call(
            "groups.poll",
            {
                "group": group,
                "question": "Which?",
                "options": ["red", "blue"],
                "deadline": deadline,
            },
        )
        await a.call("groups.vote", {"group": group, "poll": poll["event_id"], "choices": [1]})
        buy = await a.call(
            "groups.buy",
            {
                "group": group,
                "title": "Turntables",
                "options": ["black"],
                "quota": 5,
                "deadline": deadline,
                "price": 19900,
                "currency": "eur",
            },
        )
        await a.call(
            "groups.buy_join",
            {"group": group, "buy": buy["event_id"], "option": 0, "quantity": 2},
        )
        view = await a.call("groups.view", {"group": group})
        [tally] = view["polls"]
        assert (tally["poll_id"], tally["counts"], tally["voters"]) == (poll["event_id"], [0, 1], 1)
        [state] = view["buys"]
        assert (state["units"], state["reached"], state["price"]) == (
            [2],
            False,
            {"amount": 19900, "currency": "EUR"},
        )
        assert state["participants"] == [
            {"account": alice.account.hex(), "option": 0, "quantity": 2}
        ]

        await a.call("groups.share", {"group": group, "title": "A deck", "url": "https://x.test"})
        note = await a.call("groups.post", {"group": group, "text": "typo"})
        await a.call("groups.edit", {"group": group, "target": note["event_id"], "text": "fixed"})
        gone = await a.call("groups.post", {"group": group, "text": "oops"})
        await a.call("groups.delete", {"group": group, "target": gone["event_id"]})
        history = await a.call("groups.history", {"group": group})
        by_id = {m["event_id"]: m for m in history}
        assert (by_id[note["event_id"]]["text"], by_id[note["event_id"]]["edited"]) == (
            "fixed",
            True,
        )
        assert (by_id[gone["event_id"]]["text"], by_id[gone["event_id"]]["deleted"]) == ("", True)
        assert [m["text"] for m in history if m["kind"] == "share"] == ["A deck"]

        live = (await a.call("groups.create", {"name": "Movie night", "kind": "live"}))["group_id"]
        media = {"media_hash": "ab" * 32, "mime": "video/mp4", "size": 1000}
        for offset, text in ((5_000, "here"), (1_000, "start")):
            await a.call("groups.live", {"group": live, **media, "offset_ms": offset, "text": text})
        comments = await a.call(
            "groups.live_comments",
            {"group": live, "media_hash": "ab" * 32, "start_ms": 0, "end_ms": 10_000},
        )
        assert [(x["offset"], x["text"]) for x in comments] == [(1_000, "start"), (5_000, "here")]
        with pytest.raises(LocalProtocolError):  # live comments only in live groups
            await a.call("groups.live", {"group": group, **media, "offset_ms": 0, "text": "x"})


async def test_bad_arguments_and_unknown_groups_have_their_codes(tmp_path: Path) -> None:
    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path), client_of(tmp_path, alice) as a:
        with pytest.raises(NotFoundError, match="no group named"):
            await a.call("groups.history", {"group": "nowhere"})
        with pytest.raises(NotFoundError):
            await a.call("groups.post", {"group": "cd" * 32, "text": "hi"})
        group = (await a.call("groups.create", {"name": "Twins"}))["group_id"]
        await a.call("groups.create", {"name": "twins"})
        with pytest.raises(ConfigError, match="2 groups match"):
            await a.call("groups.info", {"group": "TWINS"})
        with pytest.raises(ConfigError, match="invalid poll"):
            await a.call(
                "groups.poll", {"group": group, "question": "?", "options": ["one"], "deadline": 1}
            )
        with pytest.raises(ConfigError, match="unknown role"):
            await a.call("groups.set_role", {"group": group, "account": "ab" * 32, "role": "boss"})
        with pytest.raises(ConfigError, match="invalid group"):
            await a.call("groups.create", {"name": "x", "kind": "secret"})
        with pytest.raises(ConfigError, match="event id"):
            await a.call("groups.react", {"group": group, "target": "zz", "emoji": "x"})
        with pytest.raises(NotFoundError, match="no such message"):
            await a.call("groups.history", {"group": group, "before": "ef" * 32})
        with pytest.raises(ConfigError, match="price and currency"):
            await a.call("groups.share", {"group": group, "title": "t", "url": "u", "price": 1})
        with pytest.raises(InvalidParamsError):
            await a.call("groups.history", {"group": group, "limit": 0})
        with pytest.raises(ConfigError, match="not a valid invite link") as damaged:
            await a.call("groups.join", {"invite": "p2pchat-invite:SECRETSTUFF!"})
        assert "SECRETSTUFF" not in str(damaged.value)
        link = (await a.call("groups.invite", {"group": group}))["link"][:128]
        with pytest.raises(ConfigError, match="invite link") as mistaken:
            await a.call("groups.post", {"group": link, "text": "hi"})  # a link is no GROUP
        assert link.split(":", 1)[1][:16] not in str(mistaken.value)


async def test_token_scopes_guard_posting_and_moderation(tmp_path: Path) -> None:
    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path), client_of(tmp_path, alice) as a:
        group = (await a.call("groups.create", {"name": "Quiet"}))["group_id"]
        await a.call("groups.post", {"group": group, "text": "hello"})
        home = tmp_path / "alice"
        _, reader = mint_token(home, scopes=["read"], label="r", rng=DeterministicRng("r"))
        _, sender = mint_token(home, scopes=["send"], label="s", rng=DeterministicRng("s"))
        async with client_of(tmp_path, alice, token=reader) as viewer:
            assert [m["text"] for m in await viewer.call("groups.history", {"group": group})] == [
                "hello"
            ]
            assert (await viewer.call("groups.info", {"group": group}))["name"] == "Quiet"
            for method, params in (
                ("groups.post", {"group": group, "text": "no"}),
                ("groups.create", {"name": "Mine"}),
                ("groups.invite", {"group": group}),
                ("groups.leave", {"group": group}),
            ):
                with pytest.raises(PermissionDeniedError):
                    await viewer.call(method, params)
        async with client_of(tmp_path, alice, token=sender) as poster:
            await poster.call("groups.post", {"group": group, "text": "from a bot"})
            with pytest.raises(PermissionDeniedError):
                await poster.call("groups.invite", {"group": group})
            with pytest.raises(PermissionDeniedError):
                await poster.call("groups.ban", {"group": group, "account": "ab" * 32})


def test_groups_resolve_by_id_name_or_prefix_and_prefer_active_ones() -> None:
    def info(first: int, name: str, status: GroupStatus = GroupStatus.ACTIVE) -> GroupInfo:
        return GroupInfo(
            group_id=bytes([first]) + bytes(31),
            kind="public",
            name=name,
            genesis=b"g",
            status=status,
            joined_at=NOW_MS,
            updated_at=NOW_MS,
        )

    jazz, old, rock = info(0xAB, "Jazz"), info(0xAC, "jazz", GroupStatus.LEFT), info(0x12, "Rock")
    groups = [jazz, old, rock]
    assert resolve_group("JAZZ", groups) == jazz.group_id  # the active one wins
    assert resolve_group("1200", groups) == rock.group_id
    assert resolve_group(" " + old.group_id.hex().upper(), groups) == old.group_id
    assert resolve_group("ef" * 32, groups) == bytes.fromhex("ef" * 32)  # ids pass through
    twin = info(0xAB, "jazz")
    with pytest.raises(ConfigError, match="2 groups"):
        resolve_group("jazz", [*groups, twin])
    with pytest.raises(ConfigError, match="2 groups"):
        resolve_group("ab00", [*groups, twin])
    with pytest.raises(NotFoundError):
        resolve_group("abc", groups)  # too short for a prefix, and nobody's name
    with pytest.raises(NotFoundError):
        resolve_group("0000", groups)


def test_join_params_keep_the_invite_secret_out_of_their_repr() -> None:
    registry = Registry()
    register_group_methods(registry, cast("Node", SimpleNamespace(account_key=bytes(32))))
    [join] = [m for m in registry if m.name == "groups.join"]
    assert [(f.name, f.required) for f in join.schema.fields] == [("invite", True)]
    params = join.schema.validate({"invite": "p2pchat-invite:TOPSECRET"})
    assert "TOPSECRET" not in repr(params)
