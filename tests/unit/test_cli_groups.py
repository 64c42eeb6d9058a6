"""``p2pchat groups ...`` against two real running nodes (see ``test_cli_rpc``'s fixture).

The nodes run on the in-memory network in a trio thread, each serving RPC in its home;
the commands run here through CliRunner over the unix socket, exactly as from a shell.
Every wait is bounded; the nodes are stopped after each test.
"""

from __future__ import annotations

import _thread
import json
import threading
import time
from pathlib import Path

from p2pchat.client import SyncClient
from tests.unit.test_cli_rpc import LIMIT, Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]  # the fixture, re-used from the other node-talking commands


def _texts(home: Path, group: str) -> list[str]:
    return [m["text"] for m in p2p_json(home, "groups", "read", group)["messages"]]


def _create_and_join(nodes: Nodes) -> str:
    """Alice creates "Vinyl" (tags vinyl, music); Bob joins with an invite link."""
    alice, bob = nodes.home("alice"), nodes.home("bob")
    created = p2p_json(alice, "groups", "create", "Vinyl", "--tag", "vinyl", "--tag", "music")
    group: str = created["group"]["group_id"]
    link = p2p_json(alice, "groups", "invite", "vinyl")["link"]
    joined = p2p_json(bob, "groups", "join", link)["group"]
    assert (joined["group_id"], joined["role"]) == (group, "member")
    wait_until(lambda: len(p2p_json(alice, "groups", "members", group)["members"]) == 2)
    return group


def test_create_invite_join_post_reply_react_read(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = _create_and_join(nodes)
    [listed] = p2p_json(alice, "groups", "list")["groups"]
    assert (listed["name"], listed["kind"], listed["role"], listed["tags"]) == (
        "Vinyl",
        "public",
        "owner",
        ["vinyl", "music"],
    )
    table = p2p(alice, "groups", "list")
    assert "Vinyl" in table.stdout
    assert group[:12] + "…" in table.stdout
    assert group in p2p(alice, "groups", "list", "--wide").stdout

    posted = p2p_json(alice, "groups", "post", group[:6], "welcome", "all")
    assert posted["group_id"] == group
    wait_until(lambda: _texts(bob, "Vinyl") == ["welcome all"])
    short = posted["event_id"][:8]
    reply = p2p_json(bob, "groups", "post", "vinyl", "thanks", "--reply-to", short)
    wait_until(lambda: _texts(alice, group) == ["welcome all", "thanks"])
    reacted = p2p(alice, "groups", "react", group, reply["event_id"][:10], "👍")
    assert reacted.exit_code == 0, reacted.output
    assert "Reacted" in reacted.stdout

    messages = p2p_json(alice, "groups", "read", group)["messages"]
    assert [(m["author"], m["reply_to"], m["reactions"]) for m in messages] == [
        (nodes.account("alice"), None, {}),
        (nodes.account("bob"), posted["event_id"], {"👍": 1}),
    ]
    p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "Bobby")
    human = p2p(alice, "groups", "read", "Vinyl").stdout.splitlines()
    assert human[0].endswith(f"{short}  me: welcome all")
    assert human[1].endswith(f"Bobby?: ↪ {short} thanks  👍1")  # "?": not verified


def test_members_promote_info_search_poll_and_vote(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = _create_and_join(nodes)
    p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "Bob")
    promoted = p2p(alice, "groups", "promote", group, "bob", "--role", "moderator")
    assert promoted.exit_code == 0, promoted.output
    members = p2p_json(alice, "groups", "members", group)["members"]
    assert [(m["name"], m["role"], m["me"]) for m in members] == [
        (None, "owner", True),
        ("Bob", "moderator", False),
    ]
    table = p2p(alice, "groups", "members", group).stdout
    assert "moderator" in table
    assert nodes.account("bob")[:12] in table
    info = p2p_json(alice, "groups", "info", group)["group"]
    assert (info["members"], info["roles"]["moderator"], info["rules"]["join"]) == (2, 1, "open")
    assert "Vinyl" in p2p(alice, "groups", "info", group).stdout

    found = p2p_json(bob, "groups", "search", "MUSIC")["groups"]
    assert [(g["group_id"], g["joined"]) for g in found] == [(group, True)]
    assert "Vinyl" in p2p(bob, "groups", "search", "music").stdout
    assert "No groups found" in p2p(bob, "groups", "search", "polka").stdout

    poll = p2p_json(alice, "groups", "poll", group, "Which?", "red", "blue")
    p2p_json(alice, "groups", "vote", group, poll["event_id"][:8], "2")
    with SyncClient.connect(home=alice) as client:
        [tally] = client.call("groups.view", {"group": group}, timeout=LIMIT)["polls"]
    assert (tally["question"], tally["counts"]) == ("Which?", [0, 1])


