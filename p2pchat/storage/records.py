"""The value objects a store keeps: frozen, validated on construction, secrets out of ``repr``.

Validation lives here, in ``__post_init__``, so that both stores refuse exactly the same
inputs (a record that cannot be stored cannot even be built) and the SQL layer can trust
what it receives. Bad values raise :class:`ValueError`, bad types :class:`TypeError`, as
``p2pchat_crypto.sealed`` does for a bad key length: they are bugs in the caller, not
storage failures.

Times are ``int`` milliseconds since the Unix epoch, always passed in by the caller.
Opaque blobs (session pickles, message bodies, encrypted frames, sealed envelopes) are
``bytes`` to the store and are hidden from ``repr`` so they never reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from p2pchat.errors import QuotaExceededError
from p2pchat.protocol.content import AMEND_TYPES

__all__ = [
    "KEY_LEN",
    "MAX_ID_BYTES",
    "MAX_DHT_KEY_BYTES",
    "ContactState",
    "ConversationKind",
    "Direction",
    "DeliveryState",
    "PeerSource",
    "Contact",
    "SessionRecord",
    "Conversation",
    "NewMessage",
    "Message",
    "AddedMessage",
    "DeviceDelivery",
    "NewOutboxItem",
    "OutboxItem",
    "MailboxItem",
    "MailboxQuota",
    "DhtRecord",
    "Peer",
    "StoreStatistics",
    "GROUP_ID_LEN",
    "MAX_GROUP_EVENT_BYTES",
    "MAX_GROUP_KIND",
    "MAX_GROUP_NAME",
    "MAX_GROUP_TAG",
    "MAX_GROUP_TAGS",
    "GroupStatus",
    "GroupInfo",
    "StoredGroupEvent",
]

#: Account and device keys are 32-byte public keys.
KEY_LEN = 32
#: Longest message, session, mailbox item id or tag (ids are hashes or random, not data).
MAX_ID_BYTES = 64
#: Longest DHT key (libp2p keys are a namespace plus a multihash).
MAX_DHT_KEY_BYTES = 256
_MAX_TEXT = 1024
#: A group id is the 32-byte hash of its genesis event; event ids are hashes too.
GROUP_ID_LEN = 32
#: Longest stored group event (the genesis included): the protocol's event size limit.
MAX_GROUP_EVENT_BYTES = 80 * 1024
MAX_GROUP_KIND = 16
MAX_GROUP_NAME = 64
MAX_GROUP_TAG = 32
MAX_GROUP_TAGS = 16
_MAX_INT = 2**63 - 1  # SQLite's INTEGER range; both stores refuse the same values


class ContactState(StrEnum):
    """Where a contact stands; ``requested_in`` is a stranger waiting for our consent."""

    REQUESTED_IN = "requested_in"
    REQUESTED_OUT = "requested_out"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    BLOCKED = "blocked"


class ConversationKind(StrEnum):
    DM = "dm"
    GROUP = "group"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class PeerSource(StrEnum):
    DHT = "dht"
    MDNS = "mdns"
    MANUAL = "manual"


class GroupStatus(StrEnum):
    """Our standing in a group: kept after leaving or removal so its history stays readable."""

    ACTIVE = "active"
    LEFT = "left"
    REMOVED = "removed"


# -- validation helpers -----------------------------------------------------------------


def check_bytes(name: str, value: object, *, exact: int | None = None, max_len: int = 0) -> None:
    """Refuse non-bytes, a wrong exact length, or (if ``max_len``) an empty or long value."""
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if exact is not None and len(value) != exact:
        raise ValueError(f"{name} must be {exact} bytes, got {len(value)}")
    if max_len and not 0 < len(value) <= max_len:
        raise ValueError(f"{name} must be 1 to {max_len} bytes, got {len(value)}")


def check_key(name: str, value: object) -> None:
    check_bytes(name, value, exact=KEY_LEN)


def check_text(name: str, value: object, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not (allow_empty or value) or len(value) > _MAX_TEXT:
        raise ValueError(f"{name} must be 1 to {_MAX_TEXT} characters")


def check_int(name: str, value: object, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if not minimum <= value <= _MAX_INT:
        raise ValueError(f"{name} must be between {minimum} and 2**63-1, got {value}")


def check_short_text(name: str, value: object, *, max_len: int) -> None:
    """Refuse non-str, empty or longer than ``max_len`` characters."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not 0 < len(value) <= max_len:
        raise ValueError(f"{name} must be 1 to {max_len} characters, got {len(value)}")


