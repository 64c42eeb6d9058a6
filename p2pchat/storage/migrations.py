"""Numbered schema migrations, tracked by ``PRAGMA user_version``.

Version N of the schema is the result of applying migrations 1..N in order. Each
migration runs in its own transaction together with the ``user_version`` bump (SQLite
stores it in the file header, which is transactional), so a crash or a failing statement
leaves the database at the previous version, never in between. To change the schema
(groups, for instance), append a :class:`Migration`; never edit a released one.

Every table is ``STRICT`` so SQLite refuses a value of the wrong type instead of quietly
storing it, and the file carries our ``application_id`` so a different SQLite database is
recognised as "not ours" rather than migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from p2pchat.errors import StorageError

__all__ = ["APPLICATION_ID", "Migration", "MIGRATIONS", "schema_version", "migrate"]

#: ``PRAGMA application_id`` of a p2pchat store ("p2pc" in ASCII).
APPLICATION_ID = 0x70327063


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1 = Migration(
    1,
    "initial schema: meta, contacts, sessions, conversations, messages, outbox, mailbox, "
    "dht cache, peers",
    (
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL
        ) STRICT, WITHOUT ROWID""",
        """CREATE TABLE contacts (
            account BLOB PRIMARY KEY,
            display_name TEXT NOT NULL,
            state TEXT NOT NULL,
            verified INTEGER NOT NULL,
            identity BLOB NOT NULL,
            devices BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID""",
        # Blocked lookups are a point query on the primary key plus a state check; this
        # partial index also makes "list blocked" and the blocked count cheap.
        "CREATE INDEX contacts_blocked ON contacts(account) WHERE state = 'blocked'",
        """CREATE TABLE sessions (
            account BLOB NOT NULL,
            device BLOB NOT NULL,
            session_id BLOB NOT NULL,
            pickle BLOB NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (account, device, session_id)
        ) STRICT, WITHOUT ROWID""",
        """CREATE TABLE conversations (
            conversation_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            peer_account BLOB,
            last_activity INTEGER NOT NULL,
            unread INTEGER NOT NULL,
            last_seq INTEGER NOT NULL DEFAULT 0
        ) STRICT""",
        "CREATE INDEX conversations_activity ON conversations(last_activity DESC)",
        """CREATE TABLE messages (
            conversation_id TEXT NOT NULL REFERENCES conversations(conversation_id),
            seq INTEGER NOT NULL,
            message_id BLOB NOT NULL UNIQUE,
            sender_account BLOB NOT NULL,
            sender_device BLOB NOT NULL,
            direction TEXT NOT NULL,
            content_type TEXT NOT NULL,
            body BLOB NOT NULL,
            sent_at INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            state TEXT NOT NULL,
            failure_reason TEXT,
            PRIMARY KEY (conversation_id, seq)
        ) STRICT""",
        """CREATE TABLE outbox (
            item_id INTEGER PRIMARY KEY AUTOINCREMENT,
            destination_account BLOB NOT NULL,
            destination_device BLOB,
            conversation_id TEXT,
            message_id BLOB,
            payload BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            last_error TEXT
        ) STRICT""",
        "CREATE INDEX outbox_due ON outbox(next_attempt_at, item_id)",
        """CREATE TABLE mailbox (
            item_id BLOB PRIMARY KEY,
            recipient_tag BLOB NOT NULL,
            sender_tag BLOB NOT NULL,
            blob BLOB NOT NULL,
            size INTEGER NOT NULL,
            stored_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT""",
        "CREATE INDEX mailbox_recipient ON mailbox(recipient_tag, stored_at)",
        "CREATE INDEX mailbox_sender ON mailbox(sender_tag, expires_at)",
        "CREATE INDEX mailbox_expiry ON mailbox(expires_at)",
        """CREATE TABLE dht_cache (
            key BLOB PRIMARY KEY,
            value BLOB NOT NULL,
            seq INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT""",
        "CREATE INDEX dht_expiry ON dht_cache(expires_at)",
        """CREATE TABLE peers (
            peer_id TEXT PRIMARY KEY,
            addrs TEXT NOT NULL,
            account BLOB,
            last_seen INTEGER NOT NULL,
            display_name TEXT,
            source TEXT NOT NULL
        ) STRICT""",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ),
)

