"""Messages queued while the recipient is away arrive in the order they were sent.

Each failed attempt reschedules an outbox item with its own jittered delay, and the
first attempt replaces an item by its encrypted form (a new item id). Before the fix,
a newer message could become due, be encrypted and be delivered before an older one,
so the recipient's history showed a burst shuffled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchat.events import DeliveryChanged
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def delivered(peer: Peer, message_id: bytes) -> bool:
    return any(
        isinstance(e, DeliveryChanged) and e.message_id == message_id and e.state == "delivered"
        for e in peer.events
    )


@pytest.mark.parametrize("messages", [3, 12])
async def test_a_burst_sent_during_an_outage_keeps_its_order(
    tmp_path: Path, autojump_clock: object, messages: int
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a:
        async with running(h, bob, tmp_path):
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: delivered(alice, first.message_id))
        sent = [await a.send_dm(bob.account, f"m{i}") for i in range(messages)]
        with trio.fail_after(600):  # the outbox tries (and fails) while bob is away
            while (await a.statistics())["dm"].get("retries", 0) < 3:  # noqa: ASYNC110
                await trio.sleep(0.5)  # node counters have no event: polled, in mock time
        async with running(h, bob, tmp_path) as b:
            await wait_for(lambda: all(delivered(alice, m.message_id) for m in sent))
            history = await b.history(alice.account, limit=100)
    assert [m.message_id for m in history] == [first.message_id] + [m.message_id for m in sent]
