"""What only the SQLite store has: a file, a schema version, a lock, corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2pchat.errors import StorageError
from p2pchat.storage import SqliteStore, Transaction
from p2pchat.storage.migrations import APPLICATION_ID, MIGRATIONS, Migration, migrate
from tests.unit.test_store_contract import dm, message

#: The first release's schema: these tests exercise the migration machinery from it.
V1 = MIGRATIONS[:1]
V2 = Migration(
    2,
    "test: a groups table and a column on conversations",
    (
        "CREATE TABLE groups (group_id TEXT PRIMARY KEY, name TEXT NOT NULL) STRICT",
        "ALTER TABLE conversations ADD COLUMN muted INTEGER NOT NULL DEFAULT 0",
    ),
)


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        await store.put_conversation(dm())
        await store.add_message(message(b"m1"))
        await store.put_meta("owner", b"acct")
    async with await SqliteStore.open(path) as store:
        assert await store.get_meta("owner") == b"acct"
        assert (await store.add_message(message(b"m2"))).message.seq == 2
        assert (await store.add_message(message(b"m1"))).duplicate


async def test_new_file_is_wal_full_sync_and_tagged(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        await store.put_meta("k", b"v")
        conn = store._conn  # the store's own settings, which no public API exposes
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with _raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, just some text that is long enough " * 100,
        b"SQLite format 3\x00" + b"\xff" * 4080,  # a plausible header, garbage after it
        b"",  # an empty file is a new database: must work
    ],
    ids=["text", "bad-header", "empty"],
)
async def test_garbage_file_raises_storage_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(content)
    if not content:
        async with await SqliteStore.open(path) as store:
            assert await store.get_meta("k") is None
        return
    with pytest.raises(StorageError, match="corrupt or not a database"):
        await SqliteStore.open(path)


async def test_unopenable_path_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open the store"):
        await SqliteStore.open(tmp_path / "no-such-folder" / "store.db")


async def test_truncated_store_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        await store.put_conversation(dm())
        for i in range(200):
            await store.add_message(message(b"m%d" % i, body=b"b" * 500))
    with _raw(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StorageError, match="corrupt"):
        await SqliteStore.open(path)


async def test_someone_elses_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with _raw(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    with pytest.raises(StorageError, match="not a p2pchat store"):
        await SqliteStore.open(path)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path):
        pass
    with _raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this release"):
        await SqliteStore.open(path)


async def test_a_store_in_use_cannot_be_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        await store.put_meta("k", b"v")
        with pytest.raises(StorageError, match="in use"):
            await SqliteStore.open(path)
    async with await SqliteStore.open(path) as store:  # released on close
        assert await store.get_meta("k") == b"v"


async def test_v1_store_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path, migrations=V1) as store:
        await store.put_conversation(dm())
        await store.add_message(message(b"m1"))
    async with await SqliteStore.open(path, migrations=(*V1, V2)) as store:
        assert (await store.add_message(message(b"m2"))).message.seq == 2
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        conn.execute("INSERT INTO groups VALUES ('g', 'friends')")
        assert conn.execute("SELECT muted FROM conversations").fetchall() == [(0,)]
    # The v1-only release now refuses the v2 file instead of misreading it.
    with pytest.raises(StorageError, match="newer"):
        await SqliteStore.open(path, migrations=V1)


def test_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    conn = _raw(tmp_path / "store.db")
    assert migrate(conn, V1) == 1
    broken = Migration(2, "fails half-way", ("CREATE TABLE groups (x INTEGER)", "NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, (*V1, broken))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "groups" not in tables
    assert migrate(conn, (*V1, V2)) == 2
    conn.close()


def test_migrations_must_be_numbered_in_order(tmp_path: Path) -> None:
    conn = _raw(tmp_path / "store.db")
    with pytest.raises(ValueError, match="out of order"):
        migrate(conn, (MIGRATIONS[0], Migration(3, "skips 2", ())))
    conn.close()


async def test_repr_names_the_path_and_state(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "store.db")
    assert "open" in repr(store)
    await store.aclose()
    assert "closed" in repr(store)


async def test_sqlite_failures_become_storage_errors_and_roll_back(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        await store.put_conversation(dm())
        conn = store._conn  # make every write fail, as a full or read-only disk would
        assert conn is not None
        conn.execute("PRAGMA query_only = ON")
        with pytest.raises(StorageError, match="readonly"):
            await store.add_message(message(b"m1"))
        conn.execute("PRAGMA query_only = OFF")
        assert (await store.add_message(message(b"m1"))).message.seq == 1

        # A call that fails half-way inside a transaction (its conversation update done,
        # its insert refused) must not leave its half in the commit.
        conn.execute(
            "CREATE TEMP TRIGGER fail_m3 BEFORE INSERT ON main.messages"
            " WHEN NEW.message_id = x'6d33' BEGIN SELECT RAISE(ABORT, 'simulated'); END"
        )
        async with store.transaction() as tx:
            await tx.add_message(message(b"m2"))
            with pytest.raises(StorageError, match="simulated"):
                await tx.add_message(message(b"m3"))
            await tx.add_message(message(b"m4"))
        stored = [(m.message_id, m.seq) for m in await store.list_messages("dm-1")]
        assert stored == [(b"m1", 1), (b"m2", 2), (b"m4", 3)]
        conversation = await store.get_conversation("dm-1")
        assert conversation is not None
        assert conversation.unread == 3


async def test_transaction_rolled_back_under_us_never_autocommits(tmp_path: Path) -> None:
    """After an I/O error SQLite may abandon the whole transaction by itself; later calls
    must fail rather than quietly run (and commit) one by one outside it."""
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        conn = store._conn
        assert conn is not None

        async def unit_of_work() -> None:
            async with store.transaction() as tx:
                await tx.put_meta("a", b"1")
                conn.execute("ROLLBACK")  # what SQLite does on SQLITE_FULL or IOERR
                with pytest.raises(StorageError, match="rolled back"):
                    await tx.put_meta("b", b"2")

        with pytest.raises(StorageError, match="rolled back"):
            await unit_of_work()
        assert await store.get_meta("a") is None
        assert await store.get_meta("b") is None
        await store.put_meta("c", b"3")  # the store itself is fine
        assert await store.get_meta("c") == b"3"


async def test_a_unit_whose_call_failed_part_way_cannot_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that wrote and then failed (disk full, say) may have left half its writes:
    even if the unit catches the error and carries on, nothing of it is committed."""
    async with await SqliteStore.open(tmp_path / "s.db") as store:
        backend = store._backend
        real = backend.put_meta

        def half_done(key: str, value: bytes) -> None:
            real(key, value)
            raise sqlite3.OperationalError("database or disk is full")

        async def work(tx: Transaction) -> None:
            await tx.put_meta("first", b"1")
            monkeypatch.setattr(backend, "put_meta", half_done)
            with pytest.raises(sqlite3.OperationalError):
                await tx.put_meta("second", b"2")
            monkeypatch.setattr(backend, "put_meta", real)

        with pytest.raises(StorageError, match="disk is full"):
            await store.atomically(work)
        assert await store.get_meta("first") is None
        assert await store.get_meta("second") is None
