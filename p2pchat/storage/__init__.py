"""Local storage: the ``Store`` protocol, ``SqliteStore`` (default) and ``MemoryStore``.

See :mod:`p2pchat.storage.base` for the API and its guarantees.
"""

from __future__ import annotations

from .base import QuotaExceededError, Store, Transaction
from .memory import MemoryStore
from .records import (
    AddedMessage,
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    DeliveryState,
    DeviceDelivery,
    DhtRecord,
    Direction,
    GroupInfo,
    GroupStatus,
    MailboxItem,
    MailboxQuota,
    Message,
    NewMessage,
    NewOutboxItem,
    OutboxItem,
    Peer,
    PeerSource,
    SessionRecord,
    StoredGroupEvent,
    StoreStatistics,
)
from .sqlite import SqliteStore

__all__ = [
    # stores
    "Store",
    "Transaction",
    "SqliteStore",
    "MemoryStore",
    "QuotaExceededError",
    # records
    "Contact",
    "ContactState",
    "SessionRecord",
    "DeviceDelivery",
    "Conversation",
    "ConversationKind",
    "NewMessage",
    "Message",
    "AddedMessage",
    "Direction",
    "DeliveryState",
    "NewOutboxItem",
    "OutboxItem",
    "MailboxItem",
    "MailboxQuota",
    "DhtRecord",
    "Peer",
    "PeerSource",
    "StoreStatistics",
    "GroupInfo",
    "GroupStatus",
    "StoredGroupEvent",
]
