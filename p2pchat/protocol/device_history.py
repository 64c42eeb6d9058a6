"""History for a newly linked device (devices.md section 4.4), sans-IO: the messages of
``/p2pchat/history/1.0.0``, their strict decoding, and the box both devices seal chunks in.

The new device N asks (``hreq``) one of its account's other devices E for the direct-message
history since ``since`` (at most ``max`` messages, continuing after ``after`` when resuming);
E's user consents or refuses (``hdeny``); E then sends ``hchunk`` frames, each sealed under
a key only the two devices can compute (X25519 of their device keys, bound to N's nonce),
with associated data the transcript and the chunk's index, so a chunk cannot be replayed
into another sync or reordered.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
)
from nacl.exceptions import CryptoError as NaclError
from nacl.signing import SigningKey, VerifyKey

from p2pchat.errors import WireError
from p2pchat_crypto import cbor
from p2pchat_crypto.kdf import blake2b
from p2pchat_crypto.sealed import Rng

from .codec import Bool, Bytes, Choice, ListOf, Nested, Struct, Text, UInt, decode_map, wire

__all__ = [
    "HISTORY_PROTOCOL",
    "MAX_HISTORY_FRAME",
    "MAX_CHUNK_ITEMS",
    "MAX_CHUNK_PLAIN",
    "MAX_HISTORY_MESSAGES",
    "MAX_ITEM_BODY",
    "HISTORY_DENY_REASONS",
    "HISTORY_MESSAGES",
    "HistoryCursor",
    "HistoryRequest",
    "HistoryDeny",
    "HistoryChunk",
    "HistoryItem",
    "HistoryChunkContent",
    "HistoryBox",
    "decode_history_message",
    "decode_chunk_content",
]

HISTORY_PROTOCOL = "/p2pchat/history/1.0.0"
#: One frame of the history stream at most (a chunk: its box and a few bytes).
MAX_HISTORY_FRAME = 256 * 1024
#: Messages in one chunk at most, and the size of its plaintext at most.
MAX_CHUNK_ITEMS = 64
MAX_CHUNK_PLAIN = 192 * 1024
#: The most one sync may carry (the user's cap is at most this).
MAX_HISTORY_MESSAGES = 100_000
#: A message body in a chunk at most (a direct message's content is smaller).
MAX_ITEM_BODY = 64 * 1024
HISTORY_DENY_REASONS = ("refused", "busy", "not-ours", "timeout")
DELIVERY_STATES = ("queued", "sent", "delivered", "failed")
_KEY = Bytes(32)
_NONCE_LEN = 16
_BOX_NONCE = 24
_TRANSCRIPT_LABEL = "p2pchat/history/v1"


@dataclass(frozen=True, kw_only=True)
class HistoryCursor(Struct):
    peer: bytes = wire("peer", _KEY, "the conversation's account (E's order: by key)")
    pos: int = wire("pos", UInt(0, 2**53 - 1), "the last message's position there")


@dataclass(frozen=True, kw_only=True)
class HistoryRequest(Struct):
    KIND = "hreq"
    t: str = wire("t", Choice(("hreq",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    nonce: bytes = wire("nonce", Bytes(_NONCE_LEN), "fresh random bytes (binds the key)")
    since: int = wire("since", UInt(0, 2**53 - 1), "only messages sent at or after (ms)")
    max: int = wire("max", UInt(1, MAX_HISTORY_MESSAGES), "messages at most in this sync")
    after: HistoryCursor | None = wire(  # noqa: RUF009 (wire() is a dataclasses.field)
        "after", Nested(HistoryCursor), "resume after this message", optional=True
    )


@dataclass(frozen=True, kw_only=True)
class HistoryDeny(Struct):
    KIND = "hdeny"
    t: str = wire("t", Choice(("hdeny",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    why: str = wire("why", Choice(HISTORY_DENY_REASONS), "why no history comes")


@dataclass(frozen=True, kw_only=True)
class HistoryChunk(Struct):
    KIND = "hchunk"
    t: str = wire("t", Choice(("hchunk",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    n: int = wire("n", UInt(0, MAX_HISTORY_MESSAGES), "the chunk's index, from 0")
    box: bytes = wire(
        "box",
        Bytes(low=40, high=MAX_HISTORY_FRAME - 64),
        "nonce, then the sealed history-chunk-content",
    )


@dataclass(frozen=True, kw_only=True)
class HistoryItem(Struct):
    peer: bytes = wire("peer", _KEY, "the account the conversation is with")
    pos: int = wire("pos", UInt(0, 2**53 - 1), "its position in E's conversation")
    id: bytes = wire("id", Bytes(16), "message id")
    sender: bytes = wire("from", _KEY, "the sender's account (peer, or ours)")
    device: bytes = wire("dev", _KEY, "the sender's device")
    out: bool = wire("out", Bool(), "sent by our account")
    ts: int = wire("ts", UInt(0, 2**53 - 1), "when it was sent (ms, the sender's clock)")
    rx: int = wire("rx", UInt(0, 2**53 - 1), "when E received (or sent) it (ms)")
    type: str = wire("type", Text(1, 128), "content type")
    body: bytes = wire("body", Bytes(low=1, high=MAX_ITEM_BODY), "the content, as stored")
    state: str = wire("state", Choice(DELIVERY_STATES), "its delivery summary")


@dataclass(frozen=True, kw_only=True)
class HistoryChunkContent(Struct):
    items: tuple[HistoryItem, ...] = wire(
        "items", ListOf(Nested(HistoryItem), 0, MAX_CHUNK_ITEMS), "messages, in E's order"
    )
    left: int = wire("left", UInt(0, MAX_HISTORY_MESSAGES), "messages still to come")


#: The frames of the history stream, in the order they flow.
HISTORY_MESSAGES: tuple[type[HistoryRequest], type[HistoryDeny], type[HistoryChunk]] = (
    HistoryRequest,
    HistoryDeny,
    HistoryChunk,
)
_MESSAGES: dict[str, type[HistoryRequest] | type[HistoryDeny] | type[HistoryChunk]] = {
    cls.KIND: cls for cls in HISTORY_MESSAGES
}


def decode_history_message(data: bytes) -> HistoryRequest | HistoryDeny | HistoryChunk:
    """One frame of the history stream, strictly decoded (``unknown-kind`` otherwise)."""
    raw = decode_map(data, max_size=MAX_HISTORY_FRAME)
    kind = raw.get("t")
    cls = _MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError("unknown-kind", "not a history message")
    message = cls.from_value(raw)
    assert isinstance(message, HistoryRequest | HistoryDeny | HistoryChunk)
    return message


def decode_chunk_content(plain: bytes) -> HistoryChunkContent:
    return HistoryChunkContent.from_value(decode_map(plain, max_size=MAX_CHUNK_PLAIN))


class HistoryBox:
    """The key both devices of one sync compute, and sealing and opening of chunks.

    ``existing`` and ``new`` are the two device keys (Ed25519, E then N); ``own_seed`` the
    seed of whichever of the two runs this; ``nonce`` the request's."""

    __slots__ = ("_key", "_transcript")

    def __init__(self, *, existing: bytes, new: bytes, own_seed: bytes, nonce: bytes) -> None:
        own = SigningKey(own_seed)
        other = new if bytes(own.verify_key) == existing else existing
        try:
            shared = crypto_scalarmult(
                bytes(own.to_curve25519_private_key()),
                bytes(VerifyKey(other).to_curve25519_public_key()),
            )
        except (NaclError, ValueError):
            raise WireError("bad-key", "not a usable device key") from None
        self._transcript = cbor.encode([_TRANSCRIPT_LABEL, existing, new, nonce])
        self._key = blake2b(self._transcript, size=32, key=shared, person=b"p2pchat-histkey")

    def __repr__(self) -> str:
        return "<HistoryBox>"

    def _ad(self, index: int) -> bytes:
        return self._transcript + index.to_bytes(4, "big")

    def seal(self, index: int, content: HistoryChunkContent, *, rng: Rng) -> bytes:
        """The ``hchunk`` frame number ``index`` carrying ``content``."""
        nonce = rng(_BOX_NONCE)
        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(
            content.to_bytes(), self._ad(index), nonce, self._key
        )
        return HistoryChunk(t="hchunk", v=1, n=index, box=nonce + sealed).to_bytes()

    def open(self, chunk: HistoryChunk, *, expected: int) -> HistoryChunkContent:
        """The content of chunk ``expected`` (``unexpected`` for another index,
        ``bad-box`` if it was not sealed for this sync)."""
        if chunk.n != expected:
            raise WireError("unexpected", f"expected chunk {expected}, got {chunk.n}")
        box = chunk.box
        try:
            plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
                box[_BOX_NONCE:], self._ad(chunk.n), box[:_BOX_NONCE], self._key
            )
        except (NaclError, ValueError):
            raise WireError("bad-box", "the chunk was not sealed for this sync") from None
        return decode_chunk_content(plain)
