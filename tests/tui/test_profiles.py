"""Profiles in the TUI: set ours from the contacts screen, see theirs (inert)."""

from __future__ import annotations

import asyncio

import pytest

from p2pchat.aio import TrioThread
from p2pchat.tui.screens.contacts import ContactsScreen
from p2pchat.tui.screens.prompt import Prompt
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import app_for, client, screen_text, until

pytestmark = pytest.mark.integration


def test_set_our_profile_and_see_theirs(nodes: TrioThread[TwoNodes]) -> None:
    alice_home, bob_home = nodes.value.alice_home, nodes.value.bob_home
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    with client(alice_home) as alice, client(bob_home) as bob:
        alice.call("contacts.add", {"address": bob_key})  # not named: Bob's claim shows
        bob.call("contacts.add", {"address": alice_key})
    app = app_for(alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ContactsScreen), "contacts")
            contacts = app.screen
            assert isinstance(contacts, ContactsScreen)
            await until(pilot, lambda: "p: set your name" in screen_text(app), "the hint")
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, Prompt), "the prompt")
            await pilot.press(*"Alice | likes tea", "enter")
            await until(pilot, lambda: "you: Alice" in screen_text(app), "our profile")
            with client(bob_home) as bob:

                def bob_knows() -> bool:
                    found = bob.call("profile.show", {"account": alice_key})
                    return bool(found["name"] == "Alice" and found["about"] == "likes tea")

                await until(pilot, bob_knows, "Bob's node to get Alice's profile")
                bob.call("profile.set", {"name": "Robert", "about": "\x1b[31mred\x1b[0m"})
            await until(pilot, lambda: "~Robert" in screen_text(app), "Bob's claimed name")
            await until(pilot, lambda: "\\x1b[31mred" in screen_text(app), "Bob's about")
            assert "\x1b" not in screen_text(app)
            assert app.names.label(bob_key) == "~Robert"

    asyncio.run(asyncio.wait_for(main(), 60))
