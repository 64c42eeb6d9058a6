"""``dm react | edit | delete`` and ``dm read --ids`` against two real running nodes."""

from __future__ import annotations

from tests.unit.test_cli_rpc import Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]


def test_react_edit_and_delete_from_the_command_line(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    first = p2p_json(alice, "dm", "send", "bob", "see you at 1")["message"]
    p2p_json(alice, "dm", "send", "bob", "bring the book")
    shown = p2p(alice, "dm", "read", "bob", "--ids")
    assert f"{first['message_id'][:8]}  me: see you at 1" in shown.output
    assert (
        p2p(alice, "dm", "edit", "bob", first["message_id"][:8], "see", "you at 2").exit_code == 0
    )
    assert p2p(alice, "dm", "delete", "bob", "last").exit_code == 0

    def bob_reads() -> str:
        result = p2p(bob, "dm", "read", nodes.account("alice"))
        return result.output if result.exit_code == 0 else ""

    wait_until(lambda: "(deleted)" in bob_reads() and "see you at 2 (edited)" in bob_reads())
    assert "bring the book" not in bob_reads()
    # Search honours them: the deleted message and the old text are not found.
    hits = p2p_json(bob, "search", "see", "you")["hits"]
    assert [(h["text"], h["id"]) for h in hits] == [("see you at 2", first["message_id"])]
    assert p2p_json(bob, "search", "book")["hits"] == []
    # Bob reacts to Alice's message; he cannot edit it (his node refuses, hers would too).
    assert (
        p2p(bob, "dm", "react", nodes.account("alice"), first["message_id"][:8], "👍").exit_code
        == 0
    )
    refused = p2p(bob, "dm", "edit", nodes.account("alice"), first["message_id"][:8], "mine now")
    assert refused.exit_code != 0
    assert "no message of yours" in refused.output
    wait_until(lambda: "see you at 2 (edited)  [👍 1]" in p2p(alice, "dm", "read", "bob").output)
