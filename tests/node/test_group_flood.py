"""A member floods an open group with slow mode 0: the author ceiling holds, nothing is lost.

Bob posts hundreds of valid posts at once. Carol and Alice accept his events at no more
than the configured ceiling (burst + rate x elapsed time, sampled throughout), relay
nothing beyond it, buffer nothing meanwhile (the deferred events are not held anywhere),
and once anti-entropy sync has caught up they hold every post.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import trio

from p2pchat.node import Node
from tests.node.harness import FAST, hub, new_peer, running, wait_for

RATE, BURST, POSTS = 10.0, 40, 400
CEILING = replace(FAST, author_rate=RATE, author_burst=BURST)


async def test_a_flood_is_accepted_at_the_ceiling_and_caught_up_by_sync(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with (
        hub() as h,
        running(h, alice, tmp_path, delivery=CEILING) as a,
        running(h, bob, tmp_path, delivery=CEILING) as b,
        running(h, carol, tmp_path, delivery=CEILING) as c,
    ):
        group = await a.create_group("Open floor")  # public, open, slow mode 0
        for node in (b, c):
            await node.join_group(group.hex())
        nodes = (a, b, c)
        await wait_for(lambda: all(len(n.group_state(group).members) == 3 for n in nodes))
        await wait_for(
            lambda: len({n._groups.engine(group).statistics()["events"] for n in nodes}) == 1
        )

        def held(node: Node) -> int:
            return node._groups.engine(group).statistics()["events"]

        base = {id(n): held(n) for n in (a, c)}
        samples: list[tuple[float, int, int, int]] = []
        start = trio.current_time()

        async def sample() -> None:
            while True:
                stats = c._groups.engine(group).statistics()
                samples.append(
                    (
                        trio.current_time() - start,
                        held(a) - base[id(a)],
                        held(c) - base[id(c)],
                        stats["pending"],
                    )
                )
                await trio.sleep(0.25)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            for i in range(POSTS):
                await b.post(group, f"flood {i}")
            expected = held(b)
            await wait_for(lambda: held(a) == held(c) == expected, within=600)
            nursery.cancel_scope.cancel()

        # Every sample: no more of Bob's events than the ceiling admits by then (a
        # run granted at once may land one sample later: one burst of slack is not
        # allowed, only a second's worth of rate).
        assert len(samples) > 100
        for elapsed, at_alice, at_carol, pending in samples:
            bound = BURST + RATE * (elapsed + 1)
            assert at_alice <= bound, (elapsed, at_alice)
            assert at_carol <= bound, (elapsed, at_carol)
            assert pending == 0
        # The flood was real: far more was posted than the ceiling let through at once,
        # and the catch-up took the time the rate implies.
        assert expected - base[id(c)] >= POSTS
        assert samples[-1][0] >= (POSTS - BURST) / RATE
        assert c._groups.transport.stats["gossip_author_deferred"] > 0
        history = c.group_history(group, limit=POSTS + 10)
        texts = {m.content.text for m in history if m.content is not None}
        assert {f"flood {i}" for i in range(POSTS)} <= texts
