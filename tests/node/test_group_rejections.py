"""Rejected group messages are counted by reason in ``node.statistics()`` and in the
``node.status`` RPC result (what ``p2pchat status`` shows), so an implementer whose
messages are dropped sees which rule refused them."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.protocol.envelope import seal
from p2pchat.protocol.sync_messages import Run, SyncBatch
from tests.conftest import DeterministicRng
from tests.node.harness import hub, new_peer, running
from tests.node.test_group_hostile import forged_event, open_group


async def test_refused_gossip_is_counted_by_reason(tmp_path: Path, autojump_clock: object) -> None:
    mallory_key = SigningKey(DeterministicRng("mallory")(32))
    peers = [new_peer(name) for name in ("alice", "bob")]
    async with (
        hub() as h,
        running(h, peers[0], tmp_path) as a,
        running(h, peers[1], tmp_path) as b,
    ):
        group = await open_group([a, b])
        assert (await b.statistics())["groups"]["rejected"] == {}
        validate = b._groups.transport._validator(group)
        mallory = peer_id_from_ed25519(bytes(mallory_key.verify_key))
        forged = Run(device=a.device_key, events=(forged_event(a, group, mallory_key),))
        bad = seal(SyncBatch(group=group, runs=(forged,)), signing_key=mallory_key, now=1)
        assert validate(mallory, bad) is False
        last = a._groups.engine(group).ordered_events()[-1]
        (data,) = (await a._groups._store.group_event_data(group, [last.event_id])).values()
        honest = Run(device=last.event.author_device, events=(data,))
        alice_key = SigningKey(peers[0].identity.device.signing_seed())
        stolen = seal(SyncBatch(group=group, runs=(honest,)), signing_key=alice_key, now=3)
        assert validate(mallory, stolen) is False
        rejected = (await b.statistics())["groups"]["rejected"]
        assert rejected == {"bad-signature": 1, "wrong-sender": 1}
