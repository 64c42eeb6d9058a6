"""Attachments in the TUI: shown with name, size and a thumbnail, saved with a key or
/save, sent with /file, progress from file.progress events; against two real nodes."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image
from textual.widgets import Static

from p2pchat.aio import TrioThread
from p2pchat.tui.screens.conversation import ConversationScreen, Messages
from p2pchat.tui.screens.inbox import InboxScreen
from p2pchat.tui.widgets.composer import Composer
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import app_for, client, screen_text, until

pytestmark = pytest.mark.integration


def _picture(path: Path) -> bytes:
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    path.write_bytes(out.getvalue())
    return out.getvalue()


def test_receive_save_and_send_files(nodes: TrioThread[TwoNodes], tmp_path: Path) -> None:
    alice_home, bob_home = nodes.value.alice_home, nodes.value.bob_home
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    picture = _picture(tmp_path / "red \x1b[2J.jpg")
    with client(alice_home) as alice, client(bob_home) as bob:
        alice.call("contacts.add", {"address": bob_key, "name": "Bob"})
        bob.call("contacts.add", {"address": alice_key, "name": "Alice"})
        added = bob.call("files.add", {"path": str(tmp_path / "red \x1b[2J.jpg")})
        bob.call("dm.send", {"to": alice_key, "text": "look", "files": [added["file_id"]]})
    saved_dir = tmp_path / "saved"
    saved_dir.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("the plan")
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
            await until(pilot, lambda: conv.lines and conv.lines[-1].files, "the file")
            shown = screen_text(app)
            assert "\U0001f4ce red \\x1b[2J.jpg" in shown  # the sender's name for it, inert
            assert "image/jpeg" in shown
            assert "\u2580" in shown  # the thumbnail, in half blocks
            messages = conv.query_one("#messages", Messages)
            messages.focus()
            messages.index = len(messages.children) - 1
            composer = conv.query_one("#composer", Composer)
            composer.text = f"/save {saved_dir}"
            composer.focus()
            await pilot.press("enter")
            await until(pilot, lambda: any(saved_dir.iterdir()), "the saved file")
            (saved,) = saved_dir.iterdir()
            assert saved.read_bytes() == picture
            assert "\x1b" not in saved.name  # the node made the name safe
            # Sending one: /file PATH caption; the upload shows as it is sealed.
            composer.text = f"/file {notes} our plan"
            await pilot.press("enter")
            await until(pilot, lambda: len(conv.lines) == 2, "our file")
            assert conv.lines[-1].files[0].name == "notes.txt"
            transfer = conv.query_one("#transfer", Static)
            await until(pilot, lambda: transfer.display, "the progress line")
            with client(bob_home) as bob:

                def bob_has_it() -> bool:
                    history = bob.call("dm.history", {"conversation": alice_key})
                    return any(f["name"] == "notes.txt" for m in history for f in m["files"])

                await until(pilot, bob_has_it, "Bob's node to get the file")

    asyncio.run(asyncio.wait_for(main(), 60))
