"""Store-and-forward: a contact's node holds sealed mail while the recipient is away."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.config import MailboxConfig
from p2pchat.dm.mailbox import MailboxKeys
from p2pchat.errors import WireError
from p2pchat.events import DeliveryChanged, MessageReceived
from p2pchat.protocol.mailbox import MailboxFetch, sign_request, verify_request
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def states(peer: Peer, message_id: bytes) -> list[str]:
    return [
        e.state
        for e in peer.events
        if isinstance(e, DeliveryChanged) and e.message_id == message_id
    ]


async def test_mail_waits_in_a_mailbox_and_the_receipt_comes_back(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    bob_uses_carol = MailboxConfig(use=(carol.peer_id,))
    async with (
        hub() as h,
        running(h, carol, tmp_path, mailbox=MailboxConfig(enabled=True)) as c,
        running(h, alice, tmp_path) as a,
    ):
        async with running(h, bob, tmp_path, mailbox=bob_uses_carol) as b:
            first = await a.send_dm(bob.account, "hi bob")
            await wait_for(lambda: "delivered" in states(alice, first.message_id))
            await b.accept_contact(alice.account)  # bob tells alice his mailbox keys
            await wait_for(lambda: a._dms.stats.get("control", 0) == 1)  # alice has the keys
        # bob is offline now: the next message goes to carol's mailbox
        away = await a.send_dm(bob.account, "while you were away")
        await wait_for(lambda: "sent" in states(alice, away.message_id))
        await wait_for(lambda: c._mailbox.stats["stored"] == 1)
        assert "delivered" not in states(alice, away.message_id)

        async with running(h, bob, tmp_path, mailbox=bob_uses_carol) as b:
            await wait_for(lambda: "delivered" in states(alice, away.message_id))

            # Stored exactly once, and told exactly once (the harness subscribes before the
            # start, so mail fetched while bob's node starts is not missed).
            assert [m.message_id for m in await b.history(alice.account)] == [
                first.message_id,
                away.message_id,
            ]
            await wait_for(
                lambda: (
                    [e.text for e in bob.events if isinstance(e, MessageReceived)].count(
                        "while you were away"
                    )
                    == 1
                )
            )
            texts = [e.text for e in bob.events if isinstance(e, MessageReceived)]
            assert texts.count("while you were away") == 1
        # carol deleted the blob once bob had it
        assert (await c.statistics())["store"]["mailbox_items"] == 0


def test_mailbox_refuses_a_fetch_not_signed_by_the_tag() -> None:

    owner, thief = MailboxKeys(b"\x01" * 32), MailboxKeys(b"\x02" * 32)
    forged = sign_request(
        MailboxFetch(tag=bytes(32), mailbox="box", ts=1000, limit=4, sig=bytes(64)),
        tag_key=thief.tag_key,
    )
    stolen = MailboxFetch(tag=owner.tag, mailbox="box", ts=1000, limit=4, sig=forged.sig)
    with pytest.raises(WireError):
        verify_request(stolen, mailbox="box", now=1000)
