"""Issue 16 item 1: what a peer writes never steers the reader's terminal.

Bob (a real node) posts and writes text full of escape sequences, bidi overrides and
forged line breaks; Alice's CLI shows them visibly escaped in every text view, while
``--json`` gives the exact values back.
"""

from __future__ import annotations

from p2pchat.client import SyncClient
from p2pchat.text import is_unsafe
from tests.unit.test_cli_rpc import LIMIT, Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]

HOSTILE = "hi\x1b[2J\x1b[H\x1b]0;pwned\x07 \x9b31m \u202egnp.exe\n2024-01-01 00:00  me: forged"


def _clean(output: str) -> None:
    assert not [hex(ord(ch)) for ch in output if is_unsafe(ch) and ch != "\n"], output


def test_group_posts_names_and_dms_are_inert_in_text_and_exact_in_json(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = p2p_json(bob, "groups", "create", "Bad\x1b[31mName\u202e", "--tag", "x")["group"]
    link = p2p_json(bob, "groups", "invite", group["group_id"])["link"]
    assert p2p(alice, "groups", "join", link).exit_code == 0
    with SyncClient.connect(home=bob) as client:
        client.call("groups.post", {"group": group["group_id"], "text": HOSTILE}, timeout=LIMIT)
    wait_until(
        lambda: (
            [m["text"] for m in p2p_json(alice, "groups", "read", group["group_id"])["messages"]]
            == [HOSTILE]
        )
    )
    for command in (
        ("groups", "read", group["group_id"]),
        ("groups", "list"),
        ("groups", "info", group["group_id"]),
        ("groups", "join", link),
    ):
        result = p2p(alice, *command)
        _clean(result.stdout + result.stderr)
    shown = p2p(alice, "groups", "read", group["group_id"]).stdout
    assert "\\x1b[2J\\x1b[H" in shown
    assert "\\u202egnp.exe" in shown
    # the text's own line break is indented: it cannot pass for a line of output
    assert "\n    2024-01-01 00:00  me: forged" in shown
    assert not any(line.startswith("2024-01-01 00:00  me: forged") for line in shown.splitlines())
    assert "Bad\\x1b[31mName\\u202e" in p2p(alice, "groups", "join", link).stdout

    # a direct message, and the JSON view that keeps it exact
    assert p2p(bob, "contacts", "add", nodes.account("alice"), "--name", "a").exit_code == 0
    p2p_json(bob, "dm", "send", "a", HOSTILE)
    wait_until(lambda: bool(p2p_json(alice, "dm", "list")["conversations"]))
    dm_text = p2p(alice, "dm", "read", nodes.account("bob"))
    _clean(dm_text.stdout)
    assert "\\x1b]0;pwned\\x07" in dm_text.stdout
    raw = p2p(alice, "dm", "read", nodes.account("bob"), "--json").stdout
    _clean(raw)
    [message] = p2p_json(alice, "dm", "read", nodes.account("bob"))["messages"]
    assert message["text"] == HOSTILE
