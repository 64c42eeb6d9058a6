"""Issue 16 item 13: removals and bans are shown in `groups read` (with their reason),
and reactions and removals appear in `groups read --follow`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pchat.client import SyncClient
from tests.unit.test_cli_groups import _create_and_join
from tests.unit.test_cli_rpc import LIMIT, Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]

_CLI = (sys.executable, "-m", "p2pchat.cli")


def test_item13_removal_and_ban_are_shown_in_read_with_their_reason(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    group = _create_and_join(nodes)
    p2p_json(bob, "groups", "post", group, "hello")
    wait_until(lambda: len(p2p_json(alice, "groups", "read", group)["messages"]) == 1)
    removed = p2p(alice, "groups", "remove", group, "bob", "--reason", "spoilers")
    assert removed.exit_code == 0, removed.output
    p2p_json(alice, "groups", "post", group, "after")
    entries = p2p_json(alice, "groups", "read", group)["messages"]
    assert [e["kind"] for e in entries] == ["post", "member.remove", "post"]
    notice = entries[1]
    assert (notice["account"], notice["reason"]) == (nodes.account("bob"), "spoilers")
    text = p2p(alice, "groups", "read", group).stdout
    assert "— me removed bob?: spoilers" in text  # "?": not verified
    # bob, removed, still reads the history up to his removal, with the reason
    wait_until(lambda: "spoilers" in p2p(bob, "groups", "read", group).stdout)

    banned = p2p(alice, "groups", "ban", group, "bob", "--reason", "spam")
    assert banned.exit_code == 0, banned.output
    assert "— me banned bob?" in p2p(alice, "groups", "read", group).stdout


def _follow_then(home: Path, group: str, act: Callable[[], None]) -> dict[str, Any]:
    """Start ``read GROUP --follow --count 1 --json`` in its own process; once it printed
    the history (so it is subscribed), ``act()``; return the one event it then printed."""
    process = subprocess.Popen(
        [*_CLI, "--home", str(home), "groups", "read", group, "--follow", "--count", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())  # subscribed before this line
        assert first["group_id"] == group
        act()
        out, err = process.communicate(timeout=LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    [line] = out.splitlines()
    event: dict[str, Any] = json.loads(line)["event"]
    return event


def test_item13_reactions_and_removals_appear_in_read_follow(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = _create_and_join(nodes)
    post = p2p_json(alice, "groups", "post", group, "react to me")["event_id"]
    wait_until(lambda: len(p2p_json(bob, "groups", "read", group)["messages"]) == 1)

    def react() -> None:
        with SyncClient.connect(home=bob) as client:
            params = {"group": group, "target": post, "emoji": "🎉"}
            client.call("groups.react", params, timeout=LIMIT)

    event = _follow_then(alice, group, react)
    assert (event["kind"], event["text"], event["target"]) == ("react", "🎉", post)
    assert event["author"] == nodes.account("bob")

    def remove() -> None:
        with SyncClient.connect(home=alice) as client:
            params = {"group": group, "account": nodes.account("bob"), "reason": "bye"}
            client.call("groups.remove", params, timeout=LIMIT)

    event = _follow_then(alice, group, remove)
    assert event["type"] == "group.changed"
    assert event["notice"]["reason"] == "bye"
