"""The machinery both stores share: a synchronous backend and the async facade over it.

A store is a synchronous :class:`Backend` (plain method calls on SQLite or on dicts)
behind an async facade that decides *where and how* each call runs: in a worker thread
inside ``BEGIN IMMEDIATE … COMMIT`` for SQLite, against a scratch copy of the tables for
memory. Writing each operation once, synchronously, keeps the two stores' semantics in
one shape and keeps blocking work in one place (:meth:`Facade._call`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import trio

from p2pchat.errors import (
    ClosedError,
    LocalProtocolError,
    NotFoundError,
    QuotaExceededError,
    StorageError,
)

from .records import (
    GROUP_ID_LEN,
    MAX_DHT_KEY_BYTES,
    MAX_ID_BYTES,
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
    check_bytes,
    check_delivery,
    check_int,
    check_key,
    check_optional,
    check_optional_type,
    check_text,
    check_type,
    session_key,
)

if TYPE_CHECKING:
    from .base import UnitOfWork

__all__ = ["Backend", "Facade", "run_unit", "serialized"]

T = TypeVar("T")


@asynccontextmanager
async def serialized(lock: trio.Lock) -> AsyncIterator[None]:
    """Hold the store's lock; refuse (rather than deadlock) if this task already holds it,
    which means a plain store call was made inside the caller's own transaction."""
    if lock.statistics().owner is trio.lowlevel.current_task():
        raise LocalProtocolError(
            "the store was called inside its own transaction: call the transaction instead"
        )
    async with lock:
        yield


class Backend(ABC):
    """The operations of :class:`~p2pchat.storage.base.Transaction`, synchronous.

    Semantics are documented on the protocol. Arguments arrive validated by
    :class:`Facade`. A backend method either completes or raises before changing
    anything; the facade supplies the transaction around it.
    """

    @abstractmethod
    def get_meta(self, key: str) -> bytes | None: ...

    @abstractmethod
    def put_meta(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    def delete_meta(self, key: str) -> bool: ...

    @abstractmethod
    def put_contact(self, contact: Contact) -> None: ...

    @abstractmethod
    def get_contact(self, account: bytes) -> Contact | None: ...

    @abstractmethod
    def list_contacts(self, *, state: ContactState | None = None) -> list[Contact]: ...

    @abstractmethod
    def delete_contact(self, account: bytes) -> bool: ...

    @abstractmethod
    def is_blocked(self, account: bytes) -> bool: ...

    @abstractmethod
    def put_session(self, record: SessionRecord) -> None: ...

    @abstractmethod
    def get_session(
        self, account: bytes, device: bytes, session_id: bytes
    ) -> SessionRecord | None: ...

    @abstractmethod
    def list_sessions(
        self, account: bytes, *, device: bytes | None = None
    ) -> list[SessionRecord]: ...

    @abstractmethod
    def list_session_peers(self) -> list[tuple[bytes, bytes]]: ...

    @abstractmethod
    def delete_session(self, account: bytes, device: bytes, session_id: bytes) -> bool: ...

    @abstractmethod
    def put_conversation(self, conversation: Conversation) -> None: ...

    @abstractmethod
    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    @abstractmethod
    def list_conversations(self) -> list[Conversation]: ...

    @abstractmethod
    def mark_read(self, conversation_id: str) -> None: ...

    @abstractmethod
    def add_message(self, message: NewMessage) -> AddedMessage: ...

    @abstractmethod
    def get_message(self, message_id: bytes) -> Message | None: ...

    @abstractmethod
    def list_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]: ...

    @abstractmethod
    def set_delivery(
        self, message_id: bytes, state: DeliveryState, *, reason: str | None = None
    ) -> None: ...

    @abstractmethod
    def set_device_delivery(self, delivery: DeviceDelivery) -> None: ...

    @abstractmethod
    def list_device_deliveries(self, message_id: bytes) -> list[DeviceDelivery]: ...

    @abstractmethod
    def add_outbox(self, item: NewOutboxItem) -> OutboxItem: ...

    @abstractmethod
    def due_outbox(self, now: int, *, limit: int = 100) -> list[OutboxItem]: ...

    @abstractmethod
    def reschedule_outbox(
        self, item_id: int, *, next_attempt_at: int, error: str | None
    ) -> OutboxItem: ...

    @abstractmethod
    def remove_outbox(self, item_id: int) -> bool: ...

    @abstractmethod
    def put_mailbox(self, item: MailboxItem, *, quota: MailboxQuota) -> bool: ...

    @abstractmethod
    def fetch_mailbox(
        self, recipient_tag: bytes, *, now: int, limit: int = 100
    ) -> list[MailboxItem]: ...

    @abstractmethod
    def delete_mailbox(self, item_ids: Sequence[bytes]) -> int: ...

    @abstractmethod
    def expire_mailbox(self, now: int) -> int: ...

    @abstractmethod
    def put_dht(self, record: DhtRecord) -> bool: ...

    @abstractmethod
    def get_dht(self, key: bytes, *, now: int) -> DhtRecord | None: ...

    @abstractmethod
    def expire_dht(self, now: int) -> int: ...

    @abstractmethod
    def put_peer(self, peer: Peer) -> None: ...

    @abstractmethod
    def get_peer(self, peer_id: str) -> Peer | None: ...

    @abstractmethod
    def list_peers(self, *, source: PeerSource | None = None) -> list[Peer]: ...

    @abstractmethod
    def delete_peer(self, peer_id: str) -> bool: ...

    @abstractmethod
    def put_group(self, group: GroupInfo) -> None: ...

    @abstractmethod
    def get_group(self, group_id: bytes) -> GroupInfo | None: ...

    @abstractmethod
    def list_groups(self, *, status: GroupStatus | None = None) -> list[GroupInfo]: ...

    @abstractmethod
    def set_group_keyring(self, group_id: bytes, keyring: bytes | None) -> None: ...

    @abstractmethod
    def add_group_events(self, group_id: bytes, events: Sequence[StoredGroupEvent]) -> int: ...

    @abstractmethod
    def group_events(
        self, group_id: bytes, *, after_rowid: int = 0, limit: int | None = None
    ) -> list[tuple[int, StoredGroupEvent]]: ...

    @abstractmethod
    def group_event_data(
        self, group_id: bytes, event_ids: Sequence[bytes]
    ) -> dict[bytes, bytes]: ...

    @abstractmethod
    def count_group_events(self, group_id: bytes) -> int: ...

    @abstractmethod
    def delete_group(self, group_id: bytes) -> bool: ...

    @abstractmethod
    def statistics(self) -> StoreStatistics: ...


