"""The signed envelope: the one frame format of the dm, sync and live stream protocols.

Decoding and verification are separate steps because verification is expensive and the
node rate-limits a peer *before* paying for it::

    env = decode_envelope(frame)      # strict CBOR + field checks, cheap
    ...rate limit on env.sender...
    env.verify()                      # Ed25519 over the exact signed bytes
    message = env.open()              # the typed payload of env.kind

Every failure is a :class:`~p2pchat.errors.WireError` with a stable ``reason``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, WireError

from .codec import Bytes, Struct, Text, UInt, decode_map, encode_value, wire
from .dm_messages import DM_KINDS
from .framing import MAX_FRAME
from .kinded import refuse_newer_version
from .live_messages import LIVE_KINDS
from .signing import sign_map, signed_bytes, verify_signature
from .sync_messages import SYNC_KINDS

__all__ = [
    "PROTOCOL_VERSION",
    "ENVELOPE_KINDS",
    "Envelope",
    "decode_envelope",
    "seal",
    "decode_message",
]

PROTOCOL_VERSION = 1
#: Envelope kind -> payload class. A kind not listed is refused with ``unknown-kind``.
ENVELOPE_KINDS: dict[str, type[Struct]] = {
    cls.KIND: cls  # type: ignore[attr-defined]
    for cls in (*DM_KINDS, *SYNC_KINDS, *LIVE_KINDS)
}


@dataclass(frozen=True, kw_only=True)
class Envelope(Struct):
    version: int = wire("v", UInt(1, 1), "protocol version, 1")
    kind: str = wire("k", Text(1, 64), "message kind, selects the payload schema")
    sender: bytes = wire("s", Bytes(32), "sender device key (Ed25519)")
    ts: int = wire("t", UInt(), "sender's clock, ms since the Unix epoch")
    payload: bytes = wire("p", Bytes(low=0, high=MAX_FRAME), "canonical CBOR of the payload")
    sig: bytes = wire("sig", Bytes(64), "Ed25519 by s over the envelope, context envelope")
    #: Not on the wire: the decoded map (read-only); minus "sig", its encoding is signed.
    #: Kept so that verification (rare, expensive) pays for that encoding, not decoding.
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def verify(self) -> None:
        """Raise ``WireError("bad-signature")`` unless ``sig`` is the sender's signature."""
        verify_signature(signed_bytes("envelope", self.raw), self.sig, self.sender)

    def open(self) -> Struct:
        """Decode the payload as the message its kind names (does not verify)."""
        cls = ENVELOPE_KINDS.get(self.kind)
        if cls is None:
            raise WireError("unknown-kind", f"{self.kind!r} is not a kind of this version")
        return cls.from_bytes(self.payload, max_size=len(self.payload) or 1)


def decode_envelope(data: bytes, *, max_size: int = MAX_FRAME) -> Envelope:
    """Strictly decode a frame (size cap first, version before anything else)."""
    raw = decode_map(data, max_size=max_size)
    refuse_newer_version(raw, "envelope")
    env = Envelope.from_value(raw)
    return dataclasses.replace(env, raw=MappingProxyType(raw))


def decode_message(data: bytes, *, max_size: int = MAX_FRAME) -> tuple[Envelope, Struct]:
    """Decode, verify and open in one call (for callers that do not rate-limit between)."""
    env = decode_envelope(data, max_size=max_size)
    env.verify()
    return env, env.open()


def seal(message: Struct, *, signing_key: SigningKey, now: int) -> bytes:
    """Encode ``message`` in a signed envelope and return the frame body."""
    kind: Any = getattr(message, "KIND", None)
    if ENVELOPE_KINDS.get(kind) is not type(message):
        raise LocalProtocolError(f"{type(message).__name__} is not an envelope message")
    try:
        body = message.to_value()
        type(message).from_value(body)  # Struct.check, without building the map twice
        value: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "k": kind,
            "s": bytes(signing_key.verify_key),
            "t": now,
            "p": encode_value(body),
        }
        value["sig"] = sign_map("envelope", value, signing_key)
        return encode_value(value)
    except WireError as exc:
        raise LocalProtocolError(f"refusing to send an invalid message: {exc}") from exc
