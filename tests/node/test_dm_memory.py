"""Direct messages between real nodes on the in-memory network (fast, deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.events import ContactRequestReceived, DeliveryChanged, MessageReceived
from p2pchat.storage.records import ContactState, DeliveryState
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def states(peer: Peer, message_id: bytes) -> list[str]:
    return [
        e.state
        for e in peer.events
        if isinstance(e, DeliveryChanged) and e.message_id == message_id
    ]


async def test_first_message_is_delivered_acknowledged_and_lands_in_requests(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        sent = await a.send_dm(bob.account.hex(), "hello bob")
        assert sent.state is DeliveryState.QUEUED
        await wait_for(lambda: "delivered" in states(alice, sent.message_id))
        assert states(alice, sent.message_id) == ["queued", "sent", "delivered"]

        received = [e for e in bob.events if isinstance(e, MessageReceived)]
        assert [(e.text, e.sender, e.is_request) for e in received] == [
            ("hello bob", alice.account, True)
        ]
        assert any(isinstance(e, ContactRequestReceived) for e in bob.events)
        assert [c.account for c in await b.contact_requests()] == [alice.account]
        history = await b.history(alice.account)
        assert [m.message_id for m in history] == [sent.message_id]

        # Bob accepts and answers: the session continues with the Double Ratchet.
        await b.accept_contact(alice.account)
        reply = await b.send_dm(alice.account, "hi alice")
        await wait_for(lambda: "delivered" in states(bob, reply.message_id))
        texts = [e.text for e in alice.events if isinstance(e, MessageReceived)]
        assert texts == ["hi alice"]
        alice_view = await a.contacts()
        assert [(c.account, c.state) for c in alice_view] == [(bob.account, ContactState.ACCEPTED)]


async def test_many_messages_arrive_once_and_in_order(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        sent = [await a.send_dm(bob.account, f"m{i}") for i in range(30)]
        await wait_for(lambda: all("delivered" in states(alice, m.message_id) for m in sent))
        history = await b.history(alice.account, limit=100)
        assert [m.message_id for m in history] == [m.message_id for m in sent]
        received = [e.text for e in bob.events if isinstance(e, MessageReceived)]
        assert received == [f"m{i}" for i in range(30)]


async def test_offline_recipient_gets_messages_when_back(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h:
        async with running(h, bob, tmp_path):
            pass  # bob publishes his records once, then goes offline
        async with running(h, alice, tmp_path) as a:
            sent = await a.send_dm(bob.account, "are you there?")
            await wait_for(lambda: len(states(alice, sent.message_id)) >= 1)
            stats = await a.statistics()
            assert stats["store"]["outbox"] == 1
            async with running(h, bob, tmp_path) as b:
                await wait_for(lambda: "delivered" in states(alice, sent.message_id))
                history = await b.history(alice.account)
                assert [m.message_id for m in history] == [sent.message_id]


async def test_blocked_sender_is_dropped(tmp_path: Path, autojump_clock: object) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        await b.block_contact(alice.account)
        sent = await a.send_dm(bob.account, "let me in")
        await wait_for(lambda: (a._dms.stats.get("retries", 0)) >= 2)
        assert "delivered" not in states(alice, sent.message_id)
        assert not [e for e in bob.events if isinstance(e, MessageReceived)]
        assert (await b.statistics())["dm"].get("rejected", 0) >= 1


@pytest.mark.parametrize("bad", ["not-hex", "ab" * 31])
async def test_bad_addresses_are_config_errors(
    tmp_path: Path, autojump_clock: object, bad: str
) -> None:
    from p2pchat.errors import ConfigError

    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path) as a:
        with pytest.raises(ConfigError):
            await a.send_dm(bad, "x")
