"""Fan-out of network events to any number of bounded feeds (both adapters use it).

Events are emitted from places that must not block (libp2p notifee callbacks, a hub
dropping a link), so a full feed drops the event and counts it instead of waiting: a
slow consumer must not stall the network. Consumers that need every connection change
reconcile with ``connected_peers()``.
"""

from __future__ import annotations

import trio

from .base import NetEvent

__all__ = ["EventBus", "EventFeed"]


class EventFeed:
    """An async iterator of :data:`~p2pchat.net.base.NetEvent`; ends when the bus closes.

    A class rather than an async generator: a feed the caller abandons is simply
    garbage collected, with no "async generator was not finalized" warning.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[NetEvent]) -> None:
        self._receive = receive

    def __aiter__(self) -> EventFeed:
        return self

    async def __anext__(self) -> NetEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._receive.aclose()


class EventBus:
    """Owns the send sides of all feeds; ``emit`` never blocks."""

    def __init__(self, *, buffer: int) -> None:
        self._buffer = buffer
        self._feeds: list[trio.MemorySendChannel[NetEvent]] = []
        self._closed = False
        self.dropped = 0

    def feed(self) -> EventFeed:
        send, receive = trio.open_memory_channel[NetEvent](self._buffer)
        if self._closed:
            send.close()
        else:
            self._feeds.append(send)
        return EventFeed(receive)

    def emit(self, event: NetEvent) -> None:
        for send in list(self._feeds):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
            except trio.BrokenResourceError:
                self._feeds.remove(send)

    def close(self) -> None:
        self._closed = True
        for send in self._feeds:
            send.close()
        self._feeds.clear()
