"""``profile set`` / ``profile show`` against two real running nodes."""

from __future__ import annotations

from tests.unit.test_cli_rpc import Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]


def test_a_profile_reaches_a_contact_and_names_us_there(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    assert p2p(alice, "profile", "show").output.strip() == "No profile yet."
    too_long = p2p(alice, "profile", "set", "--about", "x" * 300)
    assert too_long.exit_code != 0
    about = "reads books\n\x1b[2Jand hikes"
    mine = p2p_json(alice, "profile", "set", "--name", "Alice  Liddell", "--about", about)
    assert mine["profile"]["name"] == "Alice Liddell"  # white space runs made one space

    def bob_has() -> dict[str, object]:
        found: dict[str, object] = p2p_json(bob, "profile", "show", nodes.account("alice"))[
            "profile"
        ]
        return found

    wait_until(lambda: bob_has()["name"] == "Alice Liddell")
    assert bob_has()["about"] == about
    shown = p2p(bob, "profile", "show", nodes.account("alice")).output
    assert "\x1b" not in shown
    assert "\\x1b[2J" in shown  # inert
    # Bob's node now calls Alice by the name she claims, marked as a claim.
    assert p2p(bob, "contacts", "add", nodes.account("alice")).exit_code == 0
    labels = {c["account"]: c["label"] for c in p2p_json(bob, "contacts", "list")["contacts"]}
    assert labels[nodes.account("alice")] == "~Alice Liddell"
