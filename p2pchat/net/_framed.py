"""Frames over any byte stream: the one framing implementation both adapters share.

The libp2p adapter wraps a Yamux stream and the memory network wraps a pair of memory
channels; both hand this class a :class:`ByteStream`, so the framing rules (minimal
varint prefix, a cap checked before the body is buffered, truncation detected at EOF)
are implemented and tested once. The varint codec itself is the sans-IO one in
:mod:`p2pchat.protocol.framing`.

Deadlines, the same for every protocol (DM, sync, live backlog, mailbox): once a frame's
first byte has arrived, the whole frame must arrive within ``frame_timeout``; between
frames, a reader waits at most ``idle_timeout`` for the next one. Past either, the read
raises ``WireError("read-timeout")``, so a peer trickling one byte a second (or never
writing) cannot keep a stream, its handler task and its buffers for as long as it likes.
Protocols keep their own, shorter, exchange deadlines on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio

from p2pchat.errors import ClosedError, WireError
from p2pchat.protocol.framing import MAX_FRAME, decode_varint, encode_frame

__all__ = ["DEFAULT_FRAME_TIMEOUT", "DEFAULT_IDLE_TIMEOUT", "ByteStream", "FramedByteStream"]

_READ_CHUNK = 64 * 1024
#: Seconds for one frame once it started (1 MiB in 30 s: 35 KB/s, a slow but real link).
DEFAULT_FRAME_TIMEOUT = 30.0
#: Seconds a reader waits for the next frame (DM senders close kept streams after 10 s).
DEFAULT_IDLE_TIMEOUT = 60.0


class ByteStream(Protocol):
    """What an adapter must provide; its methods raise only p2pchat errors."""

    async def receive_some(self, max_bytes: int) -> bytes:
        """At least one byte, or ``b""`` once the peer closed its sending side."""
        ...

    async def send_all(self, data: bytes) -> None: ...

    async def close_write(self) -> None: ...

    async def reset(self) -> None: ...


class FramedByteStream:
    """A :class:`p2pchat.net.base.FramedStream` over a :class:`ByteStream`.

    One task may read while another writes; two concurrent readers (or writers) are a
    caller bug, as with any trio stream.
    """

    def __init__(
        self,
        raw: ByteStream,
        *,
        remote_peer: str,
        protocol: str,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._raw = raw
        self._frame_timeout = frame_timeout
        self._idle_timeout = idle_timeout
        self._frame_started = 0.0  # trio clock: when the buffered partial frame began
        self._remote_peer = remote_peer
        self._protocol = protocol
        self._buffer = bytearray()
        self._eof = False
        self._write_closed = False
        self._reset = False

    def __repr__(self) -> str:
        return f"<FramedByteStream {self._protocol} peer={self._remote_peer}>"

    @property
    def remote_peer(self) -> str:
        return self._remote_peer

    @property
    def protocol(self) -> str:
        return self._protocol

    async def read_frame(self, max_size: int = MAX_FRAME) -> bytes | None:
        """The next frame, or ``None`` at a clean end of stream.

        Raises ``WireError("frame-too-large")`` as soon as a prefix announces more than
        ``max_size`` bytes, ``WireError("truncated-frame")`` if the stream ends inside a
        frame, and ``WireError("read-timeout")`` past a deadline (module docstring).
        """
        if self._reset:
            raise ClosedError("stream was reset")
        idle_deadline = trio.current_time() + self._idle_timeout
        while True:
            header = decode_varint(self._buffer)
            if header is not None:
                length, start = header
                if length > max_size:
                    raise WireError("frame-too-large", f"{length} bytes exceeds {max_size}")
                end = start + length
                if len(self._buffer) >= end:
                    with memoryview(self._buffer) as view:  # one copy, not two
                        frame = bytes(view[start:end])
                    del self._buffer[:end]
                    if self._buffer:  # the next frame began with the last chunk
                        self._frame_started = trio.current_time()
                    return frame
            if self._eof:
                if self._buffer:
                    raise WireError("truncated-frame", "stream ended inside a frame")
                return None
            partial = bool(self._buffer)
            deadline = self._frame_started + self._frame_timeout if partial else idle_deadline
            chunk = b""
            with trio.move_on_at(deadline) as waited:
                chunk = await self._raw.receive_some(_READ_CHUNK)
            if waited.cancelled_caught:
                what = "a frame took" if partial else "no frame came within"
                limit = self._frame_timeout if partial else self._idle_timeout
                raise WireError("read-timeout", f"{what} {limit:g} s")
            if chunk:
                if not partial:
                    self._frame_started = trio.current_time()
                self._buffer += chunk
            else:
                self._eof = True

    async def write_frame(self, data: bytes) -> None:
        """Send one frame; ``ClosedError`` after :meth:`close` or :meth:`reset`."""
        if self._write_closed or self._reset:
            raise ClosedError("stream is closed for writing")
        await self._raw.send_all(encode_frame(data, max_frame=MAX_FRAME))

    async def write_frames(self, frames: Sequence[bytes]) -> None:
        """Send several frames in one write (the bytes of a ``write_frame`` each)."""
        if self._write_closed or self._reset:
            raise ClosedError("stream is closed for writing")
        if frames:
            data = b"".join(encode_frame(frame, max_frame=MAX_FRAME) for frame in frames)
            await self._raw.send_all(data)

    async def close(self) -> None:
        """Close our sending side (idempotent); reading stays possible."""
        if self._write_closed or self._reset:
            return
        self._write_closed = True
        await self._raw.close_write()

    async def reset(self) -> None:
        """Abort both directions (idempotent)."""
        if self._reset:
            return
        self._reset = True
        self._write_closed = True
        await self._raw.reset()
