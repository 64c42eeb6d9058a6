"""The ``Store`` protocol the node programs against, and the storage errors.

Two implementations pass one contract suite (``tests/unit/test_store_contract.py``):
:class:`~p2pchat.storage.sqlite.SqliteStore` (the default, on disk) and
:class:`~p2pchat.storage.memory.MemoryStore` (tests and the simulator).

Every method is ``async`` because the SQLite one may block on disk I/O (it runs in a worker
thread). Every call is atomic on its own; several writes that must land together (the new
session pickle *and* the received message, before the delivery ack) go in one
:meth:`Store.transaction`::

    async with store.transaction() as tx:
        await tx.put_session(record)
        added = await tx.add_message(message)
    # committed (and, for SqliteStore, fsynced) here; rolled back if the block raised

Inside the block use ``tx``, never ``store``: the store serialises callers, so a plain
store call from the task that holds the transaction raises :class:`LocalProtocolError`
instead of deadlocking. Other tasks' calls wait until the transaction ends.

Errors::

    StorageError (p2pchat.errors)       the store failed or the file is corrupt
    └── QuotaExceededError (p2pchat.errors)  a mailbox put would exceed a quota (nothing stored)
    ClosedError (p2pchat.errors)        the store was closed by its owner
    NotFoundError (p2pchat.errors)      updating a row that does not exist
    LocalProtocolError (p2pchat.errors) store used inside its own transaction
    ValueError / TypeError              a malformed argument (a bug in the caller)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, Self, TypeVar

from p2pchat.errors import QuotaExceededError

from .records import (
    AddedMessage,
    Contact,
    ContactState,
    Conversation,
    DeliveryState,
    DeviceDelivery,
    DhtRecord,
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

__all__ = ["QuotaExceededError", "Transaction", "Store", "UnitOfWork"]

T = TypeVar("T")


class Transaction(Protocol):
    """Every read and write of the store. A store call runs as its own transaction; the
    ``tx`` of :meth:`Store.transaction` runs them all in one.

    Lists come back in a defined order; ``limit`` must be positive.
    """

    # -- meta: small key/value settings (owner account, replay cache, prekey pickles) --
    async def get_meta(self, key: str) -> bytes | None: ...
    async def put_meta(self, key: str, value: bytes) -> None: ...
    async def delete_meta(self, key: str) -> bool:
        """Return whether the key existed."""
        ...

    # -- contacts ---------------------------------------------------------------------
    async def put_contact(self, contact: Contact) -> None:
        """Insert or replace the contact with this account key."""
        ...

    async def get_contact(self, account: bytes) -> Contact | None: ...
    async def list_contacts(self, *, state: ContactState | None = None) -> list[Contact]:
        """Contacts (optionally only those in ``state``), ordered by account key."""
        ...

    async def delete_contact(self, account: bytes) -> bool: ...
    async def is_blocked(self, account: bytes) -> bool:
        """Indexed lookup: the node calls it before any expensive work on a frame."""
        ...

    # -- sessions (sealed pickles, opaque here) -----------------------------------------
    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace the session ``(account, device, session_id)``."""
        ...

    async def get_session(
        self, account: bytes, device: bytes, session_id: bytes
    ) -> SessionRecord | None: ...
    async def list_sessions(
        self, account: bytes, *, device: bytes | None = None
    ) -> list[SessionRecord]:
        """A peer's sessions, most recently updated first (the order to try them in)."""
        ...

    async def list_session_peers(self) -> list[tuple[bytes, bytes]]:
        """Every ``(account, device)`` we hold a session with, sorted: a node indexes
        them at start (contacts and group members alike)."""
        ...

    async def delete_session(self, account: bytes, device: bytes, session_id: bytes) -> bool: ...

    # -- conversations ----------------------------------------------------------------
    async def put_conversation(self, conversation: Conversation) -> None:
        """Insert or replace a conversation; its message ``seq`` counter is kept."""
        ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...
    async def list_conversations(self) -> list[Conversation]:
        """Most recent activity first (ties by id)."""
        ...

    async def mark_read(self, conversation_id: str) -> None:
        """Set ``unread`` to 0; :class:`NotFoundError` for an unknown conversation."""
        ...

    # -- messages ---------------------------------------------------------------------
    async def add_message(self, message: NewMessage) -> AddedMessage:
        """Record a message once; an already-stored ``message_id`` changes nothing.

        A new message gets the conversation's next ``seq`` (1, 2, …), raises its
        ``last_activity`` to ``received_at`` and, if :attr:`NewMessage.unread`, its
        ``unread`` count.
        :class:`NotFoundError` if the conversation does not exist.
        """
        ...

    async def get_message(self, message_id: bytes) -> Message | None: ...
    async def list_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """Messages in time order, ``(received_at, seq)`` ascending (history imported from
        another device sits at its place in time, not after what arrived here first): the
        ``limit`` newest before the message ``before_seq``, or else the ``limit`` oldest
        after the message ``after_seq`` (both bounds may be combined). A bound ``seq`` no
        message has stands for the nearest one that keeps seq order (0: the start)."""
        ...

    async def set_delivery(
        self, message_id: bytes, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        """Update a message's delivery state; ``reason`` only with ``FAILED``."""
        ...

    async def set_device_delivery(self, delivery: DeviceDelivery) -> None:
        """Insert or replace where a message stands on one device (fan-out)."""
        ...

    async def list_device_deliveries(self, message_id: bytes) -> list[DeviceDelivery]:
        """The message's per-device states, by device key."""
        ...

    # -- outbox -----------------------------------------------------------------------
    async def add_outbox(self, item: NewOutboxItem) -> OutboxItem:
        """Queue a frame; it is due at once (``next_attempt_at = created_at``)."""
        ...

    async def due_outbox(self, now: int, *, limit: int = 100) -> list[OutboxItem]:
        """Items with ``next_attempt_at <= now``, earliest first."""
        ...

    async def reschedule_outbox(
        self, item_id: int, *, next_attempt_at: int, error: str | None
    ) -> OutboxItem:
        """Count a failed attempt and set the next one; :class:`NotFoundError` if gone."""
        ...

    async def remove_outbox(self, item_id: int) -> bool: ...

    # -- mailbox (envelopes held for others) ------------------------------------------
    async def put_mailbox(self, item: MailboxItem, *, quota: MailboxQuota) -> bool:
        """Store an envelope, or return ``False`` if its ``item_id`` is already held.

        Quotas count unexpired items at ``item.stored_at``; the check and the insert are
        one atomic step. Raises :class:`QuotaExceededError` (nothing stored) when over.
        """
        ...

    async def fetch_mailbox(
        self, recipient_tag: bytes, *, now: int, limit: int = 100
    ) -> list[MailboxItem]:
        """Unexpired items for a recipient, oldest first. Fetching does not delete."""
        ...

    async def delete_mailbox(self, item_ids: Sequence[bytes]) -> int:
        """Delete by id (unknown ids are ignored); return how many were deleted."""
        ...

    async def expire_mailbox(self, now: int) -> int:
        """Delete items with ``expires_at <= now``; return how many."""
        ...

    # -- DHT record cache -------------------------------------------------------------
    async def put_dht(self, record: DhtRecord) -> bool:
        """Cache a record unless one with a higher ``seq`` is held; return whether stored."""
        ...

    async def get_dht(self, key: bytes, *, now: int) -> DhtRecord | None:
        """The cached record, or ``None`` if absent or expired at ``now``."""
        ...

    async def expire_dht(self, now: int) -> int: ...

    # -- peers ------------------------------------------------------------------------
    async def put_peer(self, peer: Peer) -> None: ...
    async def get_peer(self, peer_id: str) -> Peer | None: ...
    async def list_peers(self, *, source: PeerSource | None = None) -> list[Peer]:
        """Most recently seen first (ties by peer id)."""
        ...

    async def delete_peer(self, peer_id: str) -> bool: ...

    # -- groups and their events ------------------------------------------------------
    async def put_group(self, group: GroupInfo) -> None:
        """Insert or replace the group with this ``group_id``; its events are kept."""
        ...

    async def get_group(self, group_id: bytes) -> GroupInfo | None: ...
    async def list_groups(self, *, status: GroupStatus | None = None) -> list[GroupInfo]:
        """Groups (optionally only those in ``status``), by ``joined_at`` then id."""
        ...

    async def set_group_keyring(self, group_id: bytes, keyring: bytes | None) -> None:
        """Replace (or clear) the sealed keyring; :class:`NotFoundError` if no such group."""
        ...

    async def add_group_events(self, group_id: bytes, events: Sequence[StoredGroupEvent]) -> int:
        """Store the events not yet held (by ``(group_id, event_id)``), in the given order;
        return how many were new. An id repeated within ``events`` counts once (the first
        copy is kept). :class:`NotFoundError` (nothing stored) if no such group."""
        ...

    async def group_events(
        self, group_id: bytes, *, after_rowid: int = 0, limit: int | None = None
    ) -> list[tuple[int, StoredGroupEvent]]:
        """A group's events in insertion order, each with its row id: ids only grow, are
        never reused, and a skipped (already held) event takes none; passing the last one
        back as ``after_rowid`` pages on. ``limit=None`` means all of them."""
        ...

    async def group_event_data(
        self, group_id: bytes, event_ids: Sequence[bytes]
    ) -> dict[bytes, bytes]:
        """The stored bytes of those of ``event_ids`` the group holds, by event id (what
        sync serving and fork proofs read: a node does not keep them in memory)."""
        ...

    async def count_group_events(self, group_id: bytes) -> int: ...
    async def delete_group(self, group_id: bytes) -> bool:
        """Delete the group and all its events; return whether it existed."""
        ...

    async def statistics(self) -> StoreStatistics: ...


#: What :meth:`Store.atomically` runs: an async function of the transaction that awaits
#: nothing but the transaction's methods.
UnitOfWork = Callable[[Transaction], Coroutine[Any, Any, T]]


class Store(Transaction, Protocol):
    """A store: every :class:`Transaction` method, plus transactions and a lifecycle.

    ``async with store:`` closes it at exit; :meth:`aclose` is idempotent; any call after
    it raises :class:`~p2pchat.errors.ClosedError`.
    """

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """All-or-nothing: commit when the block exits normally, roll back if it raises."""
        ...

    async def atomically(self, work: UnitOfWork[T]) -> T:
        """Run ``await work(tx)`` as one transaction, in one step: all or nothing, and
        (for :class:`SqliteStore`) committed and fsynced before it returns.

        ``work`` may await only ``tx``'s methods (and coroutines that await nothing
        else): it runs to completion without suspending, in the store's worker thread
        for SQLite, so a whole unit costs one thread hop where :meth:`transaction` costs
        one per call plus two. It must not touch trio or shared state the event loop
        reads. Awaiting anything else raises :class:`LocalProtocolError` (rolled back);
        so does a call that failed part-way and was caught by ``work``
        (:class:`StorageError`).
        """
        ...

    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc_info: object) -> None: ...
