"""The one-time pass that seals an existing store's private columns (data at rest).

Run by :func:`~p2pchat.storage.sqlite.SqliteStore.open` when it is given a key and the
store is not sealed yet (a store written by an earlier release, or by a tool without the
key). One transaction rewrites every private value sealed and records the mark, so a
crash leaves the store wholly plaintext or wholly sealed; then ``VACUUM`` rewrites every
page of the file and the WAL is checkpointed and truncated, so no page of the file still
holds an old plaintext value (``secure_delete`` zeroes what later deletes free).
"""

# Only constant table and column names are interpolated into SQL.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3

from p2pchat.errors import StorageError
from p2pchat_crypto import cbor

from ._at_rest import SEALED_MARK, SEALED_META, AtRest

__all__ = ["check_or_seal"]

_CHUNK = 2000


def check_or_seal(conn: sqlite3.Connection, rest: AtRest) -> None:
    """Check the store's at-rest state against ``rest``; seal it if it is not yet.

    Raises :class:`~p2pchat.errors.StorageError` if the store is sealed and ``rest`` has
    no key, or has the wrong one.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SEALED_META,)).fetchone()
    if row is not None:
        if not rest.sealing:
            raise StorageError("this store is sealed at rest: it opens only with its key")
        try:
            mark = rest.open("meta.at-rest", bytes(row[0]))
        except StorageError:
            raise StorageError("this store is sealed under another key") from None
        if mark != SEALED_MARK:
            raise StorageError("this store is sealed in an unknown format")
        return
    if not rest.sealing:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        _seal_in_place(conn, rest, "messages", "rowid", "body", "messages.body")
        _seal_in_place(conn, rest, "group_events", "row_id", "data", "group_events.data")
        _seal_in_place(conn, rest, "dht_cache", "rowid", "value", "dht_cache.value")
        _seal_contacts(conn, rest)
        _seal_groups(conn, rest)
        _seal_peers(conn, rest)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (SEALED_META, rest.seal("meta.at-rest", SEALED_MARK)),
        )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _seal_in_place(
    conn: sqlite3.Connection, rest: AtRest, table: str, key: str, column: str, kind: str
) -> None:
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT {key}, {column} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
            (last, _CHUNK),
        ).fetchall()
        if not rows:
            return
        conn.executemany(
            f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
            [(rest.seal(kind, bytes(value)), rowid) for rowid, value in rows],
        )
        last = rows[-1][0]


def _seal_contacts(conn: sqlite3.Connection, rest: AtRest) -> None:
    rows = conn.execute(
        "SELECT account, display_name, claimed_name FROM contacts WHERE private IS NULL"
    ).fetchall()

    def fields(name: str, claimed: str | None) -> dict[str, cbor.Value]:
        found: dict[str, cbor.Value] = {"display_name": name}
        if claimed is not None:
            found["claimed_name"] = claimed
        return found

    conn.executemany(
        "UPDATE contacts SET display_name = '', claimed_name = NULL, private = ? WHERE account = ?",
        [(rest.seal_fields("contacts.private", fields(n, c)), a) for a, n, c in rows],
    )


def _seal_groups(conn: sqlite3.Connection, rest: AtRest) -> None:
    rows = conn.execute(
        "SELECT group_id, name, genesis, tags FROM groups WHERE private IS NULL"
    ).fetchall()
    conn.executemany(
        "UPDATE groups SET name = '', genesis = x'', tags = '[]', private = ? WHERE group_id = ?",
        [
            (
                rest.seal_fields(
                    "groups.private",
                    {"name": name, "genesis": bytes(genesis), "tags": json.loads(tags)},
                ),
                group_id,
            )
            for group_id, name, genesis, tags in rows
        ],
    )


def _seal_peers(conn: sqlite3.Connection, rest: AtRest) -> None:
    rows = conn.execute(
        "SELECT peer_id, display_name FROM peers WHERE private IS NULL AND display_name IS NOT NULL"
    ).fetchall()
    conn.executemany(
        "UPDATE peers SET display_name = NULL, private = ? WHERE peer_id = ?",
        [(rest.seal_fields("peers.private", {"display_name": n}), p) for p, n in rows],
    )
