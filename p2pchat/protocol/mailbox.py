"""Store-and-forward mailbox messages (``/p2pchat/mailbox/1.0.0``).

A mailbox must learn nothing but sizes and timing, so these frames are *not* signed
envelopes (an envelope names its sender device). A stored blob is a signed envelope
*sealed* to an opaque recipient *tag* (:func:`seal_for_tag`): the tag is the public half
of an Ed25519 key pair the recipient made for this purpose only and shares with contacts
inside encrypted sessions. Fetch and delete prove possession of that key with a signature that
names the mailbox peer and a timestamp, so a request cannot be replayed elsewhere or
much later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from nacl.exceptions import CryptoError as NaclError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from p2pchat.errors import WireError
from p2pchat_crypto.kdf import blake2b
from p2pchat_crypto.sealed import Rng

from .blob import MAX_CHUNKS
from .codec import Bool, Bytes, ListOf, Nested, Struct, Text, UInt, wire
from .kinded import KindedFrame, KindedFrames
from .signing import sign_map, signed_bytes, verify_signature

__all__ = [
    "MAX_BLOB",
    "MAX_TTL_S",
    "MAILBOX_PROTOCOL",
    "AUTH_WINDOW_MS",
    "MailboxFrame",
    "MailboxStore",
    "MailboxStored",
    "MailboxFetch",
    "MailboxItem",
    "MailboxItems",
    "MailboxDelete",
    "MailboxDeleted",
    "MailboxHold",
    "MailboxHeld",
    "MailboxRefused",
    "REFUSALS",
    "MAILBOX_KINDS",
    "MAILBOX_FRAMES",
    "decode_mailbox_frame",
    "encode_mailbox_frame",
    "sign_request",
    "verify_request",
    "SEAL_OVERHEAD",
    "seal_for_tag",
    "open_for_tag",
]

MAILBOX_PROTOCOL = "/p2pchat/mailbox/1.0.0"
#: Largest stored blob: a sealed envelope around the largest pairwise message of
#: crypto.md (262,144 bytes) plus the envelope's and the seal's overhead.
MAX_BLOB = 264 * 1024
#: What sealing adds: an X25519 ephemeral public key and a Poly1305 tag.
SEAL_OVERHEAD = 32 + 16
#: Longest a mailbox keeps a blob (30 days).
MAX_TTL_S = 30 * 24 * 3600
#: Fetch/delete timestamps more than this far from the mailbox's clock are refused.
AUTH_WINDOW_MS = 5 * 60 * 1000
_TAG = Bytes(32)
_ITEM_ID = Bytes(16)


#: ``{v: 1, k, p}`` (:mod:`p2pchat.protocol.kinded`).
MailboxFrame = KindedFrame


@dataclass(frozen=True, kw_only=True)
class MailboxStore(Struct):
    KIND: ClassVar[str] = "mbox.store"
    tag: bytes = wire("tag", _TAG, "recipient tag (a mailbox-only public key)")
    blob: bytes = wire("blob", Bytes(low=1, high=MAX_BLOB), "sealed envelope, opaque")
    ttl: int = wire("ttl", UInt(1, MAX_TTL_S), "seconds to keep it")


@dataclass(frozen=True, kw_only=True)
class MailboxStored(Struct):
    KIND: ClassVar[str] = "mbox.stored"
    id: bytes = wire("id", _ITEM_ID, "item id chosen by the mailbox")
    expires: int = wire("exp", UInt(), "when the mailbox drops it, ms")


@dataclass(frozen=True, kw_only=True)
class MailboxFetch(Struct):
    KIND: ClassVar[str] = "mbox.fetch"
    tag: bytes = wire("tag", _TAG, "recipient tag")
    mailbox: str = wire("box", Text(1, 128), "peer id of the mailbox asked (anti-replay)")
    ts: int = wire("ts", UInt(), "requester's clock, ms")
    after: bytes | None = wire("after", _ITEM_ID, "resume after this item id", optional=True)
    limit: int = wire("max", UInt(1, 256), "at most this many items")
    sig: bytes = wire("sig", Bytes(64), "Ed25519 by tag, context mailbox")


@dataclass(frozen=True, kw_only=True)
class MailboxItem(Struct):
    id: bytes = wire("id", _ITEM_ID, "item id")
    blob: bytes = wire("blob", Bytes(low=1, high=MAX_BLOB), "the stored blob")
    at: int = wire("at", UInt(), "when the mailbox received it, ms")


@dataclass(frozen=True, kw_only=True)
class MailboxItems(Struct):
    KIND: ClassVar[str] = "mbox.items"
    items: tuple[MailboxItem, ...] = wire(
        "items", ListOf(Nested(MailboxItem), 0, 256), "oldest first"
    )
    more: bool = wire("more", Bool(), "more items wait")


@dataclass(frozen=True, kw_only=True)
class MailboxDelete(Struct):
    KIND: ClassVar[str] = "mbox.delete"
    tag: bytes = wire("tag", _TAG, "recipient tag")
    mailbox: str = wire("box", Text(1, 128), "peer id of the mailbox asked (anti-replay)")
    ts: int = wire("ts", UInt(), "requester's clock, ms")
    ids: tuple[bytes, ...] = wire("ids", ListOf(_ITEM_ID, 1, 256), "items to delete")
    sig: bytes = wire("sig", Bytes(64), "Ed25519 by tag, context mailbox")


@dataclass(frozen=True, kw_only=True)
class MailboxDeleted(Struct):
    KIND: ClassVar[str] = "mbox.deleted"
    count: int = wire("n", UInt(0, 256), "items actually deleted")


@dataclass(frozen=True, kw_only=True)
class MailboxHold(Struct):
    """Ask a mailbox to hold an encrypted blob (an attachment of mail left there): the
    mailbox fetches its chunks from the asking peer over ``/p2pchat/blob/1.0.0`` and
    answers ``mbox.held`` once it holds them all (blobs.md section 6)."""

    KIND: ClassVar[str] = "mbox.hold"
    blob: bytes = wire("b", Bytes(32), "blob id")
    manifest: bytes = wire(
        "m", Bytes(low=1, high=32 * MAX_CHUNKS + 64), "canonical CBOR of the blob's manifest"
    )
    ttl: int = wire("ttl", UInt(1, MAX_TTL_S), "seconds to keep it")


@dataclass(frozen=True, kw_only=True)
class MailboxHeld(Struct):
    KIND: ClassVar[str] = "mbox.held"
    blob: bytes = wire("b", Bytes(32), "blob id")
    expires: int = wire("exp", UInt(), "when the mailbox drops it, ms")


#: Why a mailbox refuses to store (``mbox.refused``): the depositor's share or the whole
#: mailbox is full, it holds no blobs, the manifest does not match the id, or it could
#: not fetch every chunk from the depositor.
REFUSALS = ("quota-sender", "quota-total", "no-blobs", "bad-manifest", "fetch-failed")


@dataclass(frozen=True, kw_only=True)
class MailboxRefused(Struct):
    KIND: ClassVar[str] = "mbox.refused"
    why: str = wire("why", Text(1, 32), "one of REFUSALS")
    limit: int | None = wire(
        "max", UInt(), "the quota that would be exceeded, bytes", optional=True
    )


#: The ``/p2pchat/mailbox/1.0.0`` frames (:mod:`p2pchat.protocol.kinded`).
MAILBOX_FRAMES = KindedFrames(
    "mailbox",
    (
        MailboxStore, MailboxStored, MailboxFetch, MailboxItems, MailboxDelete, MailboxDeleted,
        MailboxHold, MailboxHeld, MailboxRefused,
    ),
)  # fmt: skip
MAILBOX_KINDS = MAILBOX_FRAMES.kinds
#: Strictly decode a mailbox frame and its payload (no signature check).
decode_mailbox_frame = MAILBOX_FRAMES.decode
encode_mailbox_frame = MAILBOX_FRAMES.encode


def sign_request(
    request: MailboxFetch | MailboxDelete, *, tag_key: SigningKey
) -> MailboxFetch | MailboxDelete:
    """Return ``request`` with ``tag`` and ``sig`` set from the recipient's tag key."""
    unsigned = dataclasses.replace(request, tag=bytes(tag_key.verify_key), sig=bytes(64))
    sig = sign_map("mailbox", _with_kind(unsigned), tag_key)
    return dataclasses.replace(unsigned, sig=sig)


