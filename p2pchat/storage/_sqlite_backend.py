"""The synchronous SQLite operations behind :class:`~p2pchat.storage.sqlite.SqliteStore`.

Each method is one short series of statements on a connection the caller has already put
inside a transaction; nothing here commits. Rows are mapped to records and back in one
place per table.
"""

# Only the module's own column-list constants are ever interpolated into SQL; every value
# is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from p2pchat.errors import NotFoundError
from p2pchat_crypto import cbor

from ._at_rest import AtRest
from ._facade import Backend
from ._sqlite_groups import SqliteGroups
from ._sqlite_network import SqliteNetwork
from .records import (
    AddedMessage,
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    DeliveryState,
    DeviceDelivery,
    Direction,
    Message,
    NewMessage,
    NewOutboxItem,
    OutboxItem,
    SessionRecord,
    StoreStatistics,
)

__all__ = ["SqliteBackend"]

_MESSAGE_COLUMNS = (
    "conversation_id, message_id, sender_account, sender_device, direction, content_type, "
    "body, sent_at, received_at, state, seq, failure_reason"
)
#: Bounds of the time order ``(received_at, seq)`` outside every message.
_FIRST = (-(2**63), -1)
_LAST = (2**63 - 1, 2**63 - 1)
_OUTBOX_COLUMNS = (
    "item_id, destination_account, destination_device, conversation_id, message_id, "
    "payload, created_at, attempts, next_attempt_at, last_error"
)
_CONTACT_COLUMNS = (
    "account, display_name, state, verified, identity, devices, created_at, updated_at, private,"
    " claimed_name"
)
_SESSION_COLUMNS = "account, device, session_id, pickle, updated_at"


def _contact(row: Any, rest: AtRest) -> Contact:
    name, claimed = row[1], row[9]
    if row[8] is not None:
        fields = rest.open_fields("contacts.private", row[8])
        name, claimed = fields["display_name"], fields.get("claimed_name")
        claimed = claimed if isinstance(claimed, str) else None
    return Contact(
        account=row[0],
        display_name=name,  # checked by Contact
        claimed_name=claimed,
        state=ContactState(row[2]),
        verified=bool(row[3]),
        identity=row[4],
        devices=row[5],
        created_at=row[6],
        updated_at=row[7],
    )


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        account=row[0], device=row[1], session_id=row[2], pickle=row[3], updated_at=row[4]
    )


def _conversation(row: Any) -> Conversation:
    return Conversation(
        conversation_id=row[0],
        kind=ConversationKind(row[1]),
        peer_account=row[2],
        last_activity=row[3],
        unread=row[4],
    )


def _message(row: Any, rest: AtRest) -> Message:
    return Message(
        conversation_id=row[0],
        message_id=row[1],
        sender_account=row[2],
        sender_device=row[3],
        direction=Direction(row[4]),
        content_type=row[5],
        body=rest.open("messages.body", row[6]),
        sent_at=row[7],
        received_at=row[8],
        state=DeliveryState(row[9]),
        seq=row[10],
        failure_reason=row[11],
    )


def _outbox(row: Any) -> OutboxItem:
    return OutboxItem(
        item_id=row[0],
        destination_account=row[1],
        destination_device=row[2],
        conversation_id=row[3],
        message_id=row[4],
        payload=row[5],
        created_at=row[6],
        attempts=row[7],
        next_attempt_at=row[8],
        last_error=row[9],
    )


