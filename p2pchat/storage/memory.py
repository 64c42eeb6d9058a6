"""``MemoryStore``: the store in dicts, for tests and the simulator.

It passes the same contract suite as :class:`~p2pchat.storage.sqlite.SqliteStore`, with
the same orderings, the same refusals and the same transaction semantics: a transaction
works on a shallow copy of the tables (records are immutable, so copying the dicts is
enough) and swaps it in at commit; a failure simply drops the copy. A trio lock
serialises callers exactly as the SQLite store does, so a test that passes here does not
rely on interleavings the real store forbids. Nothing touches the disk and nothing
blocks, so no worker thread is involved.

Costs are those of plain dicts: listing scans a table (O(n)), and a transaction copies
every table once (O(rows)), except group events: a group's events are copied only when a
transaction first writes to that group. Fine for tests and simulations of thousands of
messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Self, TypeVar

import trio

from p2pchat.errors import ClosedError, NotFoundError

from ._facade import Backend, Facade, run_unit, serialized
from .base import Transaction, UnitOfWork
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

__all__ = ["MemoryStore"]

T = TypeVar("T")


@dataclass(slots=True)
class _Tables:
    meta: dict[str, bytes] = field(default_factory=dict)
    contacts: dict[bytes, Contact] = field(default_factory=dict)
    sessions: dict[tuple[bytes, bytes, bytes], SessionRecord] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    messages: dict[bytes, Message] = field(default_factory=dict)
    deliveries: dict[tuple[bytes, bytes], DeviceDelivery] = field(default_factory=dict)
    outbox: dict[int, OutboxItem] = field(default_factory=dict)
    outbox_last_id: int = 0
    mailbox: dict[bytes, MailboxItem] = field(default_factory=dict)
    dht: dict[bytes, DhtRecord] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    groups: dict[bytes, GroupInfo] = field(default_factory=dict)
    # group id -> event id -> (row id, event), in insertion (= row id) order.
    group_events: dict[bytes, dict[bytes, tuple[int, StoredGroupEvent]]] = field(
        default_factory=dict
    )
    group_event_last_id: int = 0
    # Groups whose event dict these tables may mutate: a copy shares every event dict with
    # its origin (a group's history may be long) and copies one when it first writes to it.
    owned_events: set[bytes] = field(default_factory=set)

    def copy(self) -> _Tables:
        return _Tables(
            meta=self.meta.copy(),
            contacts=self.contacts.copy(),
            sessions=self.sessions.copy(),
            conversations=self.conversations.copy(),
            last_seq=self.last_seq.copy(),
            messages=self.messages.copy(),
            deliveries=self.deliveries.copy(),
            outbox=self.outbox.copy(),
            outbox_last_id=self.outbox_last_id,
            mailbox=self.mailbox.copy(),
            dht=self.dht.copy(),
            peers=self.peers.copy(),
            groups=self.groups.copy(),
            group_events=self.group_events.copy(),
            group_event_last_id=self.group_event_last_id,
        )

    def writable_events(self, group_id: bytes) -> dict[bytes, tuple[int, StoredGroupEvent]]:
        """The group's event dict, copied first if it may still be shared with the origin."""
        events = self.group_events.get(group_id, {})
        if group_id not in self.owned_events:
            events = dict(events)
            self.group_events[group_id] = events
            self.owned_events.add(group_id)
        return events


