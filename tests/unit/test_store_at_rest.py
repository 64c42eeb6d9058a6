"""Data at rest: a store opened with its key seals names, bodies and group content.

The migration test builds a store in the pre-sealing format (schema version 2, written
with plain SQL as an older release wrote it), opens it with a key, and checks that every
record reads back the same while no private value is left anywhere in the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from p2pchat.errors import StorageError
from p2pchat.storage import (
    Contact,
    ContactState,
    DhtRecord,
    GroupInfo,
    GroupStatus,
    Peer,
    PeerSource,
    SqliteStore,
    StoredGroupEvent,
)
from p2pchat.storage.migrations import MIGRATIONS, migrate
from tests.conftest import NOW_MS
from tests.unit.test_store_contract import dm, key, message

KEY = bytes(range(32))
SECRETS = (b"Zanzibar Contact", b"Quokka Fanclub", b"quokka-tag", b"post text 4711", b"peer Nym")


def raw_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


def file_modes(directory: Path) -> set[int]:
    return {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir() if p.is_file()}


def old_store(path: Path) -> None:
    """A schema-2 store as the release before sealing wrote it: everything in the clear."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, MIGRATIONS[:2])
    conn.execute(
        "INSERT INTO contacts VALUES (?, ?, 'accepted', 1, x'01', x'02', ?, ?)",
        (key(1), "Zanzibar Contact", NOW_MS, NOW_MS),
    )
    conn.execute("INSERT INTO conversations VALUES ('dm-1', 'dm', ?, ?, 0, 0)", (key(1), NOW_MS))
    conn.execute(
        "INSERT INTO groups VALUES (?, 'public', 'Quokka Fanclub', ?, 'active', ?, ?, ?, NULL)",
        (b"G" * 32, b"genesis Quokka Fanclub", NOW_MS, NOW_MS, json.dumps(["quokka-tag"])),
    )
    conn.execute(
        "INSERT INTO group_events (group_id, event_id, device, seq, lamport, data, received_at)"
        " VALUES (?, ?, ?, 1, 1, ?, ?)",
        (b"G" * 32, b"E" * 32, key(2), b"event: post text 4711", NOW_MS),
    )
    conn.execute(
        "INSERT INTO peers VALUES ('12D3peer', '[]', NULL, ?, 'peer Nym', 'mdns')", (NOW_MS,)
    )
    conn.execute("INSERT INTO dht_cache VALUES (x'6b', x'76616c', 1, ?)", (NOW_MS * 2,))
    conn.close()
    os.chmod(path, 0o644)


async def test_an_old_store_is_sealed_when_opened_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    old_store(path)
    assert all(secret in raw_bytes(tmp_path) for secret in SECRETS)
    async with await SqliteStore.open(path) as plain:  # the old format still reads
        before_contacts = await plain.list_contacts()
        before_groups = await plain.list_groups()
        before_events = await plain.group_events(b"G" * 32)
        before_peers = await plain.list_peers()
    async with await SqliteStore.open(path, seal_key=KEY) as store:
        assert await store.list_contacts() == before_contacts
        assert await store.list_groups() == before_groups
        assert await store.group_events(b"G" * 32) == before_events
        assert await store.list_peers() == before_peers
        assert await store.get_dht(b"k", now=NOW_MS) == DhtRecord(
            key=b"k", value=b"val", seq=1, expires_at=NOW_MS * 2
        )
        await store.add_message(message(b"m1", body=b"DM body 0815"))
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        # While open (the WAL holds the last writes) and after closing alike.
        data = raw_bytes(tmp_path)
        assert not [s for s in (*SECRETS, b"DM body 0815") if s in data]
    data = raw_bytes(tmp_path)
    assert not [s for s in (*SECRETS, b"DM body 0815") if s in data]
    assert file_modes(tmp_path) == {0o600}
    async with await SqliteStore.open(path, seal_key=KEY) as store:  # and it reopens
        assert [m.body for m in await store.list_messages("dm-1")] == [b"DM body 0815"]
        assert await store.list_contacts() == before_contacts


async def test_a_sealed_store_needs_its_key(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await SqliteStore.open(path, seal_key=KEY) as store:
        await store.put_contact(
            Contact(
                account=key(1),
                display_name="Zanzibar Contact",
                state=ContactState.ACCEPTED,
                created_at=NOW_MS,
                updated_at=NOW_MS,
            )
        )
    with pytest.raises(StorageError, match="only with its key"):
        await SqliteStore.open(path)
    with pytest.raises(StorageError, match="another key"):
        await SqliteStore.open(path, seal_key=bytes(32))


async def test_new_records_are_sealed_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    group = GroupInfo(
        group_id=b"G" * 32,
        kind="public",
        name="Quokka Fanclub",
        genesis=b"genesis Quokka Fanclub",
        status=GroupStatus.ACTIVE,
        joined_at=NOW_MS,
        updated_at=NOW_MS,
        tags=("quokka-tag",),
    )
    event = StoredGroupEvent(
        event_id=b"E" * 32,
        device=key(2),
        seq=1,
        lamport=1,
        data=b"event: post text 4711",
        received_at=NOW_MS,
    )
    peer = Peer(
        peer_id="12D3peer",
        addrs=(),
        last_seen=NOW_MS,
        display_name="peer Nym",
        source=PeerSource.MDNS,
    )
    claimed = Contact(
        account=key(7),
        display_name="our name 31337",
        claimed_name="Claimed Nym 42",
        state=ContactState.ACCEPTED,
        created_at=NOW_MS,
        updated_at=NOW_MS,
    )
    async with await SqliteStore.open(path, seal_key=KEY) as store:
        await store.put_contact(claimed)
        await store.put_group(group)
        await store.add_group_events(group.group_id, [event])
        await store.put_peer(peer)
        await store.put_conversation(dm())
        await store.add_message(message(b"m1", body=b"DM body 0815"))
    data = raw_bytes(tmp_path)
    assert not [s for s in (*SECRETS, b"DM body 0815", b"Claimed Nym", b"31337") if s in data]
    async with await SqliteStore.open(path, seal_key=KEY) as store:
        assert await store.get_contact(key(7)) == claimed
        assert await store.get_group(group.group_id) == group
        assert await store.group_events(group.group_id) == [(1, event)]
        assert await store.get_peer("12D3peer") == peer
        assert (await store.list_messages("dm-1"))[0].body == b"DM body 0815"
