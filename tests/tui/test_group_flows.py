"""Groups in the chat TUI: vote in a poll, post a live comment, find a group by tag."""

from __future__ import annotations

import asyncio
import time

import pytest

from p2pchat.aio import TrioThread
from p2pchat.tui.screens.conversation import ConversationScreen
from p2pchat.tui.screens.discover import DiscoverScreen
from p2pchat.tui.screens.inbox import InboxScreen
from p2pchat.tui.screens.live import LiveScreen, shared_timeline
from p2pchat.tui.widgets.messages import MessageList
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import WAIT, app_for, client, screen_text, until

pytestmark = pytest.mark.integration


def _shared_group(nodes: TrioThread[TwoNodes], kind: str, tags: list[str]) -> str:
    """Alice creates a group, Bob joins it with an invite; returns the group id."""
    with client(nodes.value.alice_home) as alice, client(nodes.value.bob_home) as bob:
        info = alice.call("groups.create", {"name": "club", "kind": kind, "tags": tags})
        gid = str(info["group_id"])
        link = alice.call("groups.invite", {"group": gid})["link"]
        bob.call("groups.join", {"invite": link}, timeout=WAIT)
    return gid


def test_bob_votes_in_alices_poll_with_the_keyboard(nodes: TrioThread[TwoNodes]) -> None:
    gid = _shared_group(nodes, "public", [])
    with client(nodes.value.alice_home) as alice:
        deadline = int(time.time() * 1000) + 3_600_000
        poll = {"question": "Tea or coffee?", "options": ["tea", "coffee"], "deadline": deadline}
        alice.call("groups.poll", {"group": gid, **poll})
    app = app_for(nodes.value.bob_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: any(e.target == gid for e in inbox.entries), "group")
            await pilot.press("enter")
            await until(pilot, lambda: "Tea or coffee?" in screen_text(app), "the poll")
            conv = app.screen
            assert isinstance(conv, ConversationScreen)
            messages = conv.query_one("#messages", MessageList)
            messages.focus()
            await until(pilot, lambda: messages.selected_line is not None, "a selection")
            await pilot.press("2")
            await until(
                pilot,
                lambda: conv.polls and next(iter(conv.polls.values()))["counts"] == [0, 1],
                "the tally",
            )
            assert "1 voter" in screen_text(app)

    asyncio.run(asyncio.wait_for(main(), 60))
    with client(nodes.value.alice_home) as alice:
        deadline_s = time.monotonic() + WAIT
        while alice.call("groups.view", {"group": gid})["polls"][0]["counts"] != [0, 1]:
            assert time.monotonic() < deadline_s, "Alice never saw Bob's vote"
            time.sleep(0.05)


def test_a_live_comment_is_posted_at_the_clock_and_reaches_the_other_member(
    nodes: TrioThread[TwoNodes],
) -> None:
    gid = _shared_group(nodes, "live", [])
    app = app_for(nodes.value.bob_home)
    media = shared_timeline(gid)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: any(e.target == gid for e in inbox.entries), "group")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen), "open")
            await pilot.press("ctrl+l")
            await until(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            live = app.screen
            assert isinstance(live, LiveScreen)
            await pilot.press("pagedown", "pagedown")  # seek to 00:20
            assert live.position == 20_000
            await pilot.press(*"what a goal", "enter")
            await until(pilot, lambda: len(live.comments) == 1, "our comment")
            assert "00:20 you: what a goal" in screen_text(app)

    asyncio.run(asyncio.wait_for(main(), 60))
    span = {"group": gid, "media_hash": media.hash, "start_ms": 0, "end_ms": 60_000}
    with client(nodes.value.alice_home) as alice:
        deadline_s = time.monotonic() + WAIT
        while not (seen := alice.call("groups.live_comments", span)):
            assert time.monotonic() < deadline_s, "Alice never got the live comment"
            time.sleep(0.05)
    assert [(c["offset"], c["text"]) for c in seen] == [(20_000, "what a goal")]


def test_search_public_groups_by_tag_and_join(nodes: TrioThread[TwoNodes]) -> None:
    with client(nodes.value.alice_home) as alice:
        gid = alice.call("groups.create", {"name": "Readers", "tags": ["books"]})["group_id"]
    app = app_for(nodes.value.bob_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, DiscoverScreen), "discover")
            await pilot.press(*"books", "enter")
            await until(pilot, lambda: "Readers" in screen_text(app), "the search result")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, InboxScreen), "back")
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: any(e.target == gid for e in inbox.entries), "joined")

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_mention_is_marked_in_the_inbox_and_rings_a_muted_group(
    nodes: TrioThread[TwoNodes],
) -> None:
    """Alice runs with --display-name Alice; Bob's "@alice" marks the group and rings
    although Alice muted it; opening the group clears the mark."""
    gid = _shared_group(nodes, "public", [])
    app = app_for(nodes.value.alice_home)
    app.settings.toggle_mute(f"group:{gid}")

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(pilot, lambda: any(e.target == gid for e in inbox.entries), "the group")
            with client(nodes.value.bob_home) as bob:
                bob.call("groups.post", {"group": gid, "text": "no one in particular"})
                bob.call("groups.post", {"group": gid, "text": "email@alice.example"})
            await until(pilot, lambda: app.group_unread.get(gid) == 2, "two unread posts")
            assert app.bells == 0  # muted, and nobody mentioned her
            with client(nodes.value.bob_home) as bob:
                bob.call("groups.post", {"group": gid, "text": "hey @ALICE, look"})
            await until(pilot, lambda: app.group_mentions.get(gid) == 1, "the mention")
            assert app.bells == 1  # a mention rings even in a muted group
            await until(
                pilot,
                lambda: [e.mentions for e in inbox.entries if e.target == gid] == [1],
                "the inbox to show it",
            )
            await until(pilot, lambda: "@1" in screen_text(app), "the mark drawn")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen), "open")
            assert gid not in app.group_mentions

    asyncio.run(asyncio.wait_for(main(), 60))
