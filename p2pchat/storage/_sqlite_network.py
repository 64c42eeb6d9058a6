"""The SQLite operations of a node's network roles: the mailbox it keeps for others, its
cache of DHT records and the peers it knows.

A mixin of :class:`~p2pchat.storage._sqlite_backend.SqliteBackend` (moved out of it so each
module stays small); like the rest of the backend, nothing here commits.
"""

# Only the module's own column-list constants are ever interpolated into SQL; every value
# is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ._at_rest import AtRest
from .records import DhtRecord, MailboxItem, MailboxQuota, Peer, PeerSource

__all__ = ["SqliteNetwork"]

_PEER_COLUMNS = "peer_id, addrs, account, last_seen, display_name, source, private"
_MAILBOX_COLUMNS = "item_id, recipient_tag, sender_tag, blob, stored_at, expires_at"


def _mailbox(row: Any) -> MailboxItem:
    return MailboxItem(
        item_id=row[0],
        recipient_tag=row[1],
        sender_tag=row[2],
        blob=row[3],
        stored_at=row[4],
        expires_at=row[5],
    )


def _peer(row: Any, rest: AtRest) -> Peer:
    name = row[4]
    if row[6] is not None:
        name = rest.open_fields("peers.private", row[6])["display_name"]
    return Peer(
        peer_id=row[0],
        addrs=tuple(json.loads(row[1])),
        account=row[2],
        last_seen=row[3],
        display_name=name,
        source=PeerSource(row[5]),
    )


class SqliteNetwork:
    """Mailbox, DHT cache and peer operations on ``self._conn``, inside the caller's
    transaction."""

    _conn: sqlite3.Connection
    _rest: AtRest
    _one: Callable[..., Any]
    _all: Callable[..., list[Any]]
    _changes: Callable[..., int]

    # -- mailbox ----------------------------------------------------------------------

    def put_mailbox(self, item: MailboxItem, *, quota: MailboxQuota) -> bool:
        if self._one("SELECT 1 FROM mailbox WHERE item_id = ?", (item.item_id,)):
            return False
        live = "expires_at > ?"
        sender = self._one(
            f"SELECT count(*), coalesce(sum(size), 0) FROM mailbox WHERE sender_tag = ? AND {live}",
            (item.sender_tag, item.stored_at),
        )
        total = self._one(
            f"SELECT count(*), coalesce(sum(size), 0) FROM mailbox WHERE {live}",
            (item.stored_at,),
        )
        quota.check(item.size, sender_usage=sender, total_usage=total)
        self._conn.execute(
            f"INSERT INTO mailbox ({_MAILBOX_COLUMNS}, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                item.item_id,
                item.recipient_tag,
                item.sender_tag,
                item.blob,
                item.stored_at,
                item.expires_at,
                item.size,
            ),
        )
        return True

    def fetch_mailbox(
        self, recipient_tag: bytes, *, now: int, limit: int = 100
    ) -> list[MailboxItem]:
        rows = self._all(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailbox WHERE recipient_tag = ? AND expires_at > ?"
            " ORDER BY stored_at, item_id LIMIT ?",
            (recipient_tag, now, limit),
        )
        return [_mailbox(row) for row in rows]

    def delete_mailbox(self, item_ids: Sequence[bytes]) -> int:
        return sum(
            self._changes("DELETE FROM mailbox WHERE item_id = ?", (item_id,))
            for item_id in set(item_ids)
        )

    def expire_mailbox(self, now: int) -> int:
        return self._changes("DELETE FROM mailbox WHERE expires_at <= ?", (now,))

    # -- DHT cache --------------------------------------------------------------------

    def put_dht(self, record: DhtRecord) -> bool:
        row = self._one("SELECT seq FROM dht_cache WHERE key = ?", (record.key,))
        if row is not None and row[0] > record.seq:
            return False
        self._conn.execute(
            "INSERT OR REPLACE INTO dht_cache (key, value, seq, expires_at) VALUES (?, ?, ?, ?)",
            (
                record.key,
                self._rest.seal("dht_cache.value", record.value),
                record.seq,
                record.expires_at,
            ),
        )
        return True

    def get_dht(self, key: bytes, *, now: int) -> DhtRecord | None:
        row = self._one(
            "SELECT key, value, seq, expires_at FROM dht_cache WHERE key = ? AND expires_at > ?",
            (key, now),
        )
        return (
            None
            if row is None
            else DhtRecord(
                key=row[0],
                value=self._rest.open("dht_cache.value", row[1]),
                seq=row[2],
                expires_at=row[3],
            )
        )

    def expire_dht(self, now: int) -> int:
        return self._changes("DELETE FROM dht_cache WHERE expires_at <= ?", (now,))

    # -- peers ------------------------------------------------------------------------

    def put_peer(self, peer: Peer) -> None:
        name, private = peer.display_name, None
        if self._rest.sealing and name is not None:
            private = self._rest.seal_fields("peers.private", {"display_name": name})
            name = None
        self._conn.execute(
            "INSERT OR REPLACE INTO peers (peer_id, addrs, account, last_seen, display_name,"
            " source, private) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                peer.peer_id,
                json.dumps(list(peer.addrs)),
                peer.account,
                peer.last_seen,
                name,
                peer.source.value,
                private,
            ),
        )

    def get_peer(self, peer_id: str) -> Peer | None:
        row = self._one(f"SELECT {_PEER_COLUMNS} FROM peers WHERE peer_id = ?", (peer_id,))
        return None if row is None else _peer(row, self._rest)

    def list_peers(self, *, source: PeerSource | None = None) -> list[Peer]:
        order = " ORDER BY last_seen DESC, peer_id"
        if source is None:
            rows = self._all(f"SELECT {_PEER_COLUMNS} FROM peers" + order)
        else:
            sql = f"SELECT {_PEER_COLUMNS} FROM peers WHERE source = ?" + order
            rows = self._all(sql, (source.value,))
        return [_peer(row, self._rest) for row in rows]

    def delete_peer(self, peer_id: str) -> bool:
        return self._changes("DELETE FROM peers WHERE peer_id = ?", (peer_id,)) > 0
