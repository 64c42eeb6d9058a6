"""Issue 17 in the chat TUI against two real nodes: our contact link and a group's invite
link shown as QR codes; full-text search of our messages."""

from __future__ import annotations

import asyncio

import pytest

from p2pchat.aio import TrioThread
from p2pchat.qr import QR_STYLE, contact_link, qr_text
from p2pchat.tui.screens.contacts import ContactsScreen
from p2pchat.tui.screens.conversation import ConversationScreen
from p2pchat.tui.screens.group import GroupScreen
from p2pchat.tui.screens.inbox import InboxScreen
from p2pchat.tui.screens.search import SearchScreen
from p2pchat.tui.screens.share import ShareScreen
from p2pchat.tui.threads import GroupThread
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import WAIT, app_for, client, screen_text, until

pytestmark = pytest.mark.integration


def _qr_of(screen: ShareScreen) -> str:
    rendered = screen.query_one("#share-qr").render()
    text = str(getattr(rendered, "plain", rendered))
    spans = [(span.start, span.end, str(span.style)) for span in getattr(rendered, "spans", [])]
    assert spans == [(0, len(text), QR_STYLE)]  # all of it dark on light, on any theme
    return text


def test_our_contact_link_and_an_invite_as_qr_codes(nodes: TrioThread[TwoNodes]) -> None:
    alice_key = nodes.value.alice.account_key.hex()
    with client(nodes.value.alice_home) as alice:
        gid = str(alice.call("groups.create", {"name": "scan me"})["group_id"])
    app = app_for(nodes.value.alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ContactsScreen), "contacts")
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, ShareScreen), "share")
            share = app.screen
            assert isinstance(share, ShareScreen)
            assert share.link == contact_link(alice_key)
            assert contact_link(alice_key) in screen_text(app)
            assert _qr_of(share) == qr_text(contact_link(alice_key))
            await pilot.press("escape")
            await pilot.press("escape")

            thread = GroupThread(
                app.link, key=f"group:{gid}", target=gid, title="x", kind="private", me=alice_key
            )
            app.open_group_info(thread)
            await until(pilot, lambda: isinstance(app.screen, GroupScreen), "the group")
            await until(pilot, lambda: "scan me" in screen_text(app), "the group's details")
            await pilot.press("q")  # no invite yet: one is made, then drawn
            await until(pilot, lambda: isinstance(app.screen, ShareScreen), "the invite's QR")
            invite = app.screen
            assert isinstance(invite, ShareScreen)
            assert invite.link.startswith("p2pchat-invite:")
            assert _qr_of(invite) == qr_text(invite.link)
            with client(nodes.value.bob_home) as bob:  # what the code holds joins
                joined = bob.call("groups.join", {"invite": invite.link}, timeout=WAIT)
            assert joined["group_id"] == gid
            await pilot.press("escape")
            await until(pilot, lambda: "Members (2)" in screen_text(app), "Bob among members")

    asyncio.run(asyncio.wait_for(main(), 60))


def test_search_finds_a_message_and_opens_its_conversation(
    nodes: TrioThread[TwoNodes],
) -> None:
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    with client(nodes.value.bob_home) as bob:
        bob.call("dm.send", {"to": alice_key, "text": "meet the quokka at noon"})
        bob.call("dm.send", {"to": alice_key, "text": "nothing to see"})
    app = app_for(nodes.value.alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: len(inbox.entries) == 1, "Bob's messages")
            await pilot.press("slash", *"Quokka", "enter")
            await until(pilot, lambda: isinstance(app.screen, SearchScreen), "the results")
            results = app.screen
            assert isinstance(results, SearchScreen)
            await until(pilot, lambda: bool(results.hits), "a hit")
            assert [h["text"] for h in results.hits] == ["meet the quokka at noon"]
            assert "~Bob: meet the quokka at noon" in screen_text(app)
            assert "1 found in 2 messages" in screen_text(app)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen), "opened")
            conversation = app.screen
            assert isinstance(conversation, ConversationScreen)
            assert conversation.thread.target == f"dm:{bob_key}"

    asyncio.run(asyncio.wait_for(main(), 60))
