"""The live backlog on real py-libp2p hosts (127.0.0.1): a late joiner of a watch party
fetches the comments of the range it plays over ``/p2pchat/live/1.0.0``."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from p2pchat.node import Node
from p2pchat.protocol.content import MediaRef
from tests.integration.test_groups_libp2p import address, config, eventually, identity, started

pytestmark = pytest.mark.integration

MOVIE = MediaRef(hash=bytes(range(32)), mime="video/mp4", size=10**9)
COMMENTS = 40


async def test_a_late_joiner_fetches_the_range_it_plays_over_libp2p(tmp_path: Path) -> None:
    # One comment a second is a party's live pace (receivers rate-limit each author, and
    # so does a backlog, on the comments' own timestamps): both clocks step a second per
    # comment instead of the test sleeping for it.
    ahead = [0]

    def clock() -> int:
        return time.time_ns() // 1_000_000 + ahead[0]

    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a = Node(config(tmp_path / "a"), identity(), clock=clock)
            await stack.enter_async_context(started(a))
            b = Node(config(tmp_path / "b", (address(a),)), identity(), clock=clock)
            await stack.enter_async_context(started(b))
            for node in (a, b):
                await node.wait_published()
            group = await a.create_group("Movie night", kind="live", tags=("film",))
            for second in range(1, COMMENTS + 1):
                await a.live_comment(group, MOVIE, second * 1_000, f"at {second}s")
                ahead[0] += 1_000
            assert await b.join_group(group.hex()) == group
            await eventually(lambda: b.account_key in a.group_state(group).members)

            # (gossipsub may replay its recent messages to the new subscriber: those count
            # as held already)
            before = len(b.live_comments(group, MOVIE.hash, 0, 30_000))
            got = await b.fetch_live_comments(group, MOVIE.hash, 0, 30_000)
            held = b.live_comments(group, MOVIE.hash, 0, 30_000)
            assert [c.offset for c in held] == [s * 1_000 for s in range(1, 30)]
            assert got == 29 - before
