"""Issue 16 item 4: a spent or expired private-group invite is a clear error, leaves no
half-joined group behind, and a fresh invite works afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchat.errors import PermissionDeniedError
from p2pchat.storage.records import GroupStatus
from tests.node.harness import hub, new_peer, running, wait_for


async def test_spent_invite_is_refused_cleanly_and_a_fresh_one_works(
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
        link = await a.invite(group, uses=1)
        assert await b.join_group(link) == group
        await wait_for(lambda: bob.account in a.group_state(group).members)

        with pytest.raises(PermissionDeniedError, match="used up"):
            await c.join_group(link)
        # nothing half-joined: no active group, carol is no member anywhere
        assert [g.group_id for g in await c.groups() if g.status is GroupStatus.ACTIVE] == []
        assert carol.account not in a.group_state(group).members

        fresh = await a.invite(group)
        assert await c.join_group(fresh) == group
        await wait_for(lambda: carol.account in a.group_state(group).members)
        assert carol.account in c.group_state(group).members
        await a.post(group, "welcome carol")
        await wait_for(
            lambda: any(
                m.content is not None and m.content.text == "welcome carol"
                for m in c.group_history(group)
            )
        )


async def test_expired_invite_is_refused_before_anything_is_stored(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        group = await a.create_group("Book club", kind="private")
        link = await a.invite(group, expires_in_ms=1_000)
        await trio.sleep(2)  # mock time (autojump): the invite is now past its expiry
        with pytest.raises(PermissionDeniedError, match="expired"):
            await b.join_group(link)
        assert await b.groups() == []
        assert await b.join_group(await a.invite(group)) == group
