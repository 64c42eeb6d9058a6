"""Direct-message payloads (envelope kinds on ``/p2pchat/dm/1.0.0``).

The cryptographic parts are opaque byte strings here: the X3DH initial message and the
Double Ratchet message formats are defined in ``protocol-spec/crypto.md``. Their
plaintext is a :class:`DmPlaintext` (canonical CBOR), so the content of a conversation
is never visible to relays, mailboxes or the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .codec import Bytes, ListOf, Nested, Struct, Text, UInt, wire
from .content import Content

__all__ = [
    "MESSAGE_ID",
    "ACCOUNT_KEY",
    "DmInit",
    "DmMessage",
    "DmAck",
    "DmRefuse",
    "REFUSE_REASONS",
    "ContactRequest",
    "ContactAccept",
    "ContactDecline",
    "DmPlaintext",
    "DM_KINDS",
]

#: A message id: 16 random bytes chosen by the sender (unique per conversation).
MESSAGE_ID = Bytes(16)
#: An Ed25519 account (identity) public key.
ACCOUNT_KEY = Bytes(32)
#: Cap on an opaque crypto blob inside a DM (crypto.md formats are far smaller).
_CRYPTO_BLOB = Bytes(low=1, high=256 * 1024)


@dataclass(frozen=True, kw_only=True)
class DmInit(Struct):
    """The first message of a session: an X3DH initial message (crypto.md)."""

    KIND: ClassVar[str] = "dm.init"
    id: bytes = wire("id", MESSAGE_ID, "message id, acknowledged by dm.ack")
    x3dh: bytes = wire("x3dh", _CRYPTO_BLOB, "X3DH initial message (crypto.md), opaque")


@dataclass(frozen=True, kw_only=True)
class DmMessage(Struct):
    """A Double Ratchet message (crypto.md) of an established session."""

    KIND: ClassVar[str] = "dm.msg"
    id: bytes = wire("id", MESSAGE_ID, "message id, acknowledged by dm.ack")
    ratchet: bytes = wire("r", _CRYPTO_BLOB, "Double Ratchet message (crypto.md), opaque")


@dataclass(frozen=True, kw_only=True)
class DmAck(Struct):
    """Delivery receipt: the recipient decrypted and stored these messages."""

    KIND: ClassVar[str] = "dm.ack"
    ids: tuple[bytes, ...] = wire("ids", ListOf(MESSAGE_ID, 1, 256), "acknowledged message ids")


#: Why a recipient refuses messages (``dm.refuse``); a receiver of another value shows it.
REFUSE_REASONS = {
    "invalid-content": "the recipient's node cannot accept its content (too large or malformed)",
    "declined": "the recipient declined your contact request",
}


@dataclass(frozen=True, kw_only=True)
class DmRefuse(Struct):
    """Signed refusal: the recipient decrypted these messages and will never store them.

    The sender marks them ``failed`` with the reason and stops retrying them.
    """

    KIND: ClassVar[str] = "dm.refuse"
    ids: tuple[bytes, ...] = wire("ids", ListOf(MESSAGE_ID, 1, 256), "refused message ids")
    reason: str = wire("why", Text(1, 64), "invalid-content, declined (or a newer reason)")


@dataclass(frozen=True, kw_only=True)
class ContactRequest(Struct):
    """Ask to become contacts. Sent before any session exists, over the Noise channel."""

    KIND: ClassVar[str] = "contact.request"
    request_id: bytes = wire("rid", MESSAGE_ID, "request id, echoed by accept/decline")
    account: bytes = wire("acct", ACCOUNT_KEY, "requester's account key")
    name: str = wire("name", Text(1, 64), "requester's display name")
    note: str | None = wire("note", Text(0, 280), "a short greeting", optional=True)


@dataclass(frozen=True, kw_only=True)
class ContactAccept(Struct):
    KIND: ClassVar[str] = "contact.accept"
    request_id: bytes = wire("rid", MESSAGE_ID, "the accepted request id")
    account: bytes = wire("acct", ACCOUNT_KEY, "accepter's account key")
    name: str = wire("name", Text(1, 64), "accepter's display name")


@dataclass(frozen=True, kw_only=True)
class ContactDecline(Struct):
    KIND: ClassVar[str] = "contact.decline"
    request_id: bytes = wire("rid", MESSAGE_ID, "the declined request id")


@dataclass(frozen=True, kw_only=True)
class DmPlaintext(Struct):
    """What a DM decrypts to (the plaintext of dm.init / dm.msg); not an envelope kind."""

    id: bytes = wire("id", MESSAGE_ID, "equals the outer message id")
    ts: int = wire("ts", UInt(), "sender's clock, ms since the Unix epoch")
    content: Content = wire("c", Nested(Content), "the message content")  # noqa: RUF009 (wire() is a dataclasses.field)
    reply_to: bytes | None = wire("re", MESSAGE_ID, "id of the message replied to", optional=True)
    name: str | None = wire(
        "name", Text(1, 64), "the sender's display name, as they call themselves", optional=True
    )
    to: bytes | None = wire(
        "to",
        ACCOUNT_KEY,
        "a copy for the sender's own other devices: the account the message was sent to",
        optional=True,
    )


DM_KINDS: tuple[type[Struct], ...] = (
    DmInit,
    DmMessage,
    DmAck,
    ContactRequest,
    ContactAccept,
    ContactDecline,
    DmRefuse,
)