class _MemoryBackend(Backend):
    """The operations on one set of tables. Each checks everything before it mutates."""

    def __init__(self, tables: _Tables) -> None:
        self._t = tables

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        return self._t.meta.get(key)

    def put_meta(self, key: str, value: bytes) -> None:
        self._t.meta[key] = value

    def delete_meta(self, key: str) -> bool:
        return self._t.meta.pop(key, None) is not None

    # -- contacts ---------------------------------------------------------------------

    def put_contact(self, contact: Contact) -> None:
        self._t.contacts[contact.account] = contact

    def get_contact(self, account: bytes) -> Contact | None:
        return self._t.contacts.get(account)

    def list_contacts(self, *, state: ContactState | None = None) -> list[Contact]:
        found = (c for c in self._t.contacts.values() if state is None or c.state is state)
        return sorted(found, key=lambda c: c.account)

    def delete_contact(self, account: bytes) -> bool:
        return self._t.contacts.pop(account, None) is not None

    def is_blocked(self, account: bytes) -> bool:
        contact = self._t.contacts.get(account)
        return contact is not None and contact.state is ContactState.BLOCKED

    # -- sessions ---------------------------------------------------------------------

    def put_session(self, record: SessionRecord) -> None:
        self._t.sessions[(record.account, record.device, record.session_id)] = record

    def get_session(self, account: bytes, device: bytes, session_id: bytes) -> SessionRecord | None:
        return self._t.sessions.get((account, device, session_id))

    def list_sessions(self, account: bytes, *, device: bytes | None = None) -> list[SessionRecord]:
        found = [
            s
            for s in self._t.sessions.values()
            if s.account == account and (device is None or s.device == device)
        ]
        found.sort(key=lambda s: (s.device, s.session_id))
        found.sort(key=lambda s: s.updated_at, reverse=True)
        return found

    def list_session_peers(self) -> list[tuple[bytes, bytes]]:
        return sorted({(s.account, s.device) for s in self._t.sessions.values()})

    def delete_session(self, account: bytes, device: bytes, session_id: bytes) -> bool:
        return self._t.sessions.pop((account, device, session_id), None) is not None

    # -- conversations ----------------------------------------------------------------

    def put_conversation(self, conversation: Conversation) -> None:
        self._t.conversations[conversation.conversation_id] = conversation
        self._t.last_seq.setdefault(conversation.conversation_id, 0)

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._t.conversations.get(conversation_id)

    def list_conversations(self) -> list[Conversation]:
        found = sorted(self._t.conversations.values(), key=lambda c: c.conversation_id)
        found.sort(key=lambda c: c.last_activity, reverse=True)
        return found

    def mark_read(self, conversation_id: str) -> None:
        conversation = self._t.conversations.get(conversation_id)
        if conversation is None:
            raise NotFoundError("no such conversation")
        self._t.conversations[conversation_id] = replace(conversation, unread=0)

    # -- messages ---------------------------------------------------------------------

    def add_message(self, message: NewMessage) -> AddedMessage:
        existing = self._t.messages.get(message.message_id)
        if existing is not None:
            return AddedMessage(message=existing, duplicate=True)
        conversation = self._t.conversations.get(message.conversation_id)
        if conversation is None:
            raise NotFoundError("no such conversation")
        stored = Message.from_new(message, seq=self._t.last_seq[message.conversation_id] + 1)
        self._t.conversations[message.conversation_id] = replace(
            conversation,
            last_activity=max(conversation.last_activity, message.received_at),
            unread=conversation.unread + message.unread,
        )
        self._t.last_seq[message.conversation_id] = stored.seq
        self._t.messages[message.message_id] = stored
        return AddedMessage(message=stored, duplicate=False)

    def get_message(self, message_id: bytes) -> Message | None:
        return self._t.messages.get(message_id)

    def list_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        mine = sorted(
            (m for m in self._t.messages.values() if m.conversation_id == conversation_id),
            key=_time_order,
        )
        by_seq = sorted(mine, key=lambda m: m.seq)
        # A bound names a message by seq (or, missing, the nearest one keeping seq order).
        low, high = (-(2**63), -1), (2**63 - 1, 2**63 - 1)
        if after_seq is not None:
            low = next((_time_order(m) for m in reversed(by_seq) if m.seq <= after_seq), low)
        if before_seq is not None:
            high = next((_time_order(m) for m in by_seq if m.seq >= before_seq), high)
        found = [m for m in mine if low < _time_order(m) < high]
        if before_seq is not None and after_seq is None:
            return found[-limit:]
        return found[:limit]

    def set_delivery(
        self, message_id: bytes, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        message = self._t.messages.get(message_id)
        if message is None:
            raise NotFoundError("no such message")
        self._t.messages[message_id] = replace(message, state=state, failure_reason=reason)

    def set_device_delivery(self, delivery: DeviceDelivery) -> None:
        self._t.deliveries[(delivery.message_id, delivery.device)] = delivery

    def list_device_deliveries(self, message_id: bytes) -> list[DeviceDelivery]:
        return sorted(
            (d for (m, _), d in self._t.deliveries.items() if m == message_id),
            key=lambda d: d.device,
        )

    # -- outbox -----------------------------------------------------------------------

    def add_outbox(self, item: NewOutboxItem) -> OutboxItem:
        item_id = self._t.outbox_last_id + 1
        self._t.outbox_last_id = item_id
        stored = OutboxItem.from_new(item, item_id=item_id)
        self._t.outbox[item_id] = stored
        return stored

    def due_outbox(self, now: int, *, limit: int = 100) -> list[OutboxItem]:
        due = [item for item in self._t.outbox.values() if item.next_attempt_at <= now]
        due.sort(key=lambda item: (item.next_attempt_at, item.item_id))
        return due[:limit]

    def reschedule_outbox(
        self, item_id: int, *, next_attempt_at: int, error: str | None
    ) -> OutboxItem:
        item = self._t.outbox.get(item_id)
        if item is None:
            raise NotFoundError("no such outbox item")
        item = replace(
            item, attempts=item.attempts + 1, next_attempt_at=next_attempt_at, last_error=error
        )
        self._t.outbox[item_id] = item
        return item

    def remove_outbox(self, item_id: int) -> bool:
        return self._t.outbox.pop(item_id, None) is not None

    # -- mailbox ----------------------------------------------------------------------

    def put_mailbox(self, item: MailboxItem, *, quota: MailboxQuota) -> bool:
        if item.item_id in self._t.mailbox:
            return False
        live = [m for m in self._t.mailbox.values() if m.expires_at > item.stored_at]
        mine = [m for m in live if m.sender_tag == item.sender_tag]
        quota.check(
            item.size,
            sender_usage=(len(mine), sum(m.size for m in mine)),
            total_usage=(len(live), sum(m.size for m in live)),
        )
        self._t.mailbox[item.item_id] = item
        return True

    def fetch_mailbox(
        self, recipient_tag: bytes, *, now: int, limit: int = 100
    ) -> list[MailboxItem]:
        found = [
            m
            for m in self._t.mailbox.values()
            if m.recipient_tag == recipient_tag and m.expires_at > now
        ]
        found.sort(key=lambda m: (m.stored_at, m.item_id))
        return found[:limit]

    def delete_mailbox(self, item_ids: Sequence[bytes]) -> int:
        return sum(self._t.mailbox.pop(i, None) is not None for i in set(item_ids))

    def expire_mailbox(self, now: int) -> int:
        return _expire(self._t.mailbox, lambda m: m.expires_at <= now)

    # -- DHT cache --------------------------------------------------------------------

    def put_dht(self, record: DhtRecord) -> bool:
        held = self._t.dht.get(record.key)
        if held is not None and held.seq > record.seq:
            return False
        self._t.dht[record.key] = record
        return True

    def get_dht(self, key: bytes, *, now: int) -> DhtRecord | None:
        record = self._t.dht.get(key)
        return record if record is not None and record.expires_at > now else None

    def expire_dht(self, now: int) -> int:
        return _expire(self._t.dht, lambda r: r.expires_at <= now)

    # -- peers ------------------------------------------------------------------------

    def put_peer(self, peer: Peer) -> None:
        self._t.peers[peer.peer_id] = peer

    def get_peer(self, peer_id: str) -> Peer | None:
        return self._t.peers.get(peer_id)

    def list_peers(self, *, source: PeerSource | None = None) -> list[Peer]:
        found = sorted(
            (p for p in self._t.peers.values() if source is None or p.source is source),
            key=lambda p: p.peer_id,
        )
        found.sort(key=lambda p: p.last_seen, reverse=True)
        return found

    def delete_peer(self, peer_id: str) -> bool:
        return self._t.peers.pop(peer_id, None) is not None

    # -- groups and their events ------------------------------------------------------

    def put_group(self, group: GroupInfo) -> None:
        self._t.groups[group.group_id] = group

    def get_group(self, group_id: bytes) -> GroupInfo | None:
        return self._t.groups.get(group_id)

    def list_groups(self, *, status: GroupStatus | None = None) -> list[GroupInfo]:
        found = (g for g in self._t.groups.values() if status is None or g.status is status)
        return sorted(found, key=lambda g: (g.joined_at, g.group_id))

    def set_group_keyring(self, group_id: bytes, keyring: bytes | None) -> None:
        group = self._t.groups.get(group_id)
        if group is None:
            raise NotFoundError("no such group")
        self._t.groups[group_id] = replace(group, keyring=keyring)

    def add_group_events(self, group_id: bytes, events: Sequence[StoredGroupEvent]) -> int:
        if group_id not in self._t.groups:
            raise NotFoundError("no such group")
        held = self._t.writable_events(group_id)
        added = 0
        for event in events:
            if event.event_id not in held:
                self._t.group_event_last_id += 1
                held[event.event_id] = (self._t.group_event_last_id, event)
                added += 1
        return added

    def group_events(
        self, group_id: bytes, *, after_rowid: int = 0, limit: int | None = None
    ) -> list[tuple[int, StoredGroupEvent]]:
        held = self._t.group_events.get(group_id, {})
        found = [row for row in held.values() if row[0] > after_rowid]
        return found if limit is None else found[:limit]

    def group_event_data(self, group_id: bytes, event_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        held = self._t.group_events.get(group_id, {})
        return {i: held[i][1].data for i in event_ids if i in held}

    def count_group_events(self, group_id: bytes) -> int:
        return len(self._t.group_events.get(group_id, {}))

    def delete_group(self, group_id: bytes) -> bool:
        self._t.group_events.pop(group_id, None)
        self._t.owned_events.discard(group_id)
        return self._t.groups.pop(group_id, None) is not None

    def statistics(self) -> StoreStatistics:
        t = self._t
        return StoreStatistics(
            contacts=len(t.contacts),
            blocked=sum(c.state is ContactState.BLOCKED for c in t.contacts.values()),
            sessions=len(t.sessions),
            conversations=len(t.conversations),
            messages=len(t.messages),
            outbox=len(t.outbox),
            mailbox_items=len(t.mailbox),
            mailbox_bytes=sum(m.size for m in t.mailbox.values()),
            dht_records=len(t.dht),
            peers=len(t.peers),
            groups=len(t.groups),
            group_events=sum(len(events) for events in t.group_events.values()),
        )


def _time_order(message: Message) -> tuple[int, int]:
    """How a conversation is listed: by receipt time, then by arrival (seq)."""
    return (message.received_at, message.seq)


def _expire(table: dict[bytes, Any], expired: Callable[[Any], bool]) -> int:
    doomed = [key for key, row in table.items() if expired(row)]
    for key in doomed:
        del table[key]
    return len(doomed)


class MemoryStore(Facade):
    """An in-memory store: ``async with MemoryStore() as store``. Contents die with it."""

    def __init__(self) -> None:
        self._tables: _Tables | None = _Tables()
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore {'closed' if self._tables is None else 'open'}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drop the tables once in-flight calls finish. Idempotent."""
        if self._tables is None:
            return
        async with serialized(self._lock):
            self._tables = None

    def _check_open(self) -> _Tables:
        if self._tables is None:
            raise ClosedError("the store is closed")
        return self._tables

    async def _call(self, op: Callable[[Backend], T]) -> T:
        self._check_open()
        async with serialized(self._lock):
            # A checkpoint, as the SQLite store's thread hop is: callers see the same
            # scheduling points whichever store they run against.
            await trio.lowlevel.checkpoint()
            return op(_MemoryBackend(self._check_open()))

    async def atomically(self, work: UnitOfWork[T]) -> T:
        """All-or-nothing, in one step: the unit works on a copy of the tables that
        replaces them once it returned."""
        self._check_open()
        async with serialized(self._lock):
            await trio.lowlevel.checkpoint()  # as the SQLite store's thread hop
            scratch = self._check_open().copy()
            result = run_unit(_MemoryBackend(scratch), work)
            self._check_open()
            self._tables = scratch
            return result

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """All-or-nothing: the calls work on a copy that replaces the tables at commit."""
        self._check_open()
        async with serialized(self._lock):
            scratch = self._check_open().copy()
            tx = _MemoryTransaction(scratch)
            try:
                yield tx
            finally:
                tx.finish()
            self._check_open()
            self._tables = scratch


class _MemoryTransaction(Facade):
    def __init__(self, tables: _Tables) -> None:
        self._tables: _Tables | None = tables

    def finish(self) -> None:
        self._tables = None

    async def _call(self, op: Callable[[Backend], T]) -> T:
        if self._tables is None:
            raise ClosedError("the transaction has ended")
        await trio.lowlevel.checkpoint()
        if self._tables is None:
            raise ClosedError("the transaction has ended")
        return op(_MemoryBackend(self._tables))
