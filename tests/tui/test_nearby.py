"""People nearby: a node found by mDNS (simulated on the memory network) becomes a DM."""

from __future__ import annotations

import asyncio

import pytest

from p2pchat.aio import TrioThread
from p2pchat.tui.screens.conversation import ConversationScreen
from p2pchat.tui.screens.nearby import NearbyScreen
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import app_for, screen_text, until

pytestmark = pytest.mark.integration


def test_start_a_conversation_with_someone_nearby(nodes: TrioThread[TwoNodes]) -> None:
    alice, bob = nodes.value.alice, nodes.value.bob
    hub = nodes.value.network_hub
    assert hub is not None
    app = app_for(nodes.value.alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, NearbyScreen), "nearby")
            nearby = app.screen
            assert isinstance(nearby, NearbyScreen)
            await until(pilot, lambda: "Nobody nearby yet" in screen_text(app), "empty")
            names = {bob.peer_id: "Bob \x1b[5m"}
            nodes.run_sync(lambda: hub.announce_nearby([alice.peer_id, bob.peer_id], names=names))
            await until(pilot, lambda: len(nearby.peers) == 1, "Bob, nearby")
            assert "~Bob \\x1b[5m" in screen_text(app)  # a claim, inert
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen), "the DM")
            conv = app.screen
            assert isinstance(conv, ConversationScreen)
            assert conv.thread.target == "dm:" + bob.account_key.hex()

    asyncio.run(asyncio.wait_for(main(), 60))
