"""``node run``'s narrator names people from the contact list without reading it for
every event: at most once a second, again after a contact changed, and never for an
event that gets no line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchat.cli._narrate import narrate
from p2pchat.events import ContactChanged, DeliveryChanged, EventBus, GroupMessage
from tests.node.harness import hub, new_peer, running, wait_for


async def test_names_are_read_once_a_second_and_after_a_contact_change(
    tmp_path: Path,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with hub() as h, running(h, new_peer("alice"), tmp_path) as node:
        reads = 0
        contacts = node.contacts

        async def counted(**kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return await contacts(**kwargs)

        monkeypatch.setattr(node, "contacts", counted)
        bus = EventBus()

        def post(n: int) -> GroupMessage:
            return GroupMessage(
                group_id=b"\x01" * 32,
                event_id=n.to_bytes(32, "big"),
                author=node.account_key,
                kind="post",
                text=f"m{n}",
                ts=n,
            )

        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "p2pchat.node.events"]

        with caplog.at_level(logging.INFO, logger="p2pchat.node.events"):
            async with bus.stream() as stream, trio.open_nursery() as nursery:
                nursery.start_soon(narrate, node, stream)
                for _ in range(5):  # no line, no read
                    bus.publish(DeliveryChanged(conversation_id="c", message_id=b"m", state="sent"))
                for n in range(30):
                    bus.publish(post(n))
                await wait_for(lambda: len(lines()) == 30)
                assert reads == 1
                assert all(line.endswith("post from me") for line in lines())
                bus.publish(ContactChanged(account=b"\x02" * 32, state="accepted"))
                bus.publish(post(30))
                await wait_for(lambda: len(lines()) == 31)
                assert reads == 2
                await trio.sleep(1.5)
                bus.publish(post(31))
                await wait_for(lambda: len(lines()) == 32)
                assert reads == 3
                nursery.cancel_scope.cancel()
