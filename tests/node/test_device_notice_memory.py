"""Issue 18, fan-out: a contact learns at once that an account linked or revoked a device
(``p2pchat/device-list`` node-to-node content), not a minute later on its next DHT look-up
of the list: a message sent right after a link reaches the new device, one sent right
after a revocation does not reach the revoked device. Real nodes on the memory network."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.dm.device_notice import BURST
from p2pchat.dm.fanout import TARGETS_TTL_MS
from p2pchat.errors import RateLimitedError, WireError
from p2pchat.protocol.content import Content
from p2pchat.protocol.device_list import DEVICE_LIST_CONTENT_TYPE
from p2pchat.storage.records import DeliveryState
from tests.node.harness import hub, mock_clock_ms, new_peer, running, wait_for
from tests.node.test_fanout_memory import has_text, linked, texts


async def test_a_contact_sends_to_a_new_device_at_once_and_never_to_a_revoked_one(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a1, running(h, bob, tmp_path) as b:
        await b.add_contact(alice.account.hex(), name="Alice")
        await a1.add_contact(bob.account.hex(), name="Bob")
        await b.send_dm(alice.account, "before the link")
        await wait_for(lambda: has_text(alice, "before the link"))
        laptop = alice.identity.device.public_key
        assert b._dms.targets.known(alice.account) == (laptop,)
        assert not b._dms.targets.stale(alice.account)  # Bob would not look it up again

        linked_at = mock_clock_ms()
        async with linked(h, alice, "desktop", tmp_path) as alice2:
            desktop = alice2.identity.device.public_key
            await wait_for(lambda: desktop in (b._dms.targets.known(alice.account) or ()))
            right_after = await b.send_dm(alice.account, "right after the link")
            await wait_for(lambda: has_text(alice2, "right after the link"))
            assert has_text(alice, "right after the link")
            assert mock_clock_ms() - linked_at < TARGETS_TTL_MS  # well within the TTL
            deliveries = await b.dm_deliveries(right_after.message_id)
            assert {d.device for d in deliveries} == {laptop, desktop}
            assert a1._directory is not None
            after_link = a1._directory.device_list_value
            assert after_link is not None

            revoked_at = mock_clock_ms()
            await a1.revoke_device(desktop)
            await wait_for(lambda: desktop in b._dms.targets.revoked)
            assert b._dms.targets.known(alice.account) == (laptop,)
            after = await b.send_dm(alice.account, "after the revocation")
            await wait_for(lambda: has_text(alice, "after the revocation"))
            assert mock_clock_ms() - revoked_at < TARGETS_TTL_MS
            assert [d.device for d in await b.dm_deliveries(after.message_id)] == [laptop]
            assert not has_text(alice2, "after the revocation")
            for d in await b.dm_deliveries(right_after.message_id):
                assert d.state is DeliveryState.DELIVERED

            # Never rolled back: the older list (with the desktop) changes nothing.
            handler = b._dms.control_handlers[DEVICE_LIST_CONTENT_TYPE]
            applied = b._dms.stats["control"]
            old = Content(type=DEVICE_LIST_CONTENT_TYPE, body={"list": after_link}, text="")
            await handler(alice.account, laptop, old)
            assert b._dms.targets.known(alice.account) == (laptop,)
            assert desktop in b._dms.targets.revoked
            assert b._dms.stats["control"] == applied
            # Bounded: a flood of lists from one account is refused before any check.
            refused = 0
            for _ in range(BURST + 1):
                try:
                    await handler(alice.account, laptop, old)
                except RateLimitedError:
                    refused += 1
            assert refused >= 1
            # Garbage, and a list of another account, are refused with a typed error.
            garbage = Content(type=DEVICE_LIST_CONTENT_TYPE, body={"list": b"junk"}, text="")
            with pytest.raises(WireError):
                await handler(bob.account, bob.identity.device.public_key, garbage)
            with pytest.raises(WireError):  # Alice's list, sent under another account
                await handler(new_peer("carol").account, laptop, old)
            assert b._dms.targets.known(alice.account) == (laptop,)


async def test_what_was_sent_before_the_sender_learned_of_a_new_device_reaches_it_once(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a1, running(h, bob, tmp_path) as b:
        await b.add_contact(alice.account.hex(), name="Alice")
        await a1.add_contact(bob.account.hex(), name="Bob")
        before = await b.send_dm(alice.account, "before the link")
        await wait_for(lambda: has_text(alice, "before the link"))
        laptop = alice.identity.device.public_key
        assert a1._devices is not None
        announce = a1._devices.on_list_changed
        assert announce is not None
        a1._devices.on_list_changed = None  # the notice is late: Bob does not know yet
        async with linked(h, alice, "desktop", tmp_path) as alice2:
            desktop = alice2.identity.device.public_key
            missed = await b.send_dm(alice.account, "sent in the window")
            await wait_for(lambda: has_text(alice, "sent in the window"))
            assert [d.device for d in await b.dm_deliveries(missed.message_id)] == [laptop]

            # Bob learns of the desktop: Alice's notice arrives (late).
            await announce()
            await wait_for(lambda: has_text(alice2, "sent in the window"))
            deliveries = {d.device for d in await b.dm_deliveries(missed.message_id)}
            assert deliveries == {laptop, desktop}
            # Once: only what was sent after the desktop's certificate, never twice.
            assert b._dms.stats["caught_up"] == 1
            await b._dms.targets.resolve(alice.account)
            created = alice2.identity.device.certificate.created
            b._dms.targets.appeared[alice.account, desktop] = created  # again: nothing new
            await b._dms.catch_up()
            assert b._dms.stats["caught_up"] == 1
            assert texts(alice2).count("sent in the window") == 1
            assert texts(alice).count("sent in the window") == 1
            assert "before the link" not in texts(alice2)
            assert [d.device for d in await b.dm_deliveries(before.message_id)] == [laptop]
