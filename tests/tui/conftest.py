"""Fixtures of the chat TUI's tests: two real nodes (memory network, real RPC servers
in their homes, in a trio thread) and helpers to drive the app headless."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2pchat.aio import TrioThread, start_trio_thread
from p2pchat.client import SyncClient
from p2pchat.tui import ChatApp
from p2pchat.tui.model import Clock
from p2pchat.tui.settings import Settings
from tests.integration.test_asyncio_client import LIMIT, TwoNodes, open_two_nodes

#: Seconds any one wait for the UI may take (a real node answers in milliseconds).
WAIT = 15.0


class FixedClock(Clock):
    """Times as placeholders, so snapshots do not depend on the day they are taken."""

    def time(self, ms: int) -> str:
        return "12:34"

    def day(self, ms: int) -> str:
        return "Today"

    def short(self, ms: int, now_ms: int) -> str:
        return "12:34" if ms > 0 else ""


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[TrioThread[TwoNodes]]:
    handle = start_trio_thread(lambda: open_two_nodes(tmp_path), ready_timeout=LIMIT)
    try:
        yield handle
    finally:
        handle.stop(timeout=LIMIT)


def client(home: Path) -> SyncClient:
    return SyncClient.connect(home=home)


def app_for(home: Path, *, fixed: bool = False) -> ChatApp:
    return ChatApp(home, clock=FixedClock() if fixed else None, settings=Settings(None))


async def until(pilot: object, check: Callable[[], object], what: str) -> None:
    """Let the app run until ``check()`` is truthy, for at most WAIT seconds."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def screen_text(app: ChatApp) -> str:
    """Everything the current screen shows, as plain text (what a person reads)."""
    parts = []
    for widget in app.screen.query("Static"):
        rendered = widget.render()
        parts.append(str(getattr(rendered, "plain", rendered)))
    return "\n".join(parts)