_V2 = Migration(
    2,
    "groups and their events",
    (
        # A plain rowid table, not WITHOUT ROWID: rows carry a genesis event of up to
        # 80 KiB, and SQLite advises WITHOUT ROWID only for small rows.
        """CREATE TABLE groups (
            group_id BLOB PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            genesis BLOB NOT NULL,
            status TEXT NOT NULL,
            joined_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            tags TEXT NOT NULL,
            keyring BLOB
        ) STRICT""",
        "CREATE INDEX groups_joined ON groups(joined_at, group_id)",
        # AUTOINCREMENT: a row id is never reused, even after the newest rows are deleted
        # (a group left and joined again), so a paging cursor can never skip an event.
        # The cascade is a safety net; delete_group also deletes the events explicitly.
        """CREATE TABLE group_events (
            row_id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id BLOB NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
            event_id BLOB NOT NULL,
            device BLOB NOT NULL,
            seq INTEGER NOT NULL,
            lamport INTEGER NOT NULL,
            data BLOB NOT NULL,
            received_at INTEGER NOT NULL,
            UNIQUE (group_id, event_id)
        ) STRICT""",
        # Paging a group's history in insertion order is a range scan of this index.
        "CREATE INDEX group_events_order ON group_events(group_id, row_id)",
    ),
)

_V3 = Migration(
    3,
    "a sealed 'private' column for contacts, groups and peers (data at rest)",
    (
        # Names, tags and the group genesis move into one sealed blob per row when the
        # store is opened with its key (see _at_rest.py); the old columns are then left
        # empty. Adding a column needs no table rebuild, so the foreign key from
        # group_events to groups (with its cascade) is never touched.
        "ALTER TABLE contacts ADD COLUMN private BLOB",
        "ALTER TABLE groups ADD COLUMN private BLOB",
        "ALTER TABLE peers ADD COLUMN private BLOB",
    ),
)

_V4 = Migration(
    4,
    "the name a contact gives themselves (signed in their messages), beside ours for them",
    (
        # Kept in the sealed 'private' blob when the store has its key; this column only
        # holds it in a store without one (tests, tools).
        "ALTER TABLE contacts ADD COLUMN claimed_name TEXT",
    ),
)

_V5 = Migration(
    5,
    "per-device delivery of our direct messages (multi-device fan-out, devices.md section 7)",
    (
        """CREATE TABLE deliveries (
            message_id BLOB NOT NULL,
            device BLOB NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (message_id, device)
        ) STRICT, WITHOUT ROWID""",
    ),
)

_V6 = Migration(
    6,
    "a conversation is listed in time order (received_at, then seq): history imported from"
    " another device sits at its place in time (devices.md section 4.4)",
    ("CREATE INDEX messages_by_time ON messages (conversation_id, received_at, seq)",),
)

#: The schema, oldest first; ``MIGRATIONS[i].version == i + 1``.
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to the last of ``migrations``; return the resulting version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): this function owns
    the transactions. Refuses a file from another application or from a newer release.
    """
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise ValueError(f"migration {migration.version} is out of order")
    current = schema_version(conn)
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    foreign = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    if (current or foreign) and app_id != APPLICATION_ID:
        raise StorageError("this SQLite file is not a p2pchat store (unknown application_id)")
    if current > len(migrations):
        raise StorageError(
            f"the store has schema version {current}, newer than this release "
            f"understands ({len(migrations)}); upgrade p2pchat"
        )
    for migration in migrations[current:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {migration.version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        current = migration.version
    return current
