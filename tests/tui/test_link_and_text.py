"""The TUI's pure parts (inert text, commands, inbox order) and its resumable link."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pchat.aio import Event, Gap, start_trio_thread
from p2pchat.tui.inert import inert, peer_text
from p2pchat.tui.link import NodeLink
from p2pchat.tui.model import (
    ChatLine,
    InboxEntry,
    format_offset,
    parse_command,
    parse_offset,
    sort_inbox,
)
from p2pchat.tui.screens.conversation import merge_pages
from tests.integration.test_asyncio_client import LIMIT
from tests.integration.test_rpc_fakes import running


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
        ("a\u202eb\u200bc", "a\\u202eb\\u200bc"),
        ("\x9b31m\x7f", "\\x9b31m\\x7f"),
        ("line\r\nnext\rz", "line\\x0d\\x0anext\\x0dz"),
        ("[bold]x[/] :smile: 👩‍💻 日本", "[bold]x[/] :smile: 👩‍💻 日本"),
    ],
)
def test_peer_text_cannot_drive_the_terminal(raw: str, shown: str) -> None:
    assert inert(raw) == shown
    text = peer_text(raw)
    assert text.plain == shown
    assert not text.spans


def test_multiline_keeps_newlines_and_limit_cuts() -> None:
    assert inert("a\r\nb\tc", multiline=True) == "a\nb    c"
    assert inert("abcdef", limit=4) == "abc\u2026"


def test_commands_offsets_and_inbox_order() -> None:
    assert parse_command("/react 👍 ") == ("react", "👍")
    assert parse_command("//not a command") is None
    assert parse_command("hello /x") is None
    assert parse_offset("1:02:03") == 3_723_000
    assert parse_offset("90") == 90_000
    assert format_offset(3_723_000) == "1:02:03"
    assert format_offset(65_000) == "01:05"
    with pytest.raises(ValueError, match="not a time"):
        parse_offset("1:xx")
    rows = [
        InboxEntry(key="dm:a", kind="dm", title="a", target="dm:a", last_activity=5),
        InboxEntry(key="group:g", kind="public", title="g", target="g", last_activity=9),
        InboxEntry(key="request:r", kind="request", title="r", target="r", last_activity=1),
    ]
    assert [e.key for e in sort_inbox(rows)] == ["request:r", "group:g", "dm:a"]


def test_scrolled_back_pages_survive_a_fresh_latest_page() -> None:
    def line(key: str) -> ChatLine:
        return ChatLine(key=key, author="a", ts=0, text=key, mine=False)

    older = [line(k) for k in "abcde"]
    assert [x.key for x in merge_pages(older, [line(k) for k in "def"])] == list("abcdef")


def test_the_link_resumes_after_the_node_restarts(tmp_path: Path) -> None:
    """A new node run (new epoch) on the same home: the link reconnects by itself, says
    events may be missing (Gap), and then delivers the new run's events."""
    home = tmp_path / "h"
    first = start_trio_thread(lambda: running(home), ready_timeout=LIMIT)
    second = None
    items: list[Event | Gap] = []
    states: list[bool] = []

    def publish(server: object, n: int) -> None:
        server.run_sync(server.value.server.publish, {"type": "dm.received", "n": n})  # type: ignore[attr-defined]

    async def main() -> None:
        nonlocal second
        link = NodeLink(home)

        async def on_item(item: Event | Gap) -> None:
            items.append(item)

        async def on_state(up: bool, why: str) -> None:
            states.append(up)

        task = asyncio.create_task(link.run(on_item, on_state))
        try:
            await _until(lambda: link.connected)
            publish(first, 1)
            await _until(lambda: len(items) == 1)
            await asyncio.to_thread(first.stop, timeout=LIMIT)
            await _until(lambda: not link.connected)
            second = await asyncio.to_thread(
                start_trio_thread, lambda: running(home), ready_timeout=LIMIT
            )
            publish(second, 2)  # before the link is back: replayed from the new run's log
            await _until(lambda: any(isinstance(i, Event) and i.data["n"] == 2 for i in items))
        finally:
            task.cancel()

    try:
        asyncio.run(asyncio.wait_for(main(), LIMIT))
    finally:
        first.stop(timeout=LIMIT)
        if second is not None:
            second.stop(timeout=LIMIT)
    assert isinstance(items[0], Event)
    assert items[0].data["n"] == 1
    assert isinstance(items[1], Gap)
    assert isinstance(items[2], Event)
    assert items[2].data["n"] == 2
    assert states[:2] == [True, False]
    assert states[-1] is True


async def _until(check: object) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
