"""The TUI's one connection to the node: RPC calls and a resumable event stream.

:class:`NodeLink` uses only the public asyncio RPC client (:mod:`p2pchat.aio`, the
same protocol as the CLI's). When the node goes away (restart, crash, upgrade) it
reconnects with a backoff (50 ms doubling to 2 s) and re-subscribes from the last
``(epoch, cursor)`` it saw, so no event the node still holds is lost; if the node says
events may be missing (new epoch, evicted log), the :class:`~p2pchat.aio.Gap` is passed
on and the app re-reads its state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from p2pchat.aio import AsyncioClient, Event, Gap
from p2pchat.errors import NetworkError, P2PChatError

__all__ = ["NodeLink", "Event", "Gap"]

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0

OnItem = Callable[[Event | Gap], Awaitable[None]]
OnState = Callable[[bool, str], Awaitable[None]]


class NodeLink:
    """Connects to the node in ``home`` (or on loopback ``tcp``) and keeps connecting."""

    def __init__(
        self,
        home: Path,
        *,
        token: str | None = None,
        tcp: tuple[str, int] | None = None,
        call_timeout: float = 30.0,
    ) -> None:
        self.home = home
        self._token = token
        self._tcp = tcp
        self._call_timeout = call_timeout
        self._client: AsyncioClient | None = None
        self.epoch: str | None = None
        self.cursor: int | None = None
        self.node: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"NodeLink({str(self.home)!r}, connected={self.connected})"  # never the token

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One RPC call; NetworkError while the node is away."""
        client = self._client
        if client is None:
            raise NetworkError("not connected to the node (reconnecting…)")
        return await client.call(method, params)

    async def run(self, on_item: OnItem, on_state: OnState) -> None:
        """Forever: connect, subscribe (resuming), hand every event to ``on_item``.

        ``on_state(True, "")`` runs once per connection, after the subscription is in
        place and before its first event; ``on_state(False, why)`` when it is lost.
        """
        delay = _FIRST_DELAY
        while True:
            try:
                client = await AsyncioClient.connect(
                    home=self.home,
                    token=self._token,
                    tcp=self._tcp,
                    client_name="p2pchat-chat",
                    call_timeout=self._call_timeout,
                )
            except P2PChatError as exc:
                await on_state(False, str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            delay = _FIRST_DELAY
            why = "the node went away"
            try:
                async with client.subscribe(after_cursor=self.cursor, epoch=self.epoch) as sub:
                    self.epoch, self.cursor = sub.epoch, sub.last_cursor
                    self._client = client
                    self.node = dict(client.info.node) if client.info else {}
                    await on_state(True, "")
                    async for item in sub:
                        self.epoch, self.cursor = sub.epoch, sub.last_cursor
                        await on_item(item)
            except P2PChatError as exc:
                why = str(exc)
            finally:
                self._client = None
                await client.aclose()
            await on_state(False, why)
