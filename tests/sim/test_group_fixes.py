"""Regression tests for node bugs the simulator found (each one small and deterministic)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from p2pchat.errors import NetworkError
from p2pchat.events import GroupMessage
from p2pchat.groups.service import GROUP_KEY_CONTENT_TYPE
from p2pchat.net.memory import LinkFaults
from p2pchat.protocol.content import Content
from p2pchat.storage.records import GroupStatus
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def deliveries(peer: Peer, group: bytes) -> Counter[bytes]:
    return Counter(
        e.event_id for e in peer.events if isinstance(e, GroupMessage) and e.group_id == group
    )


def texts(peer: Peer, group: bytes) -> list[str]:
    return [e.text for e in peer.events if isinstance(e, GroupMessage) and e.group_id == group]


async def test_private_post_reaches_the_app_once_and_not_again_after_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a:
        async with running(h, bob, tmp_path) as b:
            group = await a.create_group("Book club", kind="private")
            await b.join_group(await a.invite(group))
            await wait_for(lambda: len(a.group_state(group).members) == 2)
            posted = await a.post(group, "secret plans")
            await wait_for(lambda: "secret plans" in texts(bob, group))
            await wait_for(lambda: b._groups.engine(group).view.message(posted) is not None)
        assert deliveries(bob, group)[posted] == 1
        assert texts(bob, group) == ["secret plans"]  # no empty placeholder first
        async with running(h, bob, tmp_path) as b:  # restart from the same store
            assert posted in b._groups.engine(group).log  # held, its bytes in the store
            await b.sync_group(group)
        assert deliveries(bob, group)[posted] == 1


async def test_private_history_is_readable_after_a_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a:
        async with running(h, bob, tmp_path) as b:
            group = await a.create_group("Book club", kind="private")
            await b.join_group(await a.invite(group))
            await wait_for(lambda: len(a.group_state(group).members) == 2)
            posted = await a.post(group, "secret plans")
            await wait_for(lambda: "secret plans" in texts(bob, group))
        async with running(h, bob, tmp_path) as b:
            message = b._groups.engine(group).view.message(posted)
            assert message is not None
            assert message.content is not None
            assert message.content.text == "secret plans"


async def test_join_by_invite_fails_cleanly_when_the_invite_cannot_be_fetched(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A join authored before its invite is known sorts before the invite and is void
    for good; the node must refuse to author it, and a later attempt must work."""
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        group = await a.create_group("Book club", kind="private")
        link = await a.invite(group)
        h.set_link_faults(alice.peer_id, bob.peer_id, LinkFaults(loss=1.0))
        with pytest.raises(NetworkError):
            await b.join_group(link)
        assert [g.group_id for g in await b.groups() if g.status is GroupStatus.ACTIVE] == []
        h.set_link_faults(alice.peer_id, bob.peer_id, LinkFaults())
        assert await b.join_group(link) == group
        await wait_for(lambda: bob.account in a.group_state(group).members)
        assert bob.account in b.group_state(group).members


async def test_a_sender_key_that_outruns_its_senders_join_is_held_until_the_join(
    tmp_path: Path, autojump_clock: object
) -> None:
    """The key DM is acknowledged once; refusing it (the sender is not a member *yet*,
    as gossip is lossy) lost it for good, and with it every post under that key."""
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a,
        running(h, bob, tmp_path) as b,
        running(h, carol, tmp_path) as c,
    ):
        group = await a.create_group("Book club", kind="private")
        await b.join_group(await a.invite(group))
        await wait_for(lambda: len(b.group_state(group).members) == 2)
        h.partition([alice.peer_id, carol.peer_id], [bob.peer_id])
        await c.join_group(await a.invite(group))
        await c._groups._new_epoch(group, c.group_state(group).epoch, ())  # carol's key
        outbound = c._groups._keyrings[group].outbound(group)
        assert outbound is not None
        key = Content(
            type=GROUP_KEY_CONTENT_TYPE,
            body={"g": group, "dist": outbound.distribution_message()},
            text="",
        )
        await c.post(group, "hello from carol")
        assert carol.account not in b.group_state(group).members
        await b._groups._on_group_key(carol.account, key)  # before bob knows carol
        h.heal()
        await wait_for(lambda: "hello from carol" in texts(bob, group), within=300)


async def test_a_leave_reaches_the_others(tmp_path: Path, autojump_clock: object) -> None:
    """The leaver stops serving the group's sync once it has left, so its leave event
    must be handed over before: otherwise nobody ever learns of it."""
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        group = await a.create_group("Hikers")
        await b.join_group(group.hex())
        await wait_for(lambda: bob.account in a.group_state(group).members)
        await b.leave_group(group)
        await wait_for(lambda: bob.account not in a.group_state(group).members, within=120)


async def test_a_removal_and_later_posts_learnt_in_one_sync_do_not_crash_the_node(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Carol is away while she is removed and the others post on; she learns it all in
    one sync batch: the effects after her own removal (a sealed post, a new epoch) run
    on a group that is already closed, and must not need it open."""
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
        await wait_for(lambda: all(len(n.group_state(group).members) == 3 for n in (a, b, c)))
        h.partition([alice.peer_id, bob.peer_id], [carol.peer_id])
        await a.remove(group, carol.account, reason="spoilers")
        await wait_for(lambda: carol.account not in b.group_state(group).members)
        await b.post(group, "after carol left")
        await a.post(group, "and another")
        h.heal()
        await wait_for(lambda: carol.account not in c.group_state(group).members, within=300)
        assert "after carol left" not in texts(carol, group)
        assert "and another" not in texts(carol, group)