def test_read_follow_prints_new_messages(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = _create_and_join(nodes)
    done = threading.Event()

    def keep_posting() -> None:
        # The follower subscribes at a moment we cannot see from here: post until it has
        # printed one new message (and stopped), or give up and interrupt it.
        deadline = time.monotonic() + LIMIT
        with SyncClient.connect(home=alice) as client:
            n = 0
            while not done.wait(0.1):
                if time.monotonic() > deadline:
                    _thread.interrupt_main()
                    return
                client.call("groups.post", {"group": group, "text": f"ping {n}"}, timeout=LIMIT)
                n += 1

    poster = threading.Thread(target=keep_posting, daemon=True)
    poster.start()
    try:
        result = p2p(bob, "groups", "read", "Vinyl", "--follow", "--count", "1", "--json")
    finally:
        done.set()
        poster.join(LIMIT)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"event"')]
    assert len(lines) == 1
    event = lines[0]["event"]
    assert (event["type"], event["group_id"], event["author"]) == (
        "group.message",
        group,
        nodes.account("alice"),
    )
    assert event["text"].startswith("ping ")


def test_moderation_and_errors_have_their_exit_codes(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = _create_and_join(nodes)
    missing = p2p(alice, "groups", "read", "nowhere")
    assert missing.exit_code == 10
    assert "no group named 'nowhere'" in missing.stderr
    as_json = p2p(alice, "--json", "groups", "info", "ff" * 32)
    assert (as_json.exit_code, json.loads(as_json.stdout)["error"]["type"]) == (10, "not-found")
    p2p_json(alice, "groups", "create", "vinyl")  # a second "Vinyl": the name is ambiguous
    ambiguous = p2p(alice, "groups", "post", "VINYL", "hi")
    assert ambiguous.exit_code == 2
    assert "2 groups match" in ambiguous.stderr
    assert p2p(alice, "groups", "react", group, "xyz", "👍").exit_code == 2
    assert p2p(alice, "groups", "react", group, "abcdef", "👍").exit_code == 10

    removed = p2p(alice, "groups", "remove", group, nodes.account("bob"), "--reason", "spam")
    assert removed.exit_code == 0, removed.output
    assert "Removed" in removed.stdout
    wait_until(lambda: len(p2p_json(alice, "groups", "members", group)["members"]) == 1)
    banned = p2p_json(alice, "groups", "ban", group, nodes.account("bob"), "--days", "1")
    assert banned["group_id"] == group
    [entry] = p2p_json(alice, "groups", "info", group)["group"]["banned"]
    assert entry["account"] == nodes.account("bob")
    left = p2p(bob, "groups", "leave", group)
    assert left.exit_code == 0, left.output
    statuses = {g["group_id"]: g["status"] for g in p2p_json(bob, "groups", "list")["groups"]}
    assert statuses[group] == "left"


def test_without_a_node_groups_say_how_to_start_one(tmp_path: Path) -> None:
    result = p2p(tmp_path / "idle", "groups", "list")
    assert result.exit_code == 9
    assert "p2pchat node run" in result.stderr


def test_human_output_of_create_invite_join_post_and_leave(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    created = p2p(alice, "groups", "create", "Book club", "--private", "--about", "novels")
    assert created.exit_code == 0, created.output
    assert "Created private group Book club (" in created.stdout
    link = p2p(alice, "groups", "invite", "book club", "--uses", "2").stdout.strip()
    assert link.startswith("p2pchat-invite:")
    joined = p2p(bob, "groups", "join", link)
    assert joined.exit_code == 0, joined.output
    assert joined.stdout.startswith("Joined Book club (")
    posted = p2p(alice, "groups", "post", "Book club", "chapter", "one")
    assert posted.stdout.startswith("Posted (event ")
    first = p2p_json(alice, "groups", "read", "Book club")["messages"][0]["event_id"]
    assert first.startswith(posted.stdout.split()[2].rstrip(")."))  # the short id shown
    older = p2p(alice, "groups", "read", "Book club", "--before", first[:8])
    assert "No messages yet." in older.stdout
    assert p2p(bob, "groups", "leave", "book CLUB").stdout.startswith("Left group ")
    # A group we left stays readable (its history up to our leave); writing is refused.
    reread = p2p(bob, "groups", "read", "Book club")
    assert reread.exit_code == 0, reread.output
    assert p2p(bob, "groups", "post", "Book club", "still here?").exit_code == 11
