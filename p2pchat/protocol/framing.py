"""Stream framing: an unsigned-varint length prefix, then that many bytes (sans-IO).

This is the multiformats unsigned varint (LEB128, at most 9 bytes, minimal encoding
required) that libp2p protocols use. A frame longer than the receiver's cap is refused
as soon as its prefix is read, before any of its body is buffered.

    decoder = FrameDecoder(max_frame=MAX_FRAME)
    decoder.feed(chunk)               # bytes from the stream, any split
    for frame in decoder.frames():    # complete frames, in order
        ...
    decoder.at_boundary               # True when no partial frame is buffered
"""

from __future__ import annotations

from collections.abc import Iterator

from p2pchat.errors import WireError

__all__ = ["MAX_FRAME", "encode_varint", "decode_varint", "encode_frame", "FrameDecoder"]

#: The largest frame any p2pchat protocol sends (1 MiB). Protocols may set lower caps.
MAX_FRAME = 1 << 20
_MAX_VARINT_BYTES = 9


def encode_varint(value: int) -> bytes:
    if not 0 <= value < 1 << 63:
        raise ValueError("varint out of range")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buffer: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """Return ``(value, next_offset)``, or ``None`` if the buffer ends inside the varint.

    Raises :class:`WireError` for an over-long or non-minimal varint.
    """
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if offset + i >= len(buffer):
            return None
        byte = buffer[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise WireError("bad-varint", "varint is not minimally encoded")
            return value, offset + i + 1
    raise WireError("bad-varint", "varint longer than 9 bytes")


def encode_frame(payload: bytes, *, max_frame: int = MAX_FRAME) -> bytes:
    if len(payload) > max_frame:
        raise WireError("frame-too-large", f"{len(payload)} bytes exceeds {max_frame}")
    return encode_varint(len(payload)) + payload


class FrameDecoder:
    """Incremental frame decoder; raises :class:`WireError` on an oversized or bad prefix."""

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def frames(self) -> Iterator[bytes]:
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    def next_frame(self) -> bytes | None:
        """The next complete frame, or ``None`` if more data is needed."""
        header = decode_varint(self._buffer)
        if header is None:
            return None
        length, start = header
        if length > self._max_frame:
            raise WireError("frame-too-large", f"{length} bytes exceeds {self._max_frame}")
        end = start + length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[start:end])
        del self._buffer[:end]
        return frame

    def bytes_needed(self) -> int:
        """A lower bound on how many more bytes the next frame needs (1 if unknown)."""
        header = decode_varint(self._buffer)
        if header is None:
            return 1
        length, start = header
        return max(1, start + length - len(self._buffer))

    @property
    def at_boundary(self) -> bool:
        return not self._buffer
