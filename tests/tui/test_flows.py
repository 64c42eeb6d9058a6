"""The chat TUI driven headless (``App.run_test``) against two real nodes."""

from __future__ import annotations

import asyncio

import pytest

from p2pchat.aio import TrioThread
from p2pchat.tui.screens.contacts import ContactsScreen, SafetyScreen
from p2pchat.tui.screens.conversation import ConversationScreen
from p2pchat.tui.screens.inbox import InboxScreen
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import app_for, client, screen_text, until

pytestmark = pytest.mark.integration


def test_a_request_is_accepted_then_a_dm_goes_both_ways(nodes: TrioThread[TwoNodes]) -> None:
    alice_home, bob_home = nodes.value.alice_home, nodes.value.bob_home
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    app = app_for(alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            with client(bob_home) as bob:
                bob.call("contacts.add", {"address": alice_key, "name": "Alice"})
                bob.call("dm.send", {"to": alice_key, "text": "hi, it's Bob"})
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: any(e.kind == "request" for e in inbox.entries), "request")
            # The request rings the bell (after the app has re-read the names, so possibly
            # just after the inbox shows it).
            await until(pilot, lambda: app.bells >= 1, "the bell")
            # Bob runs with --display-name Bob: his message carried it; a claim ("~").
            assert [e.title for e in inbox.entries] == ["~Bob"]
            await pilot.press("a")
            await until(
                pilot,
                lambda: [e.kind for e in inbox.entries] == ["dm"],
                "the request to become a conversation",
            )
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen), "open")
            conv = app.screen
            assert isinstance(conv, ConversationScreen)
            await until(pilot, lambda: "hi, it's Bob" in screen_text(app), "Bob's message")
            assert "~Bob  " in screen_text(app)  # the title and the author line
            await pilot.press(*"hello Bob", "enter")
            await until(
                pilot,
                lambda: any(line.mine and line.state == "delivered" for line in conv.lines),
                "our message delivered",
            )
            assert "\u2713\u2713 delivered" in screen_text(app)
            with client(bob_home) as bob:
                history = bob.call("dm.history", {"conversation": alice_key})
                assert [m["text"] for m in history] == ["hi, it's Bob", "hello Bob"]
                # A live event while the conversation is open: shown without a key press.
                bob.call("dm.send", {"to": alice_key, "text": "got it \x1b[2J[bold]x"})
            await until(pilot, lambda: "got it" in screen_text(app), "the live message")
            shown = screen_text(app)
            assert "\\x1b[2J[bold]x" in shown  # escape inert, markup not interpreted
            assert "\x1b" not in shown
            assert conv.thread.target == f"dm:{bob_key}"

    asyncio.run(asyncio.wait_for(main(), 60))


def test_contacts_add_rename_and_verify_with_the_safety_number(
    nodes: TrioThread[TwoNodes],
) -> None:
    alice_home = nodes.value.alice_home
    bob_key = nodes.value.bob.account_key.hex()
    app = app_for(alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ContactsScreen), "contacts")
            contacts = app.screen
            assert isinstance(contacts, ContactsScreen)
            await pilot.press("a")
            await pilot.press(*f"{bob_key} Bobby", "enter")
            await until(pilot, lambda: len(contacts.contacts) == 1, "the new contact")
            await pilot.press("n", "end", "ctrl+u", *"Bob", "enter")
            await until(pilot, lambda: contacts.contacts[0]["name"] == "Bob", "the rename")
            await pilot.press("v")
            await until(pilot, lambda: isinstance(app.screen, SafetyScreen), "safety")
            safety = app.screen
            assert isinstance(safety, SafetyScreen)
            await until(pilot, lambda: safety.safety is not None, "the safety number")
            assert safety.safety is not None
            number = safety.safety["safety_number"]
            assert number.split()[0] in screen_text(app)
            await pilot.press("v")
            await until(pilot, lambda: app.screen is contacts, "back to contacts")
            await until(pilot, lambda: contacts.contacts[0]["verified"], "verified")
            assert app.names.verified(bob_key)

    asyncio.run(asyncio.wait_for(main(), 60))
