"""Stream plumbing for direct messages: kept-open streams, batched reads, closing.

The DM driver (:mod:`p2pchat.dm`) pipelines: a sender writes a window of frames on one
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

from .errors import P2PChatError
from .net.base import FramedStream

__all__ = ["FrameBatches", "StreamPool", "closing", "reset_quietly"]


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


class StreamPool:
    """DM streams kept open while one destination's batch is delivered.

    The receiver reads frames in a loop and acknowledges them, so consecutive messages
    to a device share one stream: a stream open (a multistream-select round trip) per
    message cost about a quarter of the CPU of a delivery (bench/dm_bench.py). A stream
    that failed in any way is reset and never put back; the rest are closed when the
    batch ends.
    """

    def __init__(self, open_stream: Callable[[bytes], Awaitable[FramedStream]]) -> None:
        self._open = open_stream
        self._idle: dict[bytes, FramedStream] = {}

    async def take(self, device: bytes) -> FramedStream:
        stream = self._idle.pop(device, None)
        return stream if stream is not None else await self._open(device)

    def put_back(self, device: bytes, stream: FramedStream) -> None:
        self._idle[device] = stream

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for stream in idle.values():
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
