"""SVG snapshots of the main screens at 80x24 and 120x40, against real nodes.

Times are pinned (:class:`FixedClock`) and identities are deterministic, so the
pictures change only when the screens do. Update with ``pytest --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from p2pchat.aio import TrioThread
from p2pchat.tui.screens.conversation import ConversationScreen
from p2pchat.tui.screens.inbox import InboxScreen
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import app_for, client, screen_text, until

pytestmark = pytest.mark.integration

SIZES = [(80, 24), (120, 40)]


def _seed(nodes: TrioThread[TwoNodes]) -> None:
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    with client(nodes.value.alice_home) as alice, client(nodes.value.bob_home) as bob:
        alice.call("groups.create", {"name": "book club", "kind": "private"})
        alice.call("contacts.add", {"address": bob_key, "name": "Bob"})
        bob.call("contacts.add", {"address": alice_key, "name": "Alice"})
        bob.call("dm.send", {"to": alice_key, "text": "Are we still on for Friday?"})
        bob.call("dm.send", {"to": alice_key, "text": "I'll bring \x1b[31mthe book[/]"})


async def _inbox_loaded(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, InboxScreen)
    await until(pilot, lambda: len(screen.entries) == 2 and screen.entries[0].unread == 2, "inbox")


async def _conversation_loaded(pilot: Pilot[Any]) -> None:
    await _inbox_loaded(pilot)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ConversationScreen), "open")
    await until(pilot, lambda: "the book" in screen_text(pilot.app), "the messages")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_inbox(nodes: TrioThread[TwoNodes], snap_compare: Any, size: tuple[int, int]) -> None:
    _seed(nodes)
    app = app_for(nodes.value.alice_home, fixed=True)
    assert snap_compare(app, terminal_size=size, run_before=_inbox_loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_conversation(
    nodes: TrioThread[TwoNodes], snap_compare: Any, size: tuple[int, int]
) -> None:
    _seed(nodes)
    app = app_for(nodes.value.alice_home, fixed=True)
    assert snap_compare(app, terminal_size=size, run_before=_conversation_loaded)
