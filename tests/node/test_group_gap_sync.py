"""Gossip that shows a gap (its events wait for an ancestor gossip lost) starts a sync
with its publisher at once, instead of waiting for the periodic sync (~30 s)."""

from __future__ import annotations

from pathlib import Path

import trio
from nacl.signing import SigningKey

from p2pchat.net.memory import LinkFaults
from p2pchat.protocol.envelope import seal
from p2pchat.protocol.sync_messages import Run, SyncBatch
from tests.node.harness import hub, new_peer, running, wait_for
from tests.node.test_group_hostile import open_group


async def test_a_gap_in_gossip_is_filled_by_a_sync_with_the_publisher_at_once(
    tmp_path: Path, autojump_clock: object
) -> None:
    peers = [new_peer(name) for name in ("alice", "bob")]
    async with (
        hub() as h,
        running(h, peers[0], tmp_path) as a,
        running(h, peers[1], tmp_path) as b,
    ):
        group = await open_group([a, b])
        # Both posts' gossip is lost on the way to bob.
        h.set_link_faults(a.peer_id, b.peer_id, LinkFaults(loss=1.0))
        first = await a.post(group, "lost")
        second = await a.post(group, "shows the gap")
        await trio.sleep(1)
        h.set_link_faults(a.peer_id, b.peer_id, LinkFaults())
        log_b = b._groups.engine(group)
        assert log_b.message(first) is None
        assert log_b.message(second) is None
        # Alice's next gossip message reaches bob: it carries only the second post.
        (data,) = (await a._groups._store.group_event_data(group, [second])).values()
        alice_key = SigningKey(peers[0].identity.device.signing_seed())
        batch = SyncBatch(group=group, runs=(Run(device=a.device_key, events=(data,)),))
        validate = b._groups.transport._validator(group)
        started = trio.current_time()
        # Not relayed (its ancestor is missing): buffered, and a sync with alice starts.
        validate(a.peer_id, seal(batch, signing_key=alice_key, now=1))
        await wait_for(lambda: log_b.message(first) is not None, within=60)
        assert log_b.message(second) is not None
        # Well before the periodic sync (24-36 s): the gap sync fetched it.
        assert trio.current_time() - started < 5
        assert b._groups.transport.stats["gap_syncs"] == 1
