"""SVG snapshots of the main screens at 80x24 and 120x40, against real nodes.

Times are pinned (:class:`FixedClock`) and identities are deterministic, so the
pictures change only when the screens do. Update with ``pytest --snapshot-update``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from p2pchat.aio import TrioThread
from p2pchat.client import SyncClient
from p2pchat.errors import NotFoundError
from p2pchat.tui.screens.conversation import ConversationScreen
from p2pchat.tui.screens.inbox import InboxScreen
from p2pchat.tui.widgets.composer import Composer
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import WAIT, app_for, client, screen_text, until

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
        book = bob.call("dm.send", {"to": alice_key, "text": "I'll bring \x1b[31mthe book[/]"})
        _wait(lambda: len(_history(alice, bob_key)) == 2)
        # Alice reacts to Bob's message, answers, fixes her answer (DM changes, issue 17).
        alice.call("dm.react", {"to": bob_key, "target": book["message_id"], "emoji": "👍"})
        answer = alice.call("dm.send", {"to": bob_key, "text": "Yes, at 8"})
        alice.call("dm.edit", {"to": bob_key, "target": answer["message_id"], "text": "Yes, at 7"})
        _wait(
            lambda: all(
                m["state"] == "delivered"
                for m in _history(alice, bob_key)
                if m["direction"] == "out"
            )
        )


def _history(c: SyncClient, peer: str) -> list[dict[str, Any]]:
    try:
        found: list[dict[str, Any]] = c.call("dm.history", {"conversation": peer})
    except NotFoundError:
        return []  # no message has arrived yet
    return found


def _wait(check: Callable[[], bool]) -> None:
    """Poll ``check`` (real nodes answer in milliseconds) for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "timed out seeding the nodes"
        time.sleep(0.02)


async def _inbox_loaded(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, InboxScreen)
    await until(pilot, lambda: len(screen.entries) == 2 and screen.entries[0].unread == 2, "inbox")


async def _conversation_loaded(pilot: Pilot[Any]) -> None:
    await _inbox_loaded(pilot)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ConversationScreen), "open")
    await until(pilot, lambda: "the book" in screen_text(pilot.app), "the messages")  # type: ignore[arg-type]
    # The cursor blinks on a timer: keep it still, or the picture depends on the load.
    composer = pilot.app.screen.query_one("#composer", Composer)
    composer.cursor_blink = False
    await pilot.pause()


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
