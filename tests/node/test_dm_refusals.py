"""Issue 16 items 2 and 5: a message the recipient will not store never looks delivered.

* Limits are checked at send time, in bytes (9,000 "é" are 18,000 bytes: refused).
* A frame that does reach a recipient which refuses it (a text over the limit from a
  node that did not check, a message from someone the recipient declined) is answered
  by a signed ``dm.refuse``: the sender's message turns ``failed`` with the reason, is
  not retried, and the recipient stores nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.dm import service as dm_module
from p2pchat.errors import ConfigError
from p2pchat.events import DeliveryChanged, MessageReceived
from p2pchat.protocol.content import MAX_TEXT_BYTES, Content
from p2pchat.storage.records import DeliveryState
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def _states(peer: Peer, message_id: bytes) -> list[str]:
    return [
        e.state
        for e in peer.events
        if isinstance(e, DeliveryChanged) and e.message_id == message_id
    ]


async def test_limits_are_checked_in_bytes_at_send_time(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path):
        with pytest.raises(ConfigError, match="18,000 bytes"):
            await a.send_dm(bob.account, "é" * 9000)
        for empty in ("", "   \n\t "):
            with pytest.raises(ConfigError, match="empty"):
                await a.send_dm(bob.account, empty)
        assert await a.conversations() == []  # nothing was stored or queued
        fits = await a.send_dm(bob.account, "é" * (MAX_TEXT_BYTES // 2))
        await wait_for(lambda: "delivered" in _states(alice, fits.message_id))


async def test_a_refused_frame_fails_at_the_sender_with_a_reason(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        first = await a.send_dm(bob.account, "hello")
        await wait_for(lambda: "delivered" in _states(alice, first.message_id))
        # An older or buggy sender that does not check the limit:
        monkeypatch.setattr(dm_module, "check_outgoing", lambda content: None)
        big = Content(type="p2pchat/text", body={}, text="é" * 9000)
        sent = await a.send_dm(bob.account, content=big)
        await wait_for(lambda: "failed" in _states(alice, sent.message_id))
        assert "delivered" not in _states(alice, sent.message_id)
        [stored] = [m for m in await a.history(bob.account) if m.message_id == sent.message_id]
        assert stored.state is DeliveryState.FAILED
        assert stored.failure_reason is not None
        assert "cannot accept its content" in stored.failure_reason
        assert (await a.statistics())["store"]["outbox"] == 0  # not retried
        # The session went on past the refused message: the next one arrives.
        monkeypatch.undo()
        after = await a.send_dm(bob.account, "still friends?")
        await wait_for(lambda: "delivered" in _states(alice, after.message_id))
        texts = [m.message_id for m in await b.history(alice.account)]
        assert texts == [first.message_id, after.message_id]


async def test_a_declined_stranger_learns_it_instead_of_seeing_delivered(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        first = await a.send_dm(bob.account, "hi, remember me?")
        await wait_for(lambda: "delivered" in _states(alice, first.message_id))
        await b.decline_contact(alice.account)
        again = await a.send_dm(bob.account, "hello??")
        await wait_for(lambda: "failed" in _states(alice, again.message_id))
        assert "delivered" not in _states(alice, again.message_id)
        [stored] = [m for m in await a.history(bob.account) if m.message_id == again.message_id]
        assert stored.failure_reason == "the recipient declined your contact request"
        received = [e for e in bob.events if isinstance(e, MessageReceived)]
        assert [e.message_id for e in received] == [first.message_id]
        assert [m.message_id for m in await b.history(alice.account)] == [first.message_id]
