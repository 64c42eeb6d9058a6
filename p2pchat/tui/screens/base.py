"""What every screen shares: the app, I/O in workers, errors as notifications."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

from textual.app import App
from textual.screen import ModalScreen, Screen

from p2pchat.errors import P2PChatError

from ..host import ChatHost
from ..inert import inert
from ..link import Event

__all__ = ["NodeScreen", "NodeModal", "run_io"]


def run_io(screen: Screen[Any] | App[Any], work: Awaitable[Any]) -> None:
    """Run ``work`` in a worker; a p2pchat error becomes a notification, not a crash."""

    async def guarded() -> None:
        try:
            await work
        except P2PChatError as exc:
            screen.app.notify(inert(str(exc)), severity="error", markup=False, timeout=6)

    screen.run_worker(guarded(), group="io")


class NodeScreen(Screen[None]):
    """A screen that shows node state: ``reload`` re-reads it, ``node_event`` follows it."""

    @property
    def chat(self) -> ChatHost:
        return cast("ChatHost", self.app)

    async def reload(self) -> None:
        """Re-read everything shown (on connect, after a gap)."""

    async def node_event(self, event: Event) -> None:
        """One live event from the node (every screen on the stack gets each one)."""

    def io(self, work: Awaitable[Any]) -> None:
        run_io(self, work)


class NodeModal(ModalScreen[None]):
    """A dialog over another screen, with the same helpers."""

    @property
    def chat(self) -> ChatHost:
        return cast("ChatHost", self.app)

    async def reload(self) -> None:
        """Re-read everything shown."""

    async def node_event(self, event: Event) -> None:
        """One live event from the node."""

    def io(self, work: Awaitable[Any]) -> None:
        run_io(self, work)
