"""The SQLite operations on groups and their events (schema migration 2).

A mixin of :class:`~p2pchat.storage._sqlite_backend.SqliteBackend`, kept apart so each
module stays small; like the rest of the backend, nothing here commits.
"""

# Only the module's own column-list constants are ever interpolated into SQL; every value
# is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from p2pchat.errors import NotFoundError

from ._at_rest import AtRest
from .records import GroupInfo, GroupStatus, StoredGroupEvent

__all__ = ["SqliteGroups"]

_GROUP_COLUMNS = (
    "group_id, kind, name, genesis, status, joined_at, updated_at, tags, keyring, private"
)
_EVENT_COLUMNS = "event_id, device, seq, lamport, data, received_at"
#: Event ids looked up per query (well under SQLite's bound on parameters).
_IDS_PER_QUERY = 500


def _group(row: Any, rest: AtRest) -> GroupInfo:
    name, genesis, tags = row[2], row[3], json.loads(row[7])
    if row[9] is not None:
        private = rest.open_fields("groups.private", row[9])
        name, genesis, tags = private["name"], private["genesis"], private["tags"]
    return GroupInfo(
        group_id=row[0],
        kind=row[1],
        name=name,
        genesis=genesis,
        status=GroupStatus(row[4]),
        joined_at=row[5],
        updated_at=row[6],
        tags=tuple(tags),
        keyring=row[8],
    )


def _event(row: Any, rest: AtRest) -> StoredGroupEvent:
    return StoredGroupEvent(
        event_id=row[0],
        device=row[1],
        seq=row[2],
        lamport=row[3],
        data=rest.open("group_events.data", row[4]),
        received_at=row[5],
    )


class SqliteGroups:
    """Group operations on ``self._conn``, inside the caller's transaction."""

    _conn: sqlite3.Connection
    _rest: AtRest

    def put_group(self, group: GroupInfo) -> None:
        # An upsert, not INSERT OR REPLACE: replacing would delete the row, and with it
        # (through the cascade) every stored event of the group.
        g = group
        name, genesis, tags, private = g.name, g.genesis, list(g.tags), None
        if self._rest.sealing:
            fields = {"name": name, "genesis": genesis, "tags": tags}
            private = self._rest.seal_fields("groups.private", fields)  # type: ignore[arg-type]
            name, genesis, tags = "", b"", []
        self._conn.execute(
            f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (group_id) DO UPDATE SET kind = excluded.kind,"
            " name = excluded.name, genesis = excluded.genesis, status = excluded.status,"
            " joined_at = excluded.joined_at, updated_at = excluded.updated_at,"
            " tags = excluded.tags, keyring = excluded.keyring, private = excluded.private",
            (
                g.group_id,
                g.kind,
                name,
                genesis,
                g.status.value,
                g.joined_at,
                g.updated_at,
                json.dumps(tags),
                g.keyring,
                private,
            ),
        )

    def get_group(self, group_id: bytes) -> GroupInfo | None:
        row = self._conn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = ?", (group_id,)
        ).fetchone()
        return None if row is None else _group(row, self._rest)

    def list_groups(self, *, status: GroupStatus | None = None) -> list[GroupInfo]:
        order = " ORDER BY joined_at, group_id"
        if status is None:
            cursor = self._conn.execute(f"SELECT {_GROUP_COLUMNS} FROM groups" + order)
        else:
            sql = f"SELECT {_GROUP_COLUMNS} FROM groups WHERE status = ?" + order
            cursor = self._conn.execute(sql, (status.value,))
        return [_group(row, self._rest) for row in cursor.fetchall()]

    def set_group_keyring(self, group_id: bytes, keyring: bytes | None) -> None:
        sql = "UPDATE groups SET keyring = ? WHERE group_id = ?"
        if not self._conn.execute(sql, (keyring, group_id)).rowcount:
            raise NotFoundError("no such group")

    def add_group_events(self, group_id: bytes, events: Sequence[StoredGroupEvent]) -> int:
        if self._conn.execute("SELECT 1 FROM groups WHERE group_id = ?", (group_id,)).fetchone():
            # Skipping a held event with WHERE NOT EXISTS, rather than letting the unique
            # constraint refuse it (ON CONFLICT DO NOTHING), keeps it from consuming a row
            # id: AUTOINCREMENT allocates one before the conflict is found, and the memory
            # store, which allocates none, must hand out the same ids. Each row is a point
            # lookup in the (group_id, event_id) index and sees the rows inserted before it.
            cursor = self._conn.executemany(
                f"INSERT INTO group_events (group_id, {_EVENT_COLUMNS})"
                " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS"
                " (SELECT 1 FROM group_events WHERE group_id = ?1 AND event_id = ?2)",
                (
                    (
                        group_id,
                        e.event_id,
                        e.device,
                        e.seq,
                        e.lamport,
                        self._rest.seal("group_events.data", e.data),
                        e.received_at,
                    )
                    for e in events
                ),
            )
            return cursor.rowcount
        raise NotFoundError("no such group")

    def group_events(
        self, group_id: bytes, *, after_rowid: int = 0, limit: int | None = None
    ) -> list[tuple[int, StoredGroupEvent]]:
        rows = self._conn.execute(
            f"SELECT row_id, {_EVENT_COLUMNS} FROM group_events"
            " WHERE group_id = ? AND row_id > ? ORDER BY row_id LIMIT ?",
            (group_id, after_rowid, -1 if limit is None else limit),
        ).fetchall()
        return [(row[0], _event(row[1:], self._rest)) for row in rows]

    def group_event_data(self, group_id: bytes, event_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        # Point lookups in the (group_id, event_id) index, a bounded number per query.
        ids = list(dict.fromkeys(event_ids))
        out: dict[bytes, bytes] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            part = ids[start : start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(part))
            rows = self._conn.execute(
                "SELECT event_id, data FROM group_events"
                f" WHERE group_id = ? AND event_id IN ({marks})",
                (group_id, *part),
            ).fetchall()
            out.update((row[0], self._rest.open("group_events.data", row[1])) for row in rows)
        return out

    def count_group_events(self, group_id: bytes) -> int:
        sql = "SELECT count(*) FROM group_events WHERE group_id = ?"
        return int(self._conn.execute(sql, (group_id,)).fetchone()[0])

    def delete_group(self, group_id: bytes) -> bool:
        self._conn.execute("DELETE FROM group_events WHERE group_id = ?", (group_id,))
        return self._conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,)).rowcount > 0
