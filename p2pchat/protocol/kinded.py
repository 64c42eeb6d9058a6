"""Kinded frames: ``{v: 1, k: kind, p: canonical CBOR of the payload}``, unsigned.

The mailbox protocol (wire.md section 11) and the blob protocol (blobs.md section 3)
frame their messages alike: a version, a kind naming the payload's type, and the payload
as a nested canonical CBOR byte string. :class:`KindedFrames` is that codec for one
family of kinds: strict decoding (size cap first, a newer version refused before
anything else, an unknown kind refused), and encoding that re-validates a locally built
message first. The signed envelope (``envelope.py``) shares the version rule
(:func:`refuse_newer_version`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from p2pchat.errors import LocalProtocolError, WireError

from .codec import Bytes, Struct, Text, UInt, decode_map, encode_value, wire
from .framing import MAX_FRAME

__all__ = ["KindedFrame", "KindedFrames", "refuse_newer_version"]


@dataclass(frozen=True, kw_only=True)
class KindedFrame(Struct):
    version: int = wire("v", UInt(1, 1), "protocol version, 1")
    kind: str = wire("k", Text(1, 64), "the payload's kind")
    payload: bytes = wire("p", Bytes(low=0, high=MAX_FRAME), "canonical CBOR of the payload")


def refuse_newer_version(raw: Mapping[str, Any], what: str, supported: int = 1) -> None:
    """``WireError("unsupported-version")`` when ``raw["v"]`` is an integer above
    ``supported`` (anything else is left to the field checks)."""
    version = raw.get("v")
    if isinstance(version, int) and not isinstance(version, bool) and version > supported:
        raise WireError("unsupported-version", f"{what} version {version}")


class KindedFrames:
    """The frames of one protocol: ``kinds`` are its payload classes, each with a
    ``KIND``; ``name`` says whose frames in errors."""

    frame = KindedFrame

    def __init__(self, name: str, kinds: Iterable[type[Struct]]) -> None:
        self.name = name
        self.kinds: dict[str, type[Struct]] = {cls.KIND: cls for cls in kinds}  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"KindedFrames({self.name!r}, {sorted(self.kinds)})"

    def decode(self, data: bytes, *, max_size: int = MAX_FRAME) -> Struct:
        """Strictly decode a frame and its payload (signatures, hashes: the caller's)."""
        raw = decode_map(data, max_size=max_size)
        refuse_newer_version(raw, self.name)
        frame = KindedFrame.from_value(raw)
        cls = self.kinds.get(frame.kind)
        if cls is None:
            raise WireError("unknown-kind", f"{frame.kind!r} is not a {self.name} kind")
        return cls.from_bytes(frame.payload, max_size=len(frame.payload) or 1)

    def encode(self, message: Struct) -> bytes:
        """The frame of ``message`` (``LocalProtocolError`` if it is not one of ours or
        not valid)."""
        kind: Any = getattr(message, "KIND", None)
        if self.kinds.get(kind) is not type(message):
            raise LocalProtocolError(f"{type(message).__name__} is not a {self.name} message")
        try:
            message.check()
            return encode_value({"v": 1, "k": kind, "p": message.to_bytes()})
        except WireError as exc:
            raise LocalProtocolError(f"refusing to send an invalid message: {exc}") from exc
