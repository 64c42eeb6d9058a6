"""The group tables (schema migration 2): one contract over SqliteStore and MemoryStore.

Round trips, idempotent event batches, insertion order and paging by row id, unknown
groups, validation of every field (nothing stored on refusal), all-or-nothing
transactions mixing group and other writes, blobs out of ``repr``, statistics, and a
v1 file migrating forward with its data intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from p2pchat.errors import NotFoundError
from p2pchat.storage import (
    GroupInfo,
    GroupStatus,
    MemoryStore,
    SqliteStore,
    Store,
    StoredGroupEvent,
)
from p2pchat.storage.migrations import MIGRATIONS
from p2pchat.storage.records import MAX_GROUP_EVENT_BYTES
from tests.conftest import NOW_MS
from tests.unit.test_store_contract import dm, key, message

# -- builders ---------------------------------------------------------------------------


def gid(n: int) -> bytes:
    """A distinct 32-byte group id for a small integer."""
    return b"G" + n.to_bytes(31, "big")


def group(
    n: int,
    *,
    status: GroupStatus = GroupStatus.ACTIVE,
    joined: int = NOW_MS,
    tags: tuple[str, ...] = ("rust", "p2p"),
    keyring: bytes | None = None,
) -> GroupInfo:
    return GroupInfo(
        group_id=gid(n),
        kind="private",
        name=f"group {n}",
        genesis=b"genesis-%d" % n,
        status=status,
        joined_at=joined,
        updated_at=joined + 1,
        tags=tags,
        keyring=keyring,
    )


def event(n: int, *, seq: int | None = None, data: bytes | None = None) -> StoredGroupEvent:
    return StoredGroupEvent(
        event_id=b"E" + n.to_bytes(31, "big"),
        device=key(n % 3 + 1),
        seq=n if seq is None else seq,
        lamport=n * 2,
        data=b"event-%d" % n if data is None else data,
        received_at=NOW_MS + n,
    )


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        async with await SqliteStore.open(tmp_path / "store.db") as sqlite_store:
            yield sqlite_store
    else:
        async with MemoryStore() as memory_store:
            yield memory_store


async def _history(store: Store, n: int) -> list[StoredGroupEvent]:
    return [e for _, e in await store.group_events(gid(n))]


# -- groups -----------------------------------------------------------------------------


async def test_group_round_trip_and_replace(store: Store) -> None:
    assert await store.get_group(gid(1)) is None
    stored = group(1, keyring=b"sealed-keyring")
    await store.put_group(stored)
    assert await store.get_group(gid(1)) == stored
    await store.put_group(group(2, tags=()))
    assert await store.get_group(gid(2)) == group(2, tags=())
    left = replace(stored, status=GroupStatus.LEFT, name="renamed", tags=("x",), keyring=None)
    await store.put_group(left)
    assert await store.get_group(gid(1)) == left
    assert await store.get_group(gid(3)) is None


async def test_replacing_a_group_keeps_its_events(store: Store) -> None:
    await store.put_group(group(1))
    await store.add_group_events(gid(1), [event(1), event(2)])
    await store.put_group(group(1, status=GroupStatus.REMOVED))
    assert await _history(store, 1) == [event(1), event(2)]
    assert await store.count_group_events(gid(1)) == 2


async def test_groups_listed_by_join_time_then_id_and_filtered(store: Store) -> None:
    await store.put_group(group(3, joined=10))
    await store.put_group(group(2, joined=20, status=GroupStatus.LEFT))
    await store.put_group(group(1, joined=20))
    await store.put_group(group(4, joined=5, status=GroupStatus.REMOVED))
    assert [g.group_id for g in await store.list_groups()] == [gid(4), gid(3), gid(1), gid(2)]
    active = await store.list_groups(status=GroupStatus.ACTIVE)
    assert [g.group_id for g in active] == [gid(3), gid(1)]
    assert [g.group_id for g in await store.list_groups(status=GroupStatus.LEFT)] == [gid(2)]


async def test_set_group_keyring(store: Store) -> None:
    await store.put_group(group(1))
    await store.set_group_keyring(gid(1), b"sealed-1")
    assert await store.get_group(gid(1)) == group(1, keyring=b"sealed-1")
    await store.set_group_keyring(gid(1), None)
    assert await store.get_group(gid(1)) == group(1)
    with pytest.raises(NotFoundError):
        await store.set_group_keyring(gid(2), b"sealed-2")
    assert await store.get_group(gid(2)) is None


async def test_delete_group_removes_its_events_only(store: Store) -> None:
    await store.put_group(group(1))
    await store.put_group(group(2))
    await store.add_group_events(gid(1), [event(1), event(2)])
    await store.add_group_events(gid(2), [event(3)])
    assert await store.delete_group(gid(1)) is True
    assert await store.delete_group(gid(1)) is False
    assert await store.get_group(gid(1)) is None
    assert await store.count_group_events(gid(1)) == 0
    assert await store.group_events(gid(1)) == []
    assert await _history(store, 2) == [event(3)]
    # Joining again starts from an empty history, and old events can be stored anew.
    await store.put_group(group(1))
    assert await store.group_events(gid(1)) == []
    assert await store.add_group_events(gid(1), [event(2)]) == 1
    stats = await store.statistics()
    assert (stats.groups, stats.group_events) == (2, 2)


# -- events -----------------------------------------------------------------------------


async def test_add_group_events_is_idempotent_and_counts_new_ones(store: Store) -> None:
    await store.put_group(group(1))
    assert await store.add_group_events(gid(1), []) == 0
    assert await store.add_group_events(gid(1), [event(1), event(2)]) == 2
    assert await store.add_group_events(gid(1), [event(2), event(1)]) == 0
    # A repeated id counts once and the first copy wins; a held id is not overwritten.
    changed = event(1, data=b"other bytes")
    assert await store.add_group_events(gid(1), [event(3), event(3, seq=99), changed]) == 1
    assert await _history(store, 1) == [event(1), event(2), event(3)]
    assert await store.count_group_events(gid(1)) == 3
    # A skipped event takes no row id, so both stores number the same history alike.
    row_ids = [r for r, _ in await store.group_events(gid(1))]
    assert row_ids == list(range(row_ids[0], row_ids[0] + 3))
    # The same event id in another group is another row.
    await store.put_group(group(2))
    assert await store.add_group_events(gid(2), [event(1)]) == 1
    assert await store.count_group_events(gid(1)) == 3


async def test_events_of_an_unknown_group(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        await store.add_group_events(gid(9), [event(1)])
    assert gid(9).hex() not in str(info.value)
    with pytest.raises(NotFoundError):
        await store.add_group_events(gid(9), [])
    assert await store.group_events(gid(9)) == []
    assert await store.count_group_events(gid(9)) == 0
    assert (await store.statistics()).group_events == 0


async def test_events_come_back_in_insertion_order_with_growing_row_ids(store: Store) -> None:
    await store.put_group(group(1))
    await store.put_group(group(2))
    # Neither id nor seq order: insertion order is what is kept.
    await store.add_group_events(gid(1), [event(5), event(0, seq=0), event(3)])
    await store.add_group_events(gid(2), [event(4)])
    await store.add_group_events(gid(1), [event(1)])
    rows = await store.group_events(gid(1))
    assert [e for _, e in rows] == [event(5), event(0, seq=0), event(3), event(1)]
    row_ids = [r for r, _ in rows]
    assert row_ids == sorted(set(row_ids))
    assert all(r > 0 for r in row_ids)
    (other,) = await store.group_events(gid(2))
    assert row_ids[2] < other[0] < row_ids[3]


async def test_paging_by_row_id(store: Store) -> None:
    await store.put_group(group(1))
    await store.add_group_events(gid(1), [event(n) for n in range(10)])
    everything = await store.group_events(gid(1))
    assert await store.group_events(gid(1), limit=100) == everything
    pages: list[list[tuple[int, StoredGroupEvent]]] = []
    cursor = 0
    while page := await store.group_events(gid(1), after_rowid=cursor, limit=3):
        pages.append(page)
        cursor = page[-1][0]
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [row for p in pages for row in p] == everything
    assert await store.group_events(gid(1), after_rowid=everything[4][0]) == everything[5:]


async def test_row_ids_are_never_reused(store: Store) -> None:
    await store.put_group(group(1))
    await store.add_group_events(gid(1), [event(1), event(2)])
    newest = (await store.group_events(gid(1)))[-1][0]
    await store.delete_group(gid(1))
    await store.put_group(group(1))
    await store.add_group_events(gid(1), [event(1)])
    (again,) = await store.group_events(gid(1))
    assert again[0] > newest


async def test_ten_thousand_events_in_one_call(store: Store) -> None:
    await store.put_group(group(1))
    batch = [event(n, data=b"%d" % n) for n in range(10_000)]
    assert await store.add_group_events(gid(1), batch) == 10_000
    assert await store.count_group_events(gid(1)) == 10_000
    tail = await store.group_events(gid(1), after_rowid=0, limit=None)
    assert [e for _, e in tail] == batch
    assert await store.add_group_events(gid(1), batch[::-1]) == 0


async def test_event_bytes_by_id_of_one_group_only(store: Store) -> None:
    await store.put_group(group(1))
    await store.put_group(group(2))
    batch = [event(n) for n in range(1200)]  # more ids than one query looks up
    await store.add_group_events(gid(1), batch)
    await store.add_group_events(gid(2), [event(5000)])
    wanted = [e.event_id for e in batch[::-1]] + [event(5000).event_id, b"E" * 32]
    found = await store.group_event_data(gid(1), wanted)
    assert found == {e.event_id: e.data for e in batch}  # not group 2's, not unknown ids
    assert await store.group_event_data(gid(1), []) == {}
    assert await store.group_event_data(gid(3), wanted) == {}


async def test_largest_event_and_genesis_round_trip(store: Store) -> None:
    biggest = bytes(range(256)) * (MAX_GROUP_EVENT_BYTES // 256)
    assert len(biggest) == MAX_GROUP_EVENT_BYTES
    info = replace(group(1), genesis=biggest)
    await store.put_group(info)
    await store.add_group_events(gid(1), [event(1, data=biggest)])
    assert await store.get_group(gid(1)) == info
    assert await _history(store, 1) == [event(1, data=biggest)]


# -- transactions -----------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_group_writes_commit_with_other_writes(store: Store) -> None:
    await store.put_conversation(dm())
    async with store.transaction() as tx:
        await tx.put_group(group(1))
        assert await tx.add_group_events(gid(1), [event(1), event(2)]) == 2
        await tx.set_group_keyring(gid(1), b"sealed")
        await tx.add_message(message(b"m1"))
        assert await tx.count_group_events(gid(1)) == 2  # reads see the transaction
    assert await store.get_group(gid(1)) == group(1, keyring=b"sealed")
    assert await _history(store, 1) == [event(1), event(2)]
    assert await store.get_message(b"m1") is not None


async def test_group_writes_roll_back_with_other_writes(store: Store) -> None:
    await store.put_conversation(dm())
    await store.put_group(group(1))
    await store.add_group_events(gid(1), [event(1)])
    before = (await store.statistics(), await store.group_events(gid(1)))

    async def failing_unit_of_work() -> None:
        async with store.transaction() as tx:
            await tx.add_group_events(gid(1), [event(2), event(3)])
            await tx.put_group(group(1, status=GroupStatus.LEFT, keyring=b"k"))
            await tx.put_group(group(2))
            await tx.add_group_events(gid(2), [event(4)])
            await tx.delete_group(gid(1))
            await tx.add_message(message(b"m1"))
            raise Boom

    with pytest.raises(Boom):
        await failing_unit_of_work()
    assert (await store.statistics(), await store.group_events(gid(1))) == before
    assert await store.get_group(gid(1)) == group(1)
    assert await store.get_group(gid(2)) is None
    assert await store.get_message(b"m1") is None
    # The row-id counter rolled back too (the stores agree on ids after a rollback), and
    # the group's history is still writable after its rollback.
    assert await store.add_group_events(gid(1), [event(2)]) == 1
    rows = await store.group_events(gid(1))
    assert [r for r, _ in rows] == [before[1][0][0], before[1][0][0] + 1]


async def test_a_refused_group_call_inside_a_transaction_leaves_the_rest(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.put_group(group(1))
        await tx.add_group_events(gid(1), [event(1)])
        with pytest.raises(NotFoundError):
            await tx.add_group_events(gid(2), [event(2)])
        with pytest.raises(NotFoundError):
            await tx.set_group_keyring(gid(2), b"k")
        with pytest.raises(TypeError):
            await tx.add_group_events(gid(1), [event(3), "not an event"])  # type: ignore[list-item]
    assert await _history(store, 1) == [event(1)]
    assert (await store.statistics()).group_events == 1


# -- validation -------------------------------------------------------------------------


def _group_with(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "group_id": gid(1),
        "kind": "private",
        "name": "n",
        "genesis": b"g",
        "status": GroupStatus.ACTIVE,
        "joined_at": 0,
        "updated_at": 0,
    }
    return lambda: GroupInfo(**(fields | changes))


def _event_with(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "event_id": b"e" * 32,
        "device": key(1),
        "seq": 0,
        "lamport": 0,
        "data": b"d",
        "received_at": 0,
    }
    return lambda: StoredGroupEvent(**(fields | changes))


TOO_BIG = b"x" * (MAX_GROUP_EVENT_BYTES + 1)

BAD_RECORDS = [
    (_group_with(group_id=b"g" * 31), ValueError),
    (_group_with(group_id=b"g" * 33), ValueError),
    (_group_with(group_id="g" * 32), TypeError),
    (_group_with(kind=""), ValueError),
    (_group_with(kind="k" * 17), ValueError),
    (_group_with(kind=b"private"), TypeError),
    (_group_with(name=""), ValueError),
    (_group_with(name="n" * 65), ValueError),
    (_group_with(name=None), TypeError),
    (_group_with(genesis=b""), ValueError),
    (_group_with(genesis=TOO_BIG), ValueError),
    (_group_with(genesis=bytearray(b"g")), TypeError),
    (_group_with(status="active"), TypeError),
    (_group_with(joined_at=-1), ValueError),
    (_group_with(joined_at=2**63), ValueError),
    (_group_with(joined_at=True), TypeError),
    (_group_with(updated_at=1.0), TypeError),
    (_group_with(tags=["a"]), TypeError),
    (_group_with(tags=("",)), ValueError),
    (_group_with(tags=("t" * 33,)), ValueError),
    (_group_with(tags=(b"t",)), TypeError),
    (_group_with(tags=tuple("abcdefghijklmnopq")), ValueError),
    (_group_with(keyring="k"), TypeError),
    (_event_with(event_id=b"e" * 31), ValueError),
    (_event_with(event_id=None), TypeError),
    (_event_with(device=b"d" * 33), ValueError),
    (_event_with(seq=-1), ValueError),
    (_event_with(seq=False), TypeError),
    (_event_with(lamport=-1), ValueError),
    (_event_with(lamport=2**63), ValueError),
    (_event_with(data=b""), ValueError),
    (_event_with(data=TOO_BIG), ValueError),
    (_event_with(data=memoryview(b"d")), TypeError),
    (_event_with(received_at=-5), ValueError),
    (_event_with(received_at="now"), TypeError),
]


@pytest.mark.parametrize(("build", "error"), BAD_RECORDS)
def test_records_refuse_bad_values(build: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()


def test_records_accept_the_limits() -> None:
    info = _group_with(
        kind="k" * 16,
        name="n" * 64,
        genesis=b"g" * MAX_GROUP_EVENT_BYTES,
        tags=tuple("t" * 32 for _ in range(16)),
        keyring=b"",
        joined_at=2**63 - 1,
    )()
    assert len(info.tags) == 16
    stored = _event_with(seq=2**63 - 1, data=b"d" * MAX_GROUP_EVENT_BYTES)()
    assert stored.seq == 2**63 - 1


BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception]]] = [
    ("put_group", ({"group_id": gid(1)},), {}, TypeError),
    ("get_group", (gid(1)[:31],), {}, ValueError),
    ("get_group", (gid(1).hex(),), {}, TypeError),
    ("list_groups", (), {"status": "active"}, TypeError),
    ("set_group_keyring", (gid(1), "sealed"), {}, TypeError),
    ("set_group_keyring", (b"", b"sealed"), {}, ValueError),
    ("add_group_events", (gid(1), [event(1), object()]), {}, TypeError),
    ("add_group_events", (gid(1), b"\x00\x01"), {}, TypeError),
    ("add_group_events", (gid(1), "events"), {}, TypeError),
    ("add_group_events", (gid(1), 7), {}, TypeError),
    ("add_group_events", (gid(1) + b"x", [event(1)]), {}, ValueError),
    ("group_events", (gid(1),), {"after_rowid": -1}, ValueError),
    ("group_events", (gid(1),), {"after_rowid": None}, TypeError),
    ("group_events", (gid(1),), {"limit": 0}, ValueError),
    ("group_events", (gid(1),), {"limit": True}, TypeError),
    ("count_group_events", (None,), {}, TypeError),
    ("delete_group", (b"g",), {}, ValueError),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error"), BAD_CALLS, ids=lambda v: str(v)[:24]
)
async def test_bad_arguments_raise_typed_errors_and_store_nothing(
    store: Store, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    await store.put_group(group(1, keyring=b"kept"))
    before = (await store.statistics(), await store.get_group(gid(1)))
    with pytest.raises(error):
        await getattr(store, method)(*args, **kwargs)
    assert (await store.statistics(), await store.get_group(gid(1))) == before
    assert await store.group_events(gid(1)) == []


def test_blobs_stay_out_of_repr() -> None:
    secret = b"\x13SECRET-BYTES\x37"
    records = [
        replace(group(1), genesis=secret, keyring=secret),
        event(1, data=secret),
    ]
    for record in records:
        text = repr(record)
        assert "SECRET" not in text, text
        assert type(record).__name__ in text
    assert "group 1" in repr(records[0])  # the name, not a blob, is shown


async def test_statistics_count_groups_and_events(store: Store) -> None:
    stats = await store.statistics()
    assert (stats.groups, stats.group_events) == (0, 0)
    await store.put_group(group(1))
    await store.put_group(group(2, status=GroupStatus.LEFT))
    await store.add_group_events(gid(1), [event(1), event(2)])
    await store.add_group_events(gid(2), [event(1)])
    stats = await store.statistics()
    assert (stats.groups, stats.group_events) == (2, 3)


# -- SQLite only: the migration and the schema ------------------------------------------


async def test_v1_store_migrates_to_groups_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path, migrations=MIGRATIONS[:1]) as v1:
        await v1.put_conversation(dm())
        await v1.add_message(message(b"m1"))
        await v1.put_meta("owner", b"account")
        before = await v1.list_messages("dm-1")
    async with await SqliteStore.open(path) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert await store.list_messages("dm-1") == before
        assert await store.get_meta("owner") == b"account"
        assert (await store.add_message(message(b"m2"))).message.seq == 2
        await store.put_group(group(1))
        await store.add_group_events(gid(1), [event(1)])
    async with await SqliteStore.open(path) as store:  # and it all survives a reopen
        assert await store.get_group(gid(1)) == group(1)
        assert await _history(store, 1) == [event(1)]
        assert len(await store.list_messages("dm-1")) == 2


async def test_v5_store_migrates_to_time_order_with_an_index(tmp_path: Path) -> None:
    # A store written before imports were ordered in time: seq order and time order differ.
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path, migrations=MIGRATIONS[:5]) as v5:
        await v5.put_conversation(dm())
        await v5.add_message(message(b"live", at=2000))
        await v5.add_message(message(b"imported", at=1000))
    async with await SqliteStore.open(path) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 6
        listed = await store.list_messages("dm-1", before_seq=2**53, limit=1)
        assert [m.message_id for m in listed] == [b"live"]
        assert [m.message_id for m in await store.list_messages("dm-1")] == [b"imported", b"live"]
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT seq FROM messages WHERE conversation_id = ?"
                " AND (received_at, seq) > (?, ?) AND (received_at, seq) < (?, ?)"
                " ORDER BY received_at DESC, seq DESC LIMIT 5",
                ("dm-1", 0, 0, 5000, 9),
            )
        )
        assert "messages_by_time" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


async def test_group_tables_are_strict_and_indexed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        await store.put_group(group(1))
        await store.add_group_events(gid(1), [event(1)])
    conn = sqlite3.connect(path)
    try:
        rows = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        assert rows["groups"].rstrip().endswith("STRICT")
        assert rows["group_events"].rstrip().endswith("STRICT")
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM group_events"
            " WHERE group_id = ? AND row_id > ? ORDER BY row_id",
            (gid(1), 0),
        ).fetchall()
        assert any("group_events_order" in row[-1] for row in plan), plan
        assert not any("TEMP B-TREE" in row[-1] for row in plan), plan  # no sort step
        with pytest.raises(sqlite3.IntegrityError):  # STRICT refuses a mistyped value
            conn.execute("UPDATE group_events SET seq = 'one'")
    finally:
        conn.close()
