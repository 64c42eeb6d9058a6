"""A fork against an event a node has stored (its bytes no longer in memory, issue 12):
the node reads them from its store, the proof is made, the device frozen and shown."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from p2pchat.events import GroupChanged
from p2pchat.protocol.content import Content
from p2pchat.protocol.envelope import seal
from p2pchat.protocol.group_events import Post, decode_event, sign_event
from p2pchat.protocol.sync_messages import Run, SyncBatch
from tests.node.harness import hub, new_peer, running, wait_for
from tests.node.test_group_hostile import open_group


async def test_a_fork_against_a_stored_event_is_proven_from_the_store(
    tmp_path: Path, autojump_clock: object
) -> None:
    peers = [new_peer(name) for name in ("alice", "bob")]
    async with (
        hub() as h,
        running(h, peers[0], tmp_path) as a,
        running(h, peers[1], tmp_path) as b,
    ):
        group = await open_group([a, b])
        posted = await a.post(group, "the first version")
        engine = b._groups.engine(group)
        await wait_for(lambda: posted in engine.log and engine.event_bytes(posted) is None)
        held = engine.log.get(posted)
        assert held is not None
        # Alice's device signs another event at the same position (same parents).
        key = SigningKey(peers[0].identity.device.signing_seed())
        other = sign_event(
            Post(content=Content(type="p2pchat/text", body={}, text="another version")),
            signing_key=key,
            account=a.account_key,
            group=group,
            seq=held.event.seq,
            prev=held.event.prev,
            deps=held.event.deps,
            lamport=held.event.lamport,
            now=held.event.ts + 1,
        )
        batch = SyncBatch(group=group, runs=(Run(device=a.device_key, events=(other,)),))
        b._groups.transport._validator(group)(a.peer_id, seal(batch, signing_key=key, now=1))
        await wait_for(lambda: a.device_key in engine.log.frozen)
        (proof,) = engine.fork_proofs
        (stored,) = (await b._groups._store.group_event_data(group, [posted])).values()
        assert (proof.first, proof.second) == (stored, other)
        assert decode_event(proof.first).event_id == posted
        assert engine.log.frozen[a.device_key] == held.event.seq
        forked = [
            e for e in peers[1].events if isinstance(e, GroupChanged) and e.change == "forked"
        ]
        assert [e.device for e in forked] == [a.device_key]
