"""After a partition heals, the node's own periodic sync brings the sides together again.

A partition drops the connections across it and nothing restores them; a node must
dial members itself, or sides that keep talking among themselves never converge.
"""

from __future__ import annotations

from pathlib import Path

from tests.node.harness import hub, new_peer, running, wait_for


async def test_sides_converge_after_heal_without_help(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a,
        running(h, bob, tmp_path) as b,
        running(h, carol, tmp_path) as c,
    ):
        group = await a.create_group("Hikers")
        for node in (b, c):
            await node.join_group(group.hex())
        nodes = (a, b, c)
        await wait_for(lambda: all(len(n.group_state(group).members) == 3 for n in nodes))

        h.partition([alice.peer_id], [bob.peer_id, carol.peer_id])
        await a.post(group, "alone")
        await b.post(group, "together")
        await wait_for(lambda: not h.is_connected(alice.peer_id, bob.peer_id))
        h.heal()

        await wait_for(
            lambda: len({n._groups.engine(group).history_hash() for n in nodes}) == 1,
            within=300,
        )
        for node in nodes:
            texts = [m.content.text for m in node.group_history(group) if m.content is not None]
            assert sorted(texts) == ["alone", "together"]
