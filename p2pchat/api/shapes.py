"""What the API's results look like, and how a person names a contact in params.

Conventions, so every language can use the API without bytes in params:

* keys and ids in params and results are lower-case hex strings (an account key is 64
  hex digits, a message id 32); times are ints of milliseconds since the Unix epoch;
* a *contact* param takes an account key in hex or a contact's display name, if exactly
  one contact has it (case-insensitive), so people can type names;
* lists come back oldest or alphabetically first, and never contain raw ``bytes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from p2pchat.errors import ConfigError, NotFoundError, P2PChatError
from p2pchat.protocol.content import Content, MediaRef, attachments_of
from p2pchat.protocol.dm_amend import Folded
from p2pchat.storage.records import (
    Contact,
    Conversation,
    DeliveryState,
    DeviceDelivery,
    Direction,
    Message,
)
from p2pchat.text import person_label
from p2pchat.vocabulary import add_deprecated
from p2pchat_crypto.identity import fingerprint_of

__all__ = [
    "plain",
    "contact_to_dict",
    "account_label",
    "message_to_dict",
    "folded_to_dict",
    "conversation_to_dict",
    "delivery_to_dict",
    "resolve_contact",
]

_ACCOUNT_HEX: Final = 64
_CONTENT_MAX: Final = 64 * 1024


def plain(value: Any) -> Any:
    """``value`` with bytes as hex and tuples as lists, recursively (msgpack and JSON safe)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def account_label(account: bytes, contact: Contact | None, claimed: str | None = None) -> str:
    """How ``account`` is named on screen (:func:`p2pchat.text.person_label`): the name we
    gave the contact (marked until verified), else the name they claim (marked as a
    claim; for a stranger, ``claimed``: their profile's), else the first two groups of
    the fingerprint. A contact still carrying its default name (that fingerprint prefix)
    counts as not named by us."""
    fallback = fingerprint_of(account)[:9]
    if contact is None:  # a stranger: the name their profile claims, if any
        return person_label(name=None, claimed=claimed, verified=False, fallback=fallback)
    named = contact.display_name if contact.display_name not in ("", fallback) else None
    return person_label(
        name=named, claimed=contact.claimed_name, verified=contact.verified, fallback=fallback
    )


def contact_to_dict(contact: Contact) -> dict[str, Any]:
    return {
        "account": contact.account.hex(),
        "fingerprint": fingerprint_of(contact.account),
        "name": contact.display_name,
        "claimed_name": contact.claimed_name,
        "label": account_label(contact.account, contact),
        "state": contact.state.value,
        "verified": contact.verified,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def media_to_dict(ref: MediaRef) -> dict[str, Any]:
    """A ``media-ref`` for clients (``files.get`` takes its ``file_id``): never its key."""
    return {
        "file_id": ref.hash.hex(),
        "name": ref.name,
        "mime": ref.mime,
        "size": ref.size,
        "encrypted": ref.key is not None,
        "thumbnail": ref.thumb.hex() if ref.thumb else None,
    }


def files_of(content: Content | None) -> list[dict[str, Any]]:
    """The attachments of a content, as :func:`media_to_dict` maps."""
    return [] if content is None else [media_to_dict(r) for r in attachments_of(content)]


def _body(content: Content) -> Any:
    """A content's body for clients: attachments appear in ``files``, keys nowhere."""
    return plain({k: v for k, v in content.body.items() if k != "att"})


def message_to_dict(message: Message, waiting: str | None = None) -> dict[str, Any]:
    """A stored message with its content decoded; an undecodable body keeps only its type.
    ``waiting``: why our queued or sent message is not delivered yet (the outbox's last
    failed attempt)."""
    try:
        content: Content | None = Content.from_bytes(message.body, max_size=_CONTENT_MAX)
    except (P2PChatError, ValueError):
        content = None  # stored by a newer version or damaged: still list the message
    record = {
        "conversation_id": message.conversation_id,
        "message_id": message.message_id.hex(),
        "seq": message.seq,
        "direction": message.direction.value,
        "state": message.state.value,
        "failure_reason": message.failure_reason,
        "waiting": waiting
        if message.state in (DeliveryState.QUEUED, DeliveryState.SENT)
        and message.direction is Direction.OUT
        else None,
        "author": message.sender_account.hex(),
        "device": message.sender_device.hex(),
        "content_type": message.content_type,
        "text": content.text if content is not None else "",
        "body": _body(content) if content is not None else {},
        "files": files_of(content),
        "sent_at": message.sent_at,
        "received_at": message.received_at,
    }
    return dict(add_deprecated(record, "sender", "sender_device"))


def delivery_to_dict(delivery: DeviceDelivery, *, own: bool) -> dict[str, Any]:
    """DEVICE_DELIVERY: where a message of ours stands on one device it went to."""
    return {
        "device": delivery.device.hex(),
        "own": own,
        "state": delivery.state.value,
        "reason": delivery.reason,
        "updated_at": delivery.updated_at,
    }


def folded_to_dict(
    message: Message, changes: Folded | None, waiting: str | None = None
) -> dict[str, Any]:
    """:func:`message_to_dict` of a ``dm.history`` message, with what later reactions,
    edits and deletions did to it: ``reactions`` (emoji -> count), ``edited`` (the text
    is the latest edit's), ``deleted`` (no text, body or files left)."""
    record = message_to_dict(message, waiting)
    record["reactions"] = changes.counts() if changes is not None else {}
    record["edited"] = changes is not None and changes.edited and not changes.deleted
    record["deleted"] = changes is not None and changes.deleted
    if changes is not None and changes.deleted:
        record.update(text="", body={}, files=[])
    elif changes is not None and changes.text is not None:
        record["text"] = changes.text
    return record


def conversation_to_dict(conversation: Conversation, contact: Contact | None) -> dict[str, Any]:
    peer = conversation.peer_account
    return {
        "conversation_id": conversation.conversation_id,
        "kind": conversation.kind.value,
        "peer": peer.hex() if peer is not None else None,
        "name": contact.display_name if contact is not None else None,
        "label": account_label(peer, contact) if peer is not None else None,
        "last_activity": conversation.last_activity,
        "unread": conversation.unread,
    }


def _hex_account(text: str) -> bytes | None:
    cleaned = text.strip().replace(" ", "").lower()
    if len(cleaned) != _ACCOUNT_HEX:
        return None
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


def resolve_contact(text: str, contacts: Iterable[Contact]) -> bytes:
    """The account a person means by ``text``: 64 hex digits, or a unique display name.

    Hex wins even if someone is named like a key: keys are what scripts pass.
    """
    account = _hex_account(text)
    if account is not None:
        return account
    wanted = text.strip().casefold()
    matches = [c for c in contacts if c.display_name.casefold() == wanted]
    if len(matches) == 1:
        return matches[0].account
    if not matches:
        raise NotFoundError(
            f"no contact named {text!r}; give the account key (64 hex digits) "
            "or see `p2pchat contacts list`"
        )
    raise ConfigError(
        f"{len(matches)} contacts are named {text!r}; give the account key (64 hex digits)"
    )