class Facade(ABC):
    """Implements every async method of the protocol by handing a closure to :meth:`_call`.

    Arguments are validated here, once, before any backend sees them: both stores refuse
    exactly the same inputs with the same ``TypeError``/``ValueError``, and a refused
    call never reaches the lock, the worker thread or the tables.
    """

    __slots__ = ()

    @abstractmethod
    async def _call(self, op: Callable[[Backend], T]) -> T:
        """Run ``op`` against the backend, atomically, wherever it may block."""

    async def get_meta(self, key: str) -> bytes | None:
        check_text("key", key)
        return await self._call(lambda b: b.get_meta(key))

    async def put_meta(self, key: str, value: bytes) -> None:
        check_text("key", key)
        check_bytes("value", value)
        return await self._call(lambda b: b.put_meta(key, value))

    async def delete_meta(self, key: str) -> bool:
        check_text("key", key)
        return await self._call(lambda b: b.delete_meta(key))

    async def put_contact(self, contact: Contact) -> None:
        check_type("contact", contact, Contact)
        return await self._call(lambda b: b.put_contact(contact))

    async def get_contact(self, account: bytes) -> Contact | None:
        check_key("account", account)
        return await self._call(lambda b: b.get_contact(account))

    async def list_contacts(self, *, state: ContactState | None = None) -> list[Contact]:
        check_optional_type("state", state, ContactState)
        return await self._call(lambda b: b.list_contacts(state=state))

    async def delete_contact(self, account: bytes) -> bool:
        check_key("account", account)
        return await self._call(lambda b: b.delete_contact(account))

    async def is_blocked(self, account: bytes) -> bool:
        check_key("account", account)
        return await self._call(lambda b: b.is_blocked(account))

    async def put_session(self, record: SessionRecord) -> None:
        check_type("record", record, SessionRecord)
        return await self._call(lambda b: b.put_session(record))

    async def get_session(
        self, account: bytes, device: bytes, session_id: bytes
    ) -> SessionRecord | None:
        session_key(account, device, session_id)
        return await self._call(lambda b: b.get_session(account, device, session_id))

    async def list_sessions(
        self, account: bytes, *, device: bytes | None = None
    ) -> list[SessionRecord]:
        check_key("account", account)
        check_optional("device", device, "key")
        return await self._call(lambda b: b.list_sessions(account, device=device))

    async def list_session_peers(self) -> list[tuple[bytes, bytes]]:
        return await self._call(lambda b: b.list_session_peers())

    async def delete_session(self, account: bytes, device: bytes, session_id: bytes) -> bool:
        session_key(account, device, session_id)
        return await self._call(lambda b: b.delete_session(account, device, session_id))

    async def put_conversation(self, conversation: Conversation) -> None:
        check_type("conversation", conversation, Conversation)
        return await self._call(lambda b: b.put_conversation(conversation))

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        check_text("conversation_id", conversation_id)
        return await self._call(lambda b: b.get_conversation(conversation_id))

    async def list_conversations(self) -> list[Conversation]:
        return await self._call(lambda b: b.list_conversations())

    async def mark_read(self, conversation_id: str) -> None:
        check_text("conversation_id", conversation_id)
        return await self._call(lambda b: b.mark_read(conversation_id))

    async def add_message(self, message: NewMessage) -> AddedMessage:
        check_type("message", message, NewMessage)
        return await self._call(lambda b: b.add_message(message))

    async def get_message(self, message_id: bytes) -> Message | None:
        check_bytes("message_id", message_id, max_len=MAX_ID_BYTES)
        return await self._call(lambda b: b.get_message(message_id))

    async def list_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        check_text("conversation_id", conversation_id)
        check_int("limit", limit, minimum=1)
        check_optional("after_seq", after_seq, "int")
        check_optional("before_seq", before_seq, "int")
        return await self._call(
            lambda b: b.list_messages(
                conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
            )
        )

    async def set_delivery(
        self, message_id: bytes, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        check_bytes("message_id", message_id, max_len=MAX_ID_BYTES)
        check_delivery(state, reason)
        return await self._call(lambda b: b.set_delivery(message_id, state, reason=reason))

    async def set_device_delivery(self, delivery: DeviceDelivery) -> None:
        check_type("delivery", delivery, DeviceDelivery)
        return await self._call(lambda b: b.set_device_delivery(delivery))

    async def list_device_deliveries(self, message_id: bytes) -> list[DeviceDelivery]:
        check_bytes("message_id", message_id, max_len=MAX_ID_BYTES)
        return await self._call(lambda b: b.list_device_deliveries(message_id))

    async def add_outbox(self, item: NewOutboxItem) -> OutboxItem:
        check_type("item", item, NewOutboxItem)
        return await self._call(lambda b: b.add_outbox(item))

    async def due_outbox(self, now: int, *, limit: int = 100) -> list[OutboxItem]:
        check_int("now", now)
        check_int("limit", limit, minimum=1)
        return await self._call(lambda b: b.due_outbox(now, limit=limit))

    async def reschedule_outbox(
        self, item_id: int, *, next_attempt_at: int, error: str | None
    ) -> OutboxItem:
        check_int("item_id", item_id)
        check_int("next_attempt_at", next_attempt_at)
        check_optional("error", error, "text")
        return await self._call(
            lambda b: b.reschedule_outbox(item_id, next_attempt_at=next_attempt_at, error=error)
        )

    async def remove_outbox(self, item_id: int) -> bool:
        check_int("item_id", item_id)
        return await self._call(lambda b: b.remove_outbox(item_id))

    async def put_mailbox(self, item: MailboxItem, *, quota: MailboxQuota) -> bool:
        check_type("item", item, MailboxItem)
        check_type("quota", quota, MailboxQuota)
        return await self._call(lambda b: b.put_mailbox(item, quota=quota))

    async def fetch_mailbox(
        self, recipient_tag: bytes, *, now: int, limit: int = 100
    ) -> list[MailboxItem]:
        check_bytes("recipient_tag", recipient_tag, max_len=MAX_ID_BYTES)
        check_int("now", now)
        check_int("limit", limit, minimum=1)
        return await self._call(lambda b: b.fetch_mailbox(recipient_tag, now=now, limit=limit))

    async def delete_mailbox(self, item_ids: Sequence[bytes]) -> int:
        ids = list(item_ids)
        for item_id in ids:
            check_bytes("item_id", item_id, max_len=MAX_ID_BYTES)
        return await self._call(lambda b: b.delete_mailbox(ids))

    async def expire_mailbox(self, now: int) -> int:
        check_int("now", now)
        return await self._call(lambda b: b.expire_mailbox(now))

    async def put_dht(self, record: DhtRecord) -> bool:
        check_type("record", record, DhtRecord)
        return await self._call(lambda b: b.put_dht(record))

    async def get_dht(self, key: bytes, *, now: int) -> DhtRecord | None:
        check_bytes("key", key, max_len=MAX_DHT_KEY_BYTES)
        check_int("now", now)
        return await self._call(lambda b: b.get_dht(key, now=now))

    async def expire_dht(self, now: int) -> int:
        check_int("now", now)
        return await self._call(lambda b: b.expire_dht(now))

    async def put_peer(self, peer: Peer) -> None:
        check_type("peer", peer, Peer)
        return await self._call(lambda b: b.put_peer(peer))

    async def get_peer(self, peer_id: str) -> Peer | None:
        check_text("peer_id", peer_id)
        return await self._call(lambda b: b.get_peer(peer_id))

    async def list_peers(self, *, source: PeerSource | None = None) -> list[Peer]:
        check_optional_type("source", source, PeerSource)
        return await self._call(lambda b: b.list_peers(source=source))

    async def delete_peer(self, peer_id: str) -> bool:
        check_text("peer_id", peer_id)
        return await self._call(lambda b: b.delete_peer(peer_id))

    async def put_group(self, group: GroupInfo) -> None:
        check_type("group", group, GroupInfo)
        return await self._call(lambda b: b.put_group(group))

    async def get_group(self, group_id: bytes) -> GroupInfo | None:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        return await self._call(lambda b: b.get_group(group_id))

    async def list_groups(self, *, status: GroupStatus | None = None) -> list[GroupInfo]:
        check_optional_type("status", status, GroupStatus)
        return await self._call(lambda b: b.list_groups(status=status))

    async def set_group_keyring(self, group_id: bytes, keyring: bytes | None) -> None:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        if keyring is not None:
            check_bytes("keyring", keyring)
        return await self._call(lambda b: b.set_group_keyring(group_id, keyring))

    async def add_group_events(self, group_id: bytes, events: Sequence[StoredGroupEvent]) -> int:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        batch = list(events)  # a snapshot: the caller may mutate its list meanwhile
        for event in batch:
            check_type("event", event, StoredGroupEvent)
        return await self._call(lambda b: b.add_group_events(group_id, batch))

    async def group_events(
        self, group_id: bytes, *, after_rowid: int = 0, limit: int | None = None
    ) -> list[tuple[int, StoredGroupEvent]]:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        check_int("after_rowid", after_rowid)
        if limit is not None:
            check_int("limit", limit, minimum=1)
        return await self._call(
            lambda b: b.group_events(group_id, after_rowid=after_rowid, limit=limit)
        )

    async def group_event_data(
        self, group_id: bytes, event_ids: Sequence[bytes]
    ) -> dict[bytes, bytes]:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        ids = list(event_ids)
        for event_id in ids:
            check_bytes("event_id", event_id, max_len=64)
        return await self._call(lambda b: b.group_event_data(group_id, ids))

    async def count_group_events(self, group_id: bytes) -> int:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        return await self._call(lambda b: b.count_group_events(group_id))

    async def delete_group(self, group_id: bytes) -> bool:
        check_bytes("group_id", group_id, exact=GROUP_ID_LEN)
        return await self._call(lambda b: b.delete_group(group_id))

    async def statistics(self) -> StoreStatistics:
        return await self._call(lambda b: b.statistics())


class _Direct(Facade):
    """The ``tx`` of a unit of work: each call runs at once, on the calling thread.

    Its coroutines never suspend, so :func:`run_unit` drives the whole unit in one go.
    A call that failed part-way (an SQLite error, say) may have left half its writes:
    the unit then cannot commit, even if the work caught the error and carried on.
    Refusals the backend makes before changing anything (not found, over quota, a bad
    argument) are only raised.
    """

    __slots__ = ("_backend", "failed")

    def __init__(self, backend: Backend) -> None:
        self._backend: Backend | None = backend
        self.failed: BaseException | None = None

    def finish(self) -> None:
        self._backend = None

    async def _call(self, op: Callable[[Backend], T]) -> T:
        backend = self._backend
        if backend is None:
            raise ClosedError("the unit of work has ended")
        try:
            return op(backend)
        except (NotFoundError, QuotaExceededError, ValueError, TypeError):
            raise
        except BaseException as exc:
            self.failed = exc
            raise


def run_unit(backend: Backend, work: UnitOfWork[T]) -> T:
    """Run ``work`` against ``backend`` to completion, synchronously (the caller supplies
    the transaction around it and commits only if this returns).

    Raises :class:`LocalProtocolError` if the work awaited anything but its transaction
    (it would have suspended), :class:`StorageError` if one of its calls failed part-way.
    """
    tx = _Direct(backend)
    coro = work(tx)
    try:
        try:
            coro.send(None)
        except StopIteration as done:
            result: T = done.value
        else:
            coro.close()
            raise LocalProtocolError(
                "a unit of work may await only its transaction (it tried to suspend)"
            )
    finally:
        tx.finish()
    if tx.failed is not None:
        raise StorageError(f"store operation failed: {tx.failed}") from tx.failed
    return result
