"""Issue 16 item 6: a DM to an account nobody publishes (a mistyped, valid-hex key) shows
why it waits (`account not found`) once its first attempt failed, and can be cancelled."""

from __future__ import annotations

import time
from pathlib import Path

from tests.unit.test_cli_rpc import LIMIT, Nodes, nodes, p2p, p2p_json

__all__ = ["nodes"]

NOBODY = "ab" * 32  # a well-formed account key with no record in the DHT


def _messages(home: Path, peer: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = p2p_json(home, "dm", "read", peer)["messages"]
    return found


def test_item6_unknown_account_shows_why_it_waits_and_can_be_cancelled(nodes: Nodes) -> None:
    alice = nodes.home("alice")
    sent = p2p_json(alice, "dm", "send", NOBODY, "hello?")["message"]
    assert sent["state"] == "queued"
    deadline = time.monotonic() + LIMIT
    while True:  # the first attempt is a DHT lookup that finds nothing
        (message,) = _messages(alice, NOBODY)
        if message["waiting"]:
            break
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
    assert message["state"] == "queued"
    assert str(message["waiting"]).startswith("account not found")
    text = p2p(alice, "dm", "read", NOBODY).stdout
    assert "waiting: account not found" in text
    assert sent["message_id"][:8] in text

    cancelled = p2p_json(alice, "dm", "cancel", NOBODY, sent["message_id"][:8])["cancelled"]
    assert [m["message_id"] for m in cancelled] == [sent["message_id"]]
    (message,) = _messages(alice, NOBODY)
    assert (message["state"], message["failure_reason"], message["waiting"]) == (
        "failed",
        "cancelled",
        None,
    )
    assert "failed: cancelled" in p2p(alice, "dm", "read", NOBODY).stdout
    again = p2p(alice, "dm", "cancel", NOBODY)
    assert again.exit_code != 0
    assert "no queued message to cancel" in again.stderr


def test_item6_only_a_queued_message_can_be_cancelled(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    assert p2p(bob, "contacts", "add", nodes.account("alice"), "--name", "alice").exit_code == 0
    sent = p2p_json(alice, "dm", "send", "bob", "hi")["message"]
    deadline = time.monotonic() + LIMIT
    while _messages(alice, "bob")[0]["state"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused = p2p(alice, "dm", "cancel", "bob", sent["message_id"])
    assert refused.exit_code != 0
    assert "no queued message to cancel" in refused.stderr
