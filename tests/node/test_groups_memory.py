"""Interest groups between real nodes on the in-memory network (MockClock, deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchat.errors import PermissionDeniedError
from p2pchat.events import GroupChanged, GroupMessage
from p2pchat.protocol.group_events import Sealed, decode_event
from p2pchat_crypto.errors import UnknownSessionError
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def texts(peer: Peer, group_id: bytes) -> list[str]:
    return [e.text for e in peer.events if isinstance(e, GroupMessage) and e.group_id == group_id]


async def test_public_group_invite_post_both_ways_and_search(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a,
        running(h, bob, tmp_path) as b,
        running(h, carol, tmp_path) as c,
    ):
        group = await a.create_group("Vinyl collectors", tags=("vinyl", "music"))
        link = await a.invite(group)
        assert await b.join_group(link) == group
        await wait_for(lambda: bob.account in a.group_state(group).members)

        await a.post(group, "welcome!")
        await wait_for(lambda: "welcome!" in texts(bob, group))
        await b.post(group, "thanks")
        await wait_for(lambda: "thanks" in texts(alice, group))

        found = await c.search_groups("VINYL")  # tags are case-folded
        assert [(r["group_id"], r["name"]) for r in found] == [(group.hex(), "Vinyl collectors")]
        await c.join_group(group.hex())  # open group: no invite needed
        await wait_for(lambda: carol.account in a.group_state(group).members)
        history = [m.content.text for m in c.group_history(group) if m.content is not None]
        assert history == ["welcome!", "thanks"]
        nodes = (a, b, c)
        await wait_for(lambda: all(len(n.group_state(group).members) == 3 for n in nodes))
        hashes = {n._groups.engine(group).history_hash() for n in nodes}
        assert len(hashes) == 1


async def test_private_group_removed_member_cannot_read_the_next_epoch(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a,
        running(h, bob, tmp_path) as b,
        running(h, carol, tmp_path) as c,
    ):
        group = await a.create_group("Book club", kind="private")
        for node in (b, c):
            await node.join_group(await a.invite(group))
        await wait_for(lambda: len(a.group_state(group).members) == 3)
        await a.post(group, "secret plans")
        await wait_for(lambda: "secret plans" in texts(bob, group))
        await wait_for(lambda: "secret plans" in texts(carol, group))

        await a.remove(group, carol.account, reason="spoilers")
        await wait_for(lambda: carol.account not in b.group_state(group).members)
        await wait_for(
            lambda: any(
                isinstance(e, GroupChanged) and e.change == "left" and e.account == carol.account
                for e in carol.events
            )
        )
        later = await a.post(group, "after carol left")
        await wait_for(lambda: "after carol left" in texts(bob, group))
        # Carol's node stopped taking part, and even with the ciphertext in hand (say a
        # member leaks it) her keys for the group cannot open it: new epoch, new keys.
        (data,) = (await a._groups._store.group_event_data(group, [later])).values()
        sealed = decode_event(data).parsed
        assert isinstance(sealed, Sealed)
        with pytest.raises(UnknownSessionError):
            c._groups._keyrings[group].decrypt(sealed.ciphertext)
        assert "after carol left" not in texts(carol, group)
        # What she read before her removal stays readable; writing is refused.
        assert "secret plans" in [
            m.content.text for m in c.group_history(group) if m.content is not None
        ]
        with pytest.raises(PermissionDeniedError):
            await c.post(group, "let me back in")


async def test_a_leave_finished_twice_at_once_finishes_once(
    tmp_path: Path, autojump_clock: object
) -> None:
    """``leave`` and the sync loop's retry of a departing group may finish the same leave
    at once (the testnet's p11 crashed on it: the second found the engine gone)."""
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        group = await a.create_group("Leavers")
        await b.join_group(await a.invite(group))
        await wait_for(lambda: bob.account in a.group_state(group).members)
        service = b._groups
        service._departing.add(group)  # as leave() marks it, before finishing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service._finish_leaving, group)
            nursery.start_soon(service._finish_leaving, group)
        assert group not in service._departing
        assert group in service._archived
