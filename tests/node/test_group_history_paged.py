"""A node with a long group history (issue 12): what it holds per event, and reading it
page by page. The history is written into a real ``SqliteStore`` by the history bench's
own setup (events signed by the group engine, sealed at rest as a node writes them); a
node is then started on that home and read through its API.

Structural, not RSS: held events are slim (no decoded map or body; about half of what a
decoded event costs), and a page of history is built alone, never the whole view (every
message of the group) that it used to be cut from.
"""

from __future__ import annotations

from pathlib import Path

from bench.history_bench import bench_identity, setup_history
from p2pchat.config import NodeConfig
from p2pchat.node import Node
from p2pchat.protocol.group_content import Message
from p2pchat.protocol.group_events import decode_event
from tests.conftest import DeterministicRng
from tests.node.harness import hub, memory_opener, mock_clock_ms

POSTS = 300


async def test_a_long_history_is_held_slim_and_read_a_page_at_a_time(
    tmp_path: Path, autojump_clock: object
) -> None:
    home = tmp_path / "home"
    await setup_history(home, "paged", POSTS)
    async with (
        hub() as h,
        Node(
            NodeConfig(home=home),
            bench_identity("paged"),
            network=memory_opener(h),
            clock=mock_clock_ms,
            rng=DeterministicRng("paged"),
            seed=1,
        ) as node,
    ):
        (info,) = await node.groups()
        group = info.group_id
        engine = node._groups.engine(group)
        held = engine.ordered_events()
        assert len(held) == POSTS + 1  # and the genesis
        assert all(not s.event.raw and not s.event.body for s in held)
        assert all(s.event.parsed is not None for s in held)
        # Nor their bytes (issue 12): read from the store to serve a sync, only the
        # genesis's are in memory; and the store has them exactly.
        assert engine.log.unstored_count == 1
        ids = [s.event_id for s in held]
        assert engine.event_bytes(ids[5]) is None
        stored = await node._groups._store.group_event_data(group, ids)
        assert [decode_event(stored[i]).event_id for i in ids] == ids

        pages: list[list[Message]] = []
        before = None
        while page := node.group_history(group, limit=64, before=before):
            pages.insert(0, page)
            before = page[0].ref.event_id
        # Every page was built alone: the whole view never was, nor the tallies' messages.
        assert engine._view is None
        assert [len(p) for p in pages] == [POSTS % 64] + [64] * (POSTS // 64)
        assert node.group_tallies(group).messages == ()
        # Same messages, same order, as the whole view (built last, for the comparison).
        paged = [m for page in pages for m in page]
        assert paged == list(node.group_view(group).messages)
        assert paged[-1].text == f"post {POSTS - 1} " * 8
        # A message, and the position of an event, are looked up alone.
        assert node.group_message(group, paged[5].ref.event_id) == paged[5]
        assert node.group_position(group, paged[5].ref.event_id) == 6
        assert node.group_notices(group) == []
        assert node.group_history_digest(group)[1] == POSTS + 1
        # What the node posts is in memory only until it is stored.
        posted = [(await node.post(group, f"new {i}")) for i in range(3)]
        assert engine.log.unstored_count == 1
        assert all(engine.event_bytes(p) is None and p in engine.log for p in posted)
