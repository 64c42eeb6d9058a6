"""Stream plumbing for direct messages: kept-open streams, batched reads, closing.

The DM driver (:mod:`p2pchat.dm.service`) pipelines: a sender writes a window of frames on one
stream without waiting, and a receiver commits every frame it has already read in one
transaction and answers them with one ``dm.ack``. One fsync and one signature then
serve a whole batch instead of one message. :class:`FrameBatches` is the receiver's
half: a reader task keeps reading while the previous batch is processed, and the next
batch is whatever arrived meanwhile. A lone message is therefore processed at once (a
batch of one): batching adds no latency, it only grows with the load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType

import trio

from ..errors import P2PChatError
from ..net.base import FramedStream

__all__ = ["FrameBatches", "FrameCache", "StreamPool", "closing", "reset_quietly"]


class FrameBatches:
    """Batches of the frames a stream has delivered so far (see the module docstring).

    Use inside a nursery: ``nursery.start_soon(batches.run)``, then call :meth:`next`
    until it returns an empty list. At most ``max_batch`` frames are held (read ahead
    and not yet taken), which bounds the memory a peer can make us hold per stream.
    An error while reading (a reset, an oversized or truncated frame) is raised by
    :meth:`next` only after the frames read before it were handed out, so the frames a
    peer sent before a bad one are still processed and acknowledged.
    """

    def __init__(self, stream: FramedStream, *, max_size: int, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self._stream = stream
        self._max_size = max_size
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[bytes](max_batch - 1)
        self._error: P2PChatError | None = None

    async def run(self) -> None:
        """Read frames until the end of the stream or an error (kept for :meth:`next`)."""
        async with self._send:
            try:
                while True:
                    frame = await self._stream.read_frame(self._max_size)
                    if frame is None:
                        return
                    await self._send.send(frame)
            except P2PChatError as exc:
                self._error = exc

    async def next(self) -> list[bytes]:
        """Wait for a frame, then also take every frame already read (up to the cap).

        Returns ``[]`` at a clean end of stream; raises the reading error, if any.
        """
        try:
            batch = [await self._receive.receive()]
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            return []
        while len(batch) < self._max_batch:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch


class FrameCache:
    """The frames of outbox entries just committed, by item id, so the worker sends
    them without unsealing the entry it was handed back (a secretbox and two CBOR
    passes per message). Exactly the stored bytes; taken once; bounded (past
    ``capacity`` the oldest are dropped and read from their entries instead)."""

    def __init__(self, *, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._frames: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"<FrameCache {len(self._frames)} frames>"

    def put(self, item_id: int, frame: bytes) -> None:
        self._frames[item_id] = frame
        while len(self._frames) > self._capacity:
            del self._frames[next(iter(self._frames))]

    def take(self, item_id: int) -> bytes | None:
        return self._frames.pop(item_id, None)


class StreamPool:
    """DM streams to devices, kept open between deliveries.

    The receiver reads frames in a loop and acknowledges them, so every delivery to a
    device can use one stream: opening one (a multistream-select round trip, 4-7 ms on
    loopback) per message, or per outbox pass, was a large share of the latency and of
    the CPU of a delivery (bench/dm_bench.py). A stream is taken while in use (never
    shared), put back after a clean exchange, and closed once idle for ``idle_s``
    seconds (:meth:`close_idle`) or when its peer reconnects (:meth:`drop`: the old
    connection, and the stream with it, is gone). A stream that failed in any way is
    reset by its user and never put back.
    """

    def __init__(
        self, open_stream: Callable[[bytes], Awaitable[FramedStream]], *, idle_s: float
    ) -> None:
        self._open = open_stream
        self._idle_s = idle_s
        self._idle: dict[bytes, tuple[FramedStream, float]] = {}

    def __repr__(self) -> str:
        return f"<StreamPool {len(self._idle)} idle>"

    async def take(self, device: bytes) -> tuple[FramedStream, bool]:
        """A stream to ``device`` and whether it was used before (so may be stale)."""
        kept = self._idle.pop(device, None)
        if kept is not None:
            return kept[0], True
        return await self._open(device), False

    def put_back(self, device: bytes, stream: FramedStream) -> None:
        self._idle[device] = (stream, trio.current_time())

    async def drop(self, device: bytes) -> None:
        kept = self._idle.pop(device, None)
        if kept is not None:
            await reset_quietly(kept[0])

    async def close_idle(self) -> None:
        """Close the streams unused for ``idle_s`` seconds."""
        deadline = trio.current_time() - self._idle_s
        for device, (stream, since) in list(self._idle.items()):
            if since <= deadline:
                del self._idle[device]
                await _close_quietly(stream)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for stream, _ in idle.values():
            await _close_quietly(stream)


async def _close_quietly(stream: FramedStream) -> None:
    with contextlib.suppress(P2PChatError):  # the peer is gone: nothing to close
        await stream.close()


async def reset_quietly(stream: FramedStream) -> None:
    with contextlib.suppress(P2PChatError):
        await stream.reset()


class closing:
    """``async with closing(stream)``: close our side on exit, reset on error."""

    def __init__(self, stream: FramedStream) -> None:
        self._stream = stream

    async def __aenter__(self) -> FramedStream:
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self._stream.close()
            else:
                await self._stream.reset()
        except P2PChatError:
            pass  # the peer is gone; nothing left to close
