"""Full-text search (issue 17): ``p2pchat search`` / ``messages.search`` over real DMs and
a real group on two running nodes; nothing indexed on disk (the store is sealed)."""

from __future__ import annotations

from tests.unit.test_cli_groups import _create_and_join
from tests.unit.test_cli_rpc import Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]


def test_search_finds_every_word_in_dms_and_groups_newest_first(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    alice_key, bob_key = nodes.account("alice"), nodes.account("bob")
    assert p2p(bob, "dm", "send", alice_key, "the Quokka is happy today").exit_code == 0
    wait_until(lambda: bool(p2p_json(alice, "dm", "list")["conversations"]))  # with the message
    assert p2p(alice, "contacts", "add", bob_key, "--name", "bob").exit_code == 0
    assert p2p(alice, "dm", "send", "bob", "no QUOKKAS here, sorry").exit_code == 0
    assert p2p(alice, "dm", "send", "bob", "something else").exit_code == 0
    group = _create_and_join(nodes)
    p2p_json(bob, "groups", "post", group, "quokka party at eight")
    wait_until(lambda: len(p2p_json(alice, "groups", "read", group)["messages"]) == 1)

    found = p2p_json(alice, "search", "quokka")
    assert (found["total"], found["scanned"]) == (3, 4)
    hits = found["hits"]
    assert [h["text"] for h in hits] == [
        "quokka party at eight",
        "no QUOKKAS here, sorry",
        "the Quokka is happy today",
    ]
    assert [h["kind"] for h in hits] == ["group", "dm", "dm"]
    assert [h["label"] for h in hits] == ["bob?", "me", "bob?"]
    assert [h["title"] for h in hits] == ["Vinyl", "bob?", "bob?"]
    assert hits[0]["group_id"] == group
    assert hits[2]["conversation_id"] == f"dm:{bob_key}"
    assert hits[2]["author"] == bob_key
    sent = [h["sent_at"] for h in hits]
    assert sent == sorted(sent, reverse=True)

    both = p2p_json(alice, "search", "HAPPY", "quokka")["hits"]
    assert [h["text"] for h in both] == ["the Quokka is happy today"]
    assert p2p_json(alice, "search", "quokka", "--limit", "1")["hits"][0]["kind"] == "group"
    assert p2p_json(alice, "search", "walrus")["hits"] == []

    shown = p2p(alice, "search", "quokka").stdout.splitlines()
    assert shown[0].endswith("#Vinyl  bob?: quokka party at eight")
    assert shown[1].endswith("dm bob?  me: no QUOKKAS here, sorry")
    assert shown[-1] == "3 found in 4 messages."
    empty = p2p(alice, "search", "   ")
    assert empty.exit_code == 2
    assert "give some words to search for" in empty.stderr
