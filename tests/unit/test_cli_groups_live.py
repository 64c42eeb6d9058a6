"""``p2pchat groups live-read`` against two real running nodes (``test_cli_rpc``'s fixture):
a late joiner prints the comments of the range it plays, fetched from the member."""

from __future__ import annotations

from p2pchat.cli.groups_live import format_offset
from p2pchat.client import SyncClient
from tests.unit.test_cli_rpc import LIMIT, Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]  # the fixture, re-used from the other node-talking commands

MEDIA = "ab" * 32


def test_format_offset_reads_as_a_player_shows_it() -> None:
    assert format_offset(0) == "00:00"
    assert format_offset(61_999) == "01:01"
    assert format_offset(3_600_000 + 5_000) == "1:00:05"


def test_a_late_joiner_reads_the_comments_of_the_range_it_plays(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = p2p_json(alice, "groups", "create", "Movie night", "--live")["group"]["group_id"]
    media = {"media_hash": MEDIA, "mime": "video/mp4", "size": 10**9}
    with SyncClient.connect(home=alice) as client:
        for offset, text in ((5_000, "here"), (1_000, "it starts"), (20_000, "later")):
            params = {"group": group, **media, "offset_ms": offset, "text": text}
            client.call("groups.live", params, timeout=LIMIT)
    p2p_json(bob, "groups", "join", group)
    wait_until(lambda: len(p2p_json(alice, "groups", "members", group)["members"]) == 2)

    held = p2p_json(bob, "groups", "live-read", group, MEDIA, "--to", "10000", "--no-fetch")
    # Without a fetch, only what gossip brought (gossipsub may replay its recent message
    # cache to a new subscriber, so that can already be some of them): nothing fetched.
    assert held["fetched"] is None
    early = {(1_000, "it starts"), (5_000, "here")}
    assert {(c["offset"], c["text"]) for c in held["comments"]} <= early
    read = p2p_json(bob, "groups", "live-read", group, MEDIA, "--to", "10000")
    assert read["fetched"] is not None
    assert [(c["offset"], c["text"]) for c in read["comments"]] == [
        (1_000, "it starts"),
        (5_000, "here"),
    ]
    shown = p2p(bob, "groups", "live-read", group, MEDIA, "--from", "1000", "--to", "10000")
    assert shown.exit_code == 0, shown.output
    who = nodes.account("alice")[:8]
    assert shown.stdout.splitlines() == [f"00:01  {who}: it starts", f"00:05  {who}: here"]
    assert "No comments" in p2p(bob, "groups", "live-read", group, MEDIA, "--no-fetch",
                                "--from", "30000").stdout  # fmt: skip
    bad = p2p(bob, "groups", "live-read", group, MEDIA, "--from", "5", "--to", "5")
    assert bad.exit_code == 2