def verify_request(request: MailboxFetch | MailboxDelete, *, mailbox: str, now: int) -> None:
    """The mailbox's check: right mailbox, fresh timestamp, valid signature by the tag.

    The signed map is the payload map plus ``"k"`` (the kind), so a fetch signature can
    never authorise a delete. Fields unknown to this version are not covered: a mailbox
    request is re-encoded from its typed form.
    """
    if request.mailbox != mailbox:
        raise WireError("wrong-mailbox", "request names another mailbox")
    if abs(request.ts - now) > AUTH_WINDOW_MS:
        raise WireError("stale-request", "timestamp outside the accepted window")
    verify_signature(signed_bytes("mailbox", _with_kind(request)), request.sig, request.tag)


def _with_kind(request: MailboxFetch | MailboxDelete) -> dict[str, Any]:
    value: dict[str, Any] = request.to_value()
    value["k"] = request.KIND
    return value


def _seal_nonce(ephemeral: bytes, recipient: bytes) -> bytes:
    return blake2b(ephemeral + recipient, size=24)


def seal_for_tag(envelope: bytes, *, tag: bytes, rng: Rng) -> bytes:
    """Encrypt ``envelope`` anonymously to the holder of ``tag``.

    The format is libsodium's ``crypto_box_seal`` to the X25519 form of the Ed25519 tag
    key (``crypto_sign_ed25519_pk_to_curve25519``): ``epk || crypto_box(envelope, nonce,
    recipient, esk)`` with ``nonce = BLAKE2b-192(epk || recipient)``; the ephemeral secret
    comes from ``rng`` so the result is reproducible in tests. Any libsodium
    ``crypto_box_seal_open`` opens it. Raises ``WireError("bad-key")`` for a tag that is
    not a valid Ed25519 public key (tags come from peers).
    """
    try:
        recipient = VerifyKey(tag).to_curve25519_public_key()
    except (NaclError, ValueError, TypeError) as exc:
        raise WireError("bad-key", "the tag is not an Ed25519 public key") from exc
    ephemeral = PrivateKey(rng(32))
    epk = bytes(ephemeral.public_key)
    nonce = _seal_nonce(epk, bytes(recipient))
    return epk + Box(ephemeral, recipient).encrypt(envelope, nonce).ciphertext


def open_for_tag(blob: bytes, *, tag_key: SigningKey) -> bytes:
    """Open a blob made by :func:`seal_for_tag`; ``WireError("bad-seal")`` if it does not open."""
    if not SEAL_OVERHEAD <= len(blob) <= MAX_BLOB:
        raise WireError("bad-seal", "blob length out of range")
    own = tag_key.to_curve25519_private_key()
    epk = blob[:32]
    try:
        box = Box(own, PublicKey(epk))
        return box.decrypt(blob[32:], _seal_nonce(epk, bytes(own.public_key)))
    except (NaclError, ValueError, TypeError) as exc:
        raise WireError("bad-seal", "the blob does not open with this tag key") from exc
