"""DM reactions, edits and deletions: from the TUI's keys to the other node's history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from p2pchat.aio import TrioThread
from p2pchat.tui.link import Event
from p2pchat.tui.model import ChatLine
from p2pchat.tui.screens.conversation import ConversationScreen, Messages
from p2pchat.tui.screens.inbox import InboxScreen
from p2pchat.tui.threads import DmThread
from p2pchat.tui.widgets.composer import Composer
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import WAIT, app_for, client, screen_text, until

pytestmark = pytest.mark.integration


def _history(home: Any, peer: str) -> list[dict[str, Any]]:
    with client(home) as c:
        result: list[dict[str, Any]] = c.call("dm.history", {"conversation": peer})
        return result


def test_react_edit_and_delete_in_a_dm(nodes: TrioThread[TwoNodes]) -> None:
    alice_home, bob_home = nodes.value.alice_home, nodes.value.bob_home
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    with client(alice_home) as alice, client(bob_home) as bob:
        alice.call("contacts.add", {"address": bob_key, "name": "Bob"})
        bob.call("contacts.add", {"address": alice_key, "name": "Alice"})
        from_bob = bob.call("dm.send", {"to": alice_key, "text": "lunch at noon?"})
        earlier = alice.call("dm.send", {"to": bob_key, "text": "see you"})
    app = app_for(alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: inbox.entries and inbox.entries[0].unread, "the DM")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen), "open")
            conv = app.screen
            assert isinstance(conv, ConversationScreen)
            await until(pilot, lambda: len(conv.lines) == 2, "the messages")
            await pilot.press(*"sure, at 1", "enter")
            await until(pilot, lambda: len(conv.lines) == 3, "our message")
            messages = conv.query_one("#messages", Messages)
            lunch = from_bob["message_id"]
            _select(messages, lunch)
            await pilot.press("plus")  # "/react " in the composer
            conv.query_one("#composer", Composer).insert("👍")  # as pasted: not a key
            await pilot.press("enter")
            await until(pilot, lambda: _line(conv, lunch).reactions == {"👍": 1}, "the reaction")
            # Bob's message cannot be edited here ("e" only on our own) or deleted.
            _select(messages, lunch)
            await pilot.press("d")
            await until(pilot, lambda: "only your own" in _notices(app), "the refusal")
            ours = next(line.key for line in conv.lines if line.text == "sure, at 1")
            _select(messages, ours)
            await pilot.press("e", "ctrl+u", *"/edit sure, at 12:30", "enter")
            await until(pilot, lambda: _line(conv, ours).edited, "the edit")
            assert "sure, at 12:30" in screen_text(app)
            assert "(edited)" in screen_text(app)
            assert len(conv.lines) == 3  # amendments are not messages of their own

            def bob_sees(check: Any) -> bool:
                return bool(check({m["message_id"]: m for m in _history(bob_home, alice_key)}))

            await until(
                pilot,
                lambda: bob_sees(
                    lambda h: (
                        h[lunch]["reactions"] == {"👍": 1} and h[ours]["edited"] and len(h) == 3
                    )
                ),
                "Bob's node to fold the reaction and the edit",
            )
            _select(messages, ours)
            await pilot.press("d")
            await until(pilot, lambda: _line(conv, ours).deleted, "the deletion")
            assert "sure, at" not in screen_text(app)
            await until(
                pilot,
                lambda: bob_sees(lambda h: h[ours]["deleted"] and h[ours]["text"] == ""),
                "Bob's node to drop the deleted text",
            )
            mine = {m["message_id"]: m for m in _history(alice_home, bob_key)}
            assert mine[ours]["deleted"]
            assert mine[ours]["text"] == ""
            # Receivers enforce the rule: Bob's node sends an edit of Alice's message
            # (as raw content, past his node's own check); Alice's node ignores it.
            with client(bob_home) as bob, bob.subscribe(["dm.delivery"]) as deliveries:
                body = {"to": bytes.fromhex(earlier["message_id"])}
                forged = bob.call(
                    "dm.send",
                    {"to": alice_key, "content_type": "p2pchat/edit", "body": body, "text": "X"},
                )
                while True:  # bounded by next()'s timeout
                    item = deliveries.next(timeout=WAIT)
                    data = getattr(item, "data", {})
                    if data.get("message_id") == forged["message_id"] and (
                        data.get("state") == "delivered"
                    ):
                        break
            shown = {m["message_id"]: m for m in _history(alice_home, bob_key)}
            assert shown[earlier["message_id"]]["text"] == "see you"  # not "X"
            assert not shown[earlier["message_id"]]["edited"]
            assert len(shown) == 3

    asyncio.run(asyncio.wait_for(main(), 90))


def _select(messages: Messages, key: str) -> None:
    messages.focus()
    messages.index = next(
        i
        for i, item in enumerate(messages.children)
        if getattr(item, "line", None) and item.line.key == key  # type: ignore[attr-defined]
    )


def _line(conv: ConversationScreen, key: str) -> ChatLine:
    return next(line for line in conv.lines if line.key == key)


def _notices(app: Any) -> str:
    return " ".join(str(n.message) for n in app._notifications)


class _Recorder:
    """The one NodeLink method a thread pages with: records the calls, answers ``rows``."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append((method, params))
        return self.rows


def test_a_dm_thread_scrolls_back_past_seq_1_to_imported_history() -> None:
    # Imported history has higher seqs but comes first in time: the line of seq 1 is not
    # necessarily the oldest, so the thread still asks the node for what is before it.
    older = {"message_id": "aa", "author": "bb", "direction": "in", "text": "old",
             "sent_at": 1, "received_at": 1, "seq": 7, "state": "delivered"}  # fmt: skip
    link = _Recorder([older])
    thread = DmThread(link, key="dm:bb", target="dm:bb", title="Bob")  # type: ignore[arg-type]
    first = ChatLine(key="cc", author="bb", ts=5, text="live", mine=False, seq=1)
    lines = asyncio.run(thread.before(first))
    assert [(line.key, line.seq) for line in lines] == [("aa", 7)]
    assert link.calls == [("dm.history", {"conversation": "dm:bb", "before_seq": 1, "limit": 50})]
    kind = "device.history_progress"
    copied = {"type": kind, "device": "dd", "done": True}
    assert thread.concerns(Event(cursor=1, type=kind, data={**copied, "received": 3}))
    assert not thread.concerns(Event(cursor=2, type=kind, data={**copied, "received": 0}))