class SqliteBackend(SqliteGroups, SqliteNetwork, Backend):
    """Operations on one connection. Not thread-safe by itself: the store serialises.

    The group operations come from :class:`SqliteGroups`.
    """

    def __init__(self, conn: sqlite3.Connection, rest: AtRest | None = None) -> None:
        self._conn = conn
        self._rest = AtRest(None) if rest is None else rest

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()

    def _changes(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def put_meta(self, key: str, value: bytes) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> bool:
        return self._changes("DELETE FROM meta WHERE key = ?", (key,)) > 0

    # -- contacts ---------------------------------------------------------------------

    def put_contact(self, contact: Contact) -> None:
        name, claimed, private = contact.display_name, contact.claimed_name, None
        if self._rest.sealing:
            fields: dict[str, cbor.Value] = {"display_name": name}
            if claimed is not None:
                fields["claimed_name"] = claimed
            private = self._rest.seal_fields("contacts.private", fields)
            name, claimed = "", None
        self._conn.execute(
            "INSERT OR REPLACE INTO contacts (account, display_name, state, verified, identity,"
            " devices, created_at, updated_at, private, claimed_name)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                contact.account,
                name,
                contact.state.value,
                int(contact.verified),
                contact.identity,
                contact.devices,
                contact.created_at,
                contact.updated_at,
                private,
                claimed,
            ),
        )

    def get_contact(self, account: bytes) -> Contact | None:
        row = self._one(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE account = ?", (account,))
        return None if row is None else _contact(row, self._rest)

    def list_contacts(self, *, state: ContactState | None = None) -> list[Contact]:
        if state is None:
            rows = self._all(f"SELECT {_CONTACT_COLUMNS} FROM contacts ORDER BY account")
        else:
            rows = self._all(
                f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE state = ? ORDER BY account",
                (state.value,),
            )
        return [_contact(row, self._rest) for row in rows]

    def delete_contact(self, account: bytes) -> bool:
        return self._changes("DELETE FROM contacts WHERE account = ?", (account,)) > 0

    def is_blocked(self, account: bytes) -> bool:
        row = self._one(
            "SELECT 1 FROM contacts WHERE account = ? AND state = 'blocked'", (account,)
        )
        return row is not None

    # -- sessions ---------------------------------------------------------------------

    def put_session(self, record: SessionRecord) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO sessions (account, device, session_id, pickle, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.account, record.device, record.session_id, record.pickle, record.updated_at),
        )

    def get_session(self, account: bytes, device: bytes, session_id: bytes) -> SessionRecord | None:
        key = (account, device, session_id)
        row = self._one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions"
            " WHERE account = ? AND device = ? AND session_id = ?",
            key,
        )
        return None if row is None else _session(row)

    def list_sessions(self, account: bytes, *, device: bytes | None = None) -> list[SessionRecord]:
        if device is None:
            rows = self._all(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE account = ? "
                "ORDER BY updated_at DESC, device, session_id",
                (account,),
            )
        else:
            rows = self._all(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE account = ? AND device = ? "
                "ORDER BY updated_at DESC, device, session_id",
                (account, device),
            )
        return [_session(row) for row in rows]

    def list_session_peers(self) -> list[tuple[bytes, bytes]]:
        rows = self._all(
            "SELECT DISTINCT account, device FROM sessions ORDER BY account, device", ()
        )
        return [(bytes(row[0]), bytes(row[1])) for row in rows]

    def delete_session(self, account: bytes, device: bytes, session_id: bytes) -> bool:
        key = (account, device, session_id)
        sql = "DELETE FROM sessions WHERE account = ? AND device = ? AND session_id = ?"
        return self._changes(sql, key) > 0

    # -- conversations ----------------------------------------------------------------

    def put_conversation(self, conversation: Conversation) -> None:
        c = conversation
        self._conn.execute(
            "INSERT INTO conversations (conversation_id, kind, peer_account, last_activity,"
            " unread) VALUES (?, ?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET"
            " kind = excluded.kind, peer_account = excluded.peer_account,"
            " last_activity = excluded.last_activity, unread = excluded.unread",
            (c.conversation_id, c.kind.value, c.peer_account, c.last_activity, c.unread),
        )

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        row = self._one(
            "SELECT conversation_id, kind, peer_account, last_activity, unread"
            " FROM conversations WHERE conversation_id = ?",
            (conversation_id,),
        )
        return None if row is None else _conversation(row)

    def list_conversations(self) -> list[Conversation]:
        rows = self._all(
            "SELECT conversation_id, kind, peer_account, last_activity, unread"
            " FROM conversations ORDER BY last_activity DESC, conversation_id"
        )
        return [_conversation(row) for row in rows]

    def mark_read(self, conversation_id: str) -> None:
        sql = "UPDATE conversations SET unread = 0 WHERE conversation_id = ?"
        if not self._changes(sql, (conversation_id,)):
            raise NotFoundError("no such conversation")

    # -- messages ---------------------------------------------------------------------

    def add_message(self, message: NewMessage) -> AddedMessage:
        existing = self.get_message(message.message_id)
        if existing is not None:
            return AddedMessage(message=existing, duplicate=True)
        row = self._one(
            "SELECT last_seq FROM conversations WHERE conversation_id = ?",
            (message.conversation_id,),
        )
        if row is None:
            raise NotFoundError("no such conversation")
        stored = Message.from_new(message, seq=row[0] + 1)
        unread = 1 if message.unread else 0
        self._conn.execute(
            "UPDATE conversations SET last_seq = ?, unread = unread + ?,"
            " last_activity = max(last_activity, ?) WHERE conversation_id = ?",
            (stored.seq, unread, message.received_at, message.conversation_id),
        )
        self._conn.execute(
            f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 12)})",
            (
                stored.conversation_id,
                stored.message_id,
                stored.sender_account,
                stored.sender_device,
                stored.direction.value,
                stored.content_type,
                self._rest.seal("messages.body", stored.body),
                stored.sent_at,
                stored.received_at,
                stored.state.value,
                stored.seq,
                None,
            ),
        )
        return AddedMessage(message=stored, duplicate=False)

    def get_message(self, message_id: bytes) -> Message | None:
        row = self._one(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?", (message_id,)
        )
        return None if row is None else _message(row, self._rest)

    def list_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        low = self._position(conversation_id, after_seq, before=False) or _FIRST
        high = self._position(conversation_id, before_seq, before=True) or _LAST
        # Paging backwards (before_seq alone) takes the newest rows below the bound.
        newest = before_seq is not None and after_seq is None
        way = "DESC" if newest else "ASC"
        rows = self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
            " AND (received_at, seq) > (?, ?) AND (received_at, seq) < (?, ?)"
            f" ORDER BY received_at {way}, seq {way} LIMIT ?",
            (conversation_id, *low, *high, limit),
        )
        messages = [_message(row, self._rest) for row in rows]
        return messages[::-1] if newest else messages

    def _position(
        self, conversation_id: str, seq: int | None, *, before: bool
    ) -> tuple[int, int] | None:
        """Where the message ``seq`` stands in time order, ``(received_at, seq)``; for a
        ``seq`` no message has, the nearest one on the side that keeps seq order (the next
        one up for a ``before`` bound, the previous one for an ``after`` bound)."""
        if seq is None:
            return None
        sql = "SELECT received_at, seq FROM messages WHERE conversation_id = ?" + (
            " AND seq >= ? ORDER BY seq LIMIT 1"
            if before
            else " AND seq <= ? ORDER BY seq DESC LIMIT 1"
        )
        row = self._one(sql, (conversation_id, seq))
        return None if row is None else (row[0], row[1])

    def set_delivery(
        self, message_id: bytes, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        sql = "UPDATE messages SET state = ?, failure_reason = ? WHERE message_id = ?"
        if not self._changes(sql, (state.value, reason, message_id)):
            raise NotFoundError("no such message")

    def set_device_delivery(self, delivery: DeviceDelivery) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO deliveries (message_id, device, state, reason, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                delivery.message_id,
                delivery.device,
                delivery.state.value,
                delivery.reason,
                delivery.updated_at,
            ),
        )

    def list_device_deliveries(self, message_id: bytes) -> list[DeviceDelivery]:
        rows = self._all(
            "SELECT device, state, reason, updated_at FROM deliveries WHERE message_id = ?"
            " ORDER BY device",
            (message_id,),
        )
        return [
            DeviceDelivery(
                message_id=message_id,
                device=bytes(row[0]),
                state=DeliveryState(row[1]),
                reason=row[2],
                updated_at=int(row[3]),
            )
            for row in rows
        ]

    # -- outbox -----------------------------------------------------------------------

    def add_outbox(self, item: NewOutboxItem) -> OutboxItem:
        cursor = self._conn.execute(
            "INSERT INTO outbox (destination_account, destination_device, conversation_id,"
            " message_id, payload, created_at, attempts, next_attempt_at, last_error)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL)",
            (
                item.destination_account,
                item.destination_device,
                item.conversation_id,
                item.message_id,
                item.payload,
                item.created_at,
                item.created_at,
            ),
        )
        assert cursor.lastrowid is not None
        return OutboxItem.from_new(item, item_id=cursor.lastrowid)

    def due_outbox(self, now: int, *, limit: int = 100) -> list[OutboxItem]:
        rows = self._all(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE next_attempt_at <= ?"
            " ORDER BY next_attempt_at, item_id LIMIT ?",
            (now, limit),
        )
        return [_outbox(row) for row in rows]

    def reschedule_outbox(
        self, item_id: int, *, next_attempt_at: int, error: str | None
    ) -> OutboxItem:
        row = self._one(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            f" WHERE item_id = ? RETURNING {_OUTBOX_COLUMNS}",
            (next_attempt_at, error, item_id),
        )
        if row is None:
            raise NotFoundError("no such outbox item")
        return _outbox(row)

    def remove_outbox(self, item_id: int) -> bool:
        return self._changes("DELETE FROM outbox WHERE item_id = ?", (item_id,)) > 0

    def statistics(self) -> StoreStatistics:
        def count(sql: str) -> int:
            return int(self._one(sql)[0])

        return StoreStatistics(
            contacts=count("SELECT count(*) FROM contacts"),
            blocked=count("SELECT count(*) FROM contacts WHERE state = 'blocked'"),
            sessions=count("SELECT count(*) FROM sessions"),
            conversations=count("SELECT count(*) FROM conversations"),
            messages=count("SELECT count(*) FROM messages"),
            outbox=count("SELECT count(*) FROM outbox"),
            mailbox_items=count("SELECT count(*) FROM mailbox"),
            mailbox_bytes=count("SELECT coalesce(sum(size), 0) FROM mailbox"),
            dht_records=count("SELECT count(*) FROM dht_cache"),
            peers=count("SELECT count(*) FROM peers"),
            groups=count("SELECT count(*) FROM groups"),
            group_events=count("SELECT count(*) FROM group_events"),
        )