def check_type(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")


def check_optional_type(name: str, value: object, kind: type) -> None:
    if value is not None:
        check_type(name, value, kind)


def check_optional(name: str, value: object, check: str) -> None:
    """Check ``value`` as a ``key``, ``id``, ``int`` or text, unless it is ``None``."""
    if value is None:
        return
    if check == "int":
        check_int(name, value)
    elif check == "key":
        check_key(name, value)
    elif check == "id":
        check_bytes(name, value, max_len=MAX_ID_BYTES)
    else:
        check_text(name, value, allow_empty=True)


def check_delivery(state: object, reason: object) -> None:
    check_type("state", state, DeliveryState)
    check_optional("reason", reason, "text")
    if reason is not None and state is not DeliveryState.FAILED:
        raise ValueError("a reason is only recorded for a failed delivery")


def session_key(account: bytes, device: bytes, session_id: bytes) -> tuple[bytes, bytes, bytes]:
    check_key("account", account)
    check_key("device", device)
    check_bytes("session_id", session_id, max_len=MAX_ID_BYTES)
    return (account, device, session_id)


# -- records ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Contact:
    """Someone we know, keyed by account key. ``identity``/``devices`` are opaque blobs."""

    account: bytes
    display_name: str
    state: ContactState
    verified: bool = False
    identity: bytes = field(default=b"", repr=False)
    devices: bytes = field(default=b"", repr=False)
    created_at: int
    updated_at: int
    #: The name they give themselves (sent, authenticated, in their messages): a claim,
    #: shown marked as one; ``display_name`` is the name we chose for them.
    claimed_name: str | None = None

    def __post_init__(self) -> None:
        check_key("account", self.account)
        check_text("display_name", self.display_name, allow_empty=True)
        check_optional("claimed_name", self.claimed_name, "text")
        check_type("state", self.state, ContactState)
        if not isinstance(self.verified, bool):
            raise TypeError("verified must be bool")
        check_bytes("identity", self.identity)
        check_bytes("devices", self.devices)
        check_int("created_at", self.created_at)
        check_int("updated_at", self.updated_at)


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRecord:
    """One pairwise session with a peer device; a peer may have several (``session_id``)."""

    account: bytes
    device: bytes
    session_id: bytes
    pickle: bytes = field(repr=False)
    updated_at: int

    def __post_init__(self) -> None:
        check_key("account", self.account)
        check_key("device", self.device)
        check_bytes("session_id", self.session_id, max_len=MAX_ID_BYTES)
        check_bytes("pickle", self.pickle)
        check_int("updated_at", self.updated_at)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceDelivery:
    """Where one of our messages stands on one device it was fanned out to (a device of
    the recipient, or one of our own other devices)."""

    message_id: bytes
    device: bytes
    state: DeliveryState
    reason: str | None = None
    updated_at: int

    def __post_init__(self) -> None:
        check_bytes("message_id", self.message_id, max_len=MAX_ID_BYTES)
        check_key("device", self.device)
        if not isinstance(self.state, DeliveryState):
            raise TypeError("state must be a DeliveryState")
        check_optional("reason", self.reason, "text")
        check_int("updated_at", self.updated_at)


@dataclass(frozen=True, kw_only=True, slots=True)
class Conversation:
    """A conversation; ``peer_account`` is set for a DM, ``None`` for a group."""

    conversation_id: str
    kind: ConversationKind
    peer_account: bytes | None
    last_activity: int
    unread: int = 0

    def __post_init__(self) -> None:
        check_text("conversation_id", self.conversation_id)
        check_type("kind", self.kind, ConversationKind)
        check_optional("peer_account", self.peer_account, "key")
        if self.kind is ConversationKind.DM and self.peer_account is None:
            raise ValueError("a dm conversation needs a peer_account")
        check_int("last_activity", self.last_activity)
        check_int("unread", self.unread)


@dataclass(frozen=True, kw_only=True, slots=True)
class NewMessage:
    """A message to record; the store assigns its per-conversation ``seq``."""

    conversation_id: str
    message_id: bytes
    sender_account: bytes
    sender_device: bytes
    direction: Direction
    content_type: str
    body: bytes = field(repr=False)
    sent_at: int
    received_at: int
    state: DeliveryState

    @property
    def unread(self) -> bool:
        """Whether it adds to its conversation's unread count: an inbound message, not a
        reaction, edit or deletion of an earlier one (``protocol/dm_amend.py``)."""
        return self.direction is Direction.IN and self.content_type not in AMEND_TYPES

    def __post_init__(self) -> None:
        check_text("conversation_id", self.conversation_id)
        check_bytes("message_id", self.message_id, max_len=MAX_ID_BYTES)
        check_key("sender_account", self.sender_account)
        check_key("sender_device", self.sender_device)
        check_type("direction", self.direction, Direction)
        check_text("content_type", self.content_type)
        check_bytes("body", self.body)
        check_int("sent_at", self.sent_at)
        check_int("received_at", self.received_at)
        check_type("state", self.state, DeliveryState)


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """A stored message: :class:`NewMessage` plus ``seq`` and the failure reason, if any."""

    conversation_id: str
    message_id: bytes
    sender_account: bytes
    sender_device: bytes
    direction: Direction
    content_type: str
    body: bytes = field(repr=False)
    sent_at: int
    received_at: int
    state: DeliveryState
    seq: int
    failure_reason: str | None = None

    @classmethod
    def from_new(cls, new: NewMessage, *, seq: int) -> Message:
        return cls(
            conversation_id=new.conversation_id,
            message_id=new.message_id,
            sender_account=new.sender_account,
            sender_device=new.sender_device,
            direction=new.direction,
            content_type=new.content_type,
            body=new.body,
            sent_at=new.sent_at,
            received_at=new.received_at,
            state=new.state,
            seq=seq,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class AddedMessage:
    """What :meth:`add_message` did: ``duplicate`` means nothing changed, ``message`` is
    the copy already stored (so the node can re-acknowledge it without showing it twice)."""

    message: Message
    duplicate: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class NewOutboxItem:
    """An encrypted frame waiting to be delivered; first attempt due at ``created_at``."""

    destination_account: bytes
    destination_device: bytes | None = None
    conversation_id: str | None = None
    message_id: bytes | None = None
    payload: bytes = field(repr=False)
    created_at: int

    def __post_init__(self) -> None:
        check_key("destination_account", self.destination_account)
        check_optional("destination_device", self.destination_device, "key")
        if self.conversation_id is not None:
            check_text("conversation_id", self.conversation_id)
        check_optional("message_id", self.message_id, "id")
        check_bytes("payload", self.payload)
        check_int("created_at", self.created_at)


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxItem:
    """A queued frame with its store-assigned ``item_id`` and retry bookkeeping."""

    item_id: int
    destination_account: bytes
    destination_device: bytes | None
    conversation_id: str | None
    message_id: bytes | None
    payload: bytes = field(repr=False)
    created_at: int
    attempts: int
    next_attempt_at: int
    last_error: str | None

    @classmethod
    def from_new(cls, new: NewOutboxItem, *, item_id: int) -> OutboxItem:
        return cls(
            item_id=item_id,
            destination_account=new.destination_account,
            destination_device=new.destination_device,
            conversation_id=new.conversation_id,
            message_id=new.message_id,
            payload=new.payload,
            created_at=new.created_at,
            attempts=0,
            next_attempt_at=new.created_at,
            last_error=None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class MailboxItem:
    """A sealed envelope this node holds for someone else until it is fetched or expires."""

    item_id: bytes
    recipient_tag: bytes
    sender_tag: bytes
    blob: bytes = field(repr=False)
    stored_at: int
    expires_at: int

    @property
    def size(self) -> int:
        return len(self.blob)

    def __post_init__(self) -> None:
        check_bytes("item_id", self.item_id, max_len=MAX_ID_BYTES)
        check_bytes("recipient_tag", self.recipient_tag, max_len=MAX_ID_BYTES)
        check_bytes("sender_tag", self.sender_tag, max_len=MAX_ID_BYTES)
        check_bytes("blob", self.blob)
        check_int("stored_at", self.stored_at)
        check_int("expires_at", self.expires_at)
        if self.expires_at <= self.stored_at:
            raise ValueError("expires_at must be after stored_at")


@dataclass(frozen=True, kw_only=True, slots=True)
class MailboxQuota:
    """Limits on what the mailbox holds (unexpired items only), per sender tag and in total."""

    max_items_per_sender: int
    max_bytes_per_sender: int
    max_items_total: int
    max_bytes_total: int

    def __post_init__(self) -> None:
        for name in (
            "max_items_per_sender",
            "max_bytes_per_sender",
            "max_items_total",
            "max_bytes_total",
        ):
            check_int(name, getattr(self, name), minimum=1)

    def check(
        self, size: int, *, sender_usage: tuple[int, int], total_usage: tuple[int, int]
    ) -> None:
        """Raise :class:`QuotaExceededError` unless one more item of ``size`` bytes fits,
        given the ``(items, bytes)`` already held for its sender and in total."""

        items, used = sender_usage
        if items + 1 > self.max_items_per_sender or used + size > self.max_bytes_per_sender:
            raise QuotaExceededError("sender", "this sender's share of the mailbox is full")
        items, used = total_usage
        if items + 1 > self.max_items_total or used + size > self.max_bytes_total:
            raise QuotaExceededError("total", "the mailbox is full")


@dataclass(frozen=True, kw_only=True, slots=True)
class DhtRecord:
    """A cached DHT value; a higher ``seq`` supersedes a lower one."""

    key: bytes
    value: bytes = field(repr=False)
    seq: int
    expires_at: int

    def __post_init__(self) -> None:
        check_bytes("key", self.key, max_len=MAX_DHT_KEY_BYTES)
        check_bytes("value", self.value)
        check_int("seq", self.seq)
        check_int("expires_at", self.expires_at)


@dataclass(frozen=True, kw_only=True, slots=True)
class Peer:
    """A libp2p peer we have seen, with where we heard of it."""

    peer_id: str
    addrs: tuple[str, ...]
    account: bytes | None = None
    last_seen: int
    display_name: str | None = None
    source: PeerSource

    def __post_init__(self) -> None:
        check_text("peer_id", self.peer_id)
        if not isinstance(self.addrs, tuple):
            raise TypeError("addrs must be a tuple of str")
        for addr in self.addrs:
            check_text("addr", addr)
        check_optional("account", self.account, "key")
        check_int("last_seen", self.last_seen)
        check_optional("display_name", self.display_name, "text")
        check_type("source", self.source, PeerSource)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreStatistics:
    """Row counts, for ``node.statistics()``."""

    contacts: int
    blocked: int
    sessions: int
    conversations: int
    messages: int
    outbox: int
    mailbox_items: int
    mailbox_bytes: int
    dht_records: int
    peers: int
    groups: int
    group_events: int


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupInfo:
    """A group we belong (or belonged) to.

    ``genesis`` is kept byte for byte because the group id is its hash: the node can
    re-verify the group, or hand the genesis to a peer, without re-encoding anything.
    ``keyring`` is the sealed ``GroupKeyring`` pickle, opaque here; ``None`` until the
    node has one (a public group, or a private one whose key has not arrived yet).
    """

    group_id: bytes
    kind: str
    name: str
    genesis: bytes = field(repr=False)
    status: GroupStatus
    joined_at: int
    updated_at: int
    tags: tuple[str, ...] = ()
    keyring: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_bytes("group_id", self.group_id, exact=GROUP_ID_LEN)
        # Any short kind is accepted: the protocol, not the store, decides which exist.
        check_short_text("kind", self.kind, max_len=MAX_GROUP_KIND)
        check_short_text("name", self.name, max_len=MAX_GROUP_NAME)
        check_bytes("genesis", self.genesis, max_len=MAX_GROUP_EVENT_BYTES)
        check_type("status", self.status, GroupStatus)
        check_int("joined_at", self.joined_at)
        check_int("updated_at", self.updated_at)
        if not isinstance(self.tags, tuple):
            raise TypeError(f"tags must be a tuple of str, not {type(self.tags).__name__}")
        if len(self.tags) > MAX_GROUP_TAGS:
            raise ValueError(f"at most {MAX_GROUP_TAGS} tags, got {len(self.tags)}")
        for tag in self.tags:
            check_short_text("tag", tag, max_len=MAX_GROUP_TAG)
        if self.keyring is not None:
            check_bytes("keyring", self.keyring)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredGroupEvent:
    """One group event as received, kept byte for byte (its id is its hash).

    ``seq`` is the event's position in its device's chain; 0 is allowed because live
    comments have none. ``device``, ``seq`` and ``lamport`` are copied out of the event so
    the node can rebuild its engine without decoding every stored event first.
    """

    event_id: bytes
    device: bytes
    seq: int
    lamport: int
    data: bytes = field(repr=False)
    received_at: int

    def __post_init__(self) -> None:
        check_bytes("event_id", self.event_id, exact=GROUP_ID_LEN)
        check_key("device", self.device)
        check_int("seq", self.seq)
        check_int("lamport", self.lamport)
        check_bytes("data", self.data, max_len=MAX_GROUP_EVENT_BYTES)
        check_int("received_at", self.received_at)
