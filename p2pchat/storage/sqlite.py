"""``SqliteStore``: the on-disk store (stdlib ``sqlite3``, WAL, numbered migrations).

One connection, one writer. Every call runs in a worker thread
(``trio.to_thread.run_sync``) while holding a :class:`trio.Lock`, so the trio thread never
blocks on disk and statements never interleave. A call is one ``BEGIN IMMEDIATE … COMMIT``;
:meth:`SqliteStore.atomically` runs a whole unit of work (an async function that awaits
only its transaction, driven to completion in the worker) the same way, in one hop;
:meth:`SqliteStore.transaction` spans several calls (each its own thread hop) and commits
or rolls back once, at the end. Worker threads are not abandoned on cancellation: a
statement that started finishes, and a cancelled transaction rolls back (shielded).

Durability. The journal is WAL with ``synchronous=FULL``: every COMMIT fsyncs the WAL
before returning, so a commit that precedes a delivery ack survives a power cut, not only
a process crash. ``NORMAL`` would be enough against SIGKILL (the WAL bytes are in the OS
page cache when COMMIT returns) but a power loss could then drop the last acknowledged
messages, and the sender, having the ack, would never resend them: message loss. The
price is one fsync per commit; batch writes in a transaction (see ``bench/store_bench.py``).

The file is locked with ``locking_mode=EXCLUSIVE``: a second process (a second node on
the same home) gets :class:`StorageError` at open instead of a silently shared store.
The lock dies with the process, so a killed node's store reopens at once.

A store whose file was deleted, replaced or made read-only while open would go on
"committing" into an unlinked inode (or into a file nobody will read again): every commit
first checks that the path still names the file opened, writable, and fails with
:class:`StorageError` otherwise. So nothing is ever acknowledged as stored that a restart
would not find (issue 16 item 3); the node notices the same and stops.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from os import PathLike
from typing import Self, TypeVar, cast

import trio

from p2pchat.errors import ClosedError, LocalProtocolError, StorageError

from ._at_rest import AtRest
from ._facade import Backend, Facade, run_unit, serialized
from ._seal_pass import check_or_seal
from ._sqlite_backend import SqliteBackend
from .base import Transaction, UnitOfWork
from .migrations import MIGRATIONS, Migration, migrate

__all__ = ["SqliteStore"]

T = TypeVar("T")


@contextmanager
def _map_sqlite_errors(what: str) -> Iterator[None]:
    """Map ``sqlite3`` errors to :class:`StorageError` at the store's boundary.

    Constraint violations cannot happen through the API (records are validated and
    duplicates are checked first), so an ``IntegrityError`` here is a store bug or
    corruption and is reported as such; the original stays in ``__cause__``.
    """
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            raise StorageError(f"{what}: the store file is corrupt or not a database") from exc
        if "locked" in text or "busy" in text:
            raise StorageError(f"{what}: the store is in use by another process") from exc
        raise StorageError(f"{what}: {text}") from exc


#: The store file and SQLite's companions (WAL, shared memory, rollback journal).
_SUFFIXES = ("", "-wal", "-shm", "-journal")
FILE_MODE = 0o600


def _make_private(path: str) -> None:
    """Create the store file 0600 if missing; tighten it and its companions to 0600.

    SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database file,
    so a 0600 database keeps them 0600 whatever the umask.
    """
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StorageError(f"cannot open the store at {path}: {exc.strerror}") from None
    os.close(fd)
    for suffix in _SUFFIXES:
        try:
            os.chmod(path + suffix, FILE_MODE)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot make {path + suffix} private: {exc.strerror}") from None


def _connect(path: str, migrations: tuple[Migration, ...], rest: AtRest) -> sqlite3.Connection:
    what = f"cannot open the store at {path}"
    _make_private(path)
    with _map_sqlite_errors(what):
        # Autocommit mode: the store issues BEGIN/COMMIT itself. One connection is used
        # from worker threads one at a time (under the store's lock), hence no
        # same-thread check. A short busy timeout: a held lock means another process.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.5)
    try:
        with _map_sqlite_errors(what):
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StorageError(f"{what}: WAL mode unavailable")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA trusted_schema = OFF")
            # Deleted and overwritten content is zeroed, not left in free pages.
            conn.execute("PRAGMA secure_delete = ON")
            migrate(conn, migrations)
            check_or_seal(conn, rest)
            # Cheap structural check (no full scan): catches a truncated or garbled file.
            result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if result != "ok":
                raise StorageError(f"{what}: the store file is corrupt")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteStore(Facade):
    """The default store. Open it with ``async with await SqliteStore.open(path) as store``."""

    def __init__(
        self, conn: sqlite3.Connection, *, path: str, seal_key: bytes | None = None
    ) -> None:
        """Use :meth:`open`; this wraps a connection that is already migrated."""
        self._conn: sqlite3.Connection | None = conn
        self._backend = SqliteBackend(conn, AtRest(seal_key))
        self._lock = trio.Lock()
        # Group commit (see ``atomically``): units waiting for the next batch.
        self._pending: list[_Job] = []
        self._flushing = False
        self._flushed = trio.Event()
        self._path = path
        self._file = _file_id(path)

    @classmethod
    async def open(
        cls,
        path: str | PathLike[str],
        *,
        seal_key: bytes | None = None,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> Self:
        """Open (creating and migrating if needed) the store at ``path``, mode 0600.

        With ``seal_key`` (32 bytes; the node passes its keystore's local key) message
        bodies, names and group content are sealed at rest, and a store written without
        it is sealed on the way in (see ``_seal_pass.py``). A sealed store refuses to
        open without its key.

        Raises :class:`StorageError` if the file is corrupt, not a p2pchat store, from a
        newer release, held by another process, or sealed under another key.
        ``migrations`` is for tests.
        """
        name = str(path)
        rest = AtRest(seal_key)
        conn = await trio.to_thread.run_sync(_connect, name, migrations, rest)
        return cls(conn, path=name, seal_key=seal_key)

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<SqliteStore {self._path!r} {state}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection once in-flight calls finish. Idempotent."""
        if self._conn is None:
            return
        async with serialized(self._lock):
            conn, self._conn = self._conn, None
            if conn is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(conn.close)

    def _check_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ClosedError("the store is closed")
        return self._conn

    async def _call(self, op: Callable[[Backend], T]) -> T:
        self._check_open()
        async with serialized(self._lock):
            conn = self._check_open()
            return await trio.to_thread.run_sync(self._run_atomically, conn, op)

    def check_file(self) -> None:
        """Raise :class:`StorageError` unless the path still names the file opened, and it
        is writable (a deleted or replaced home, a read-only file)."""
        if self._file is None:
            return  # an in-memory database: no file to lose
        try:
            now = _file_id(self._path)
        except OSError as exc:
            raise StorageError(
                f"the store file {self._path} is gone ({exc.strerror}): was the home deleted?"
            ) from None
        if now != self._file:
            raise StorageError(f"the store file {self._path} was replaced by another file")
        if not os.access(self._path, os.W_OK):
            raise StorageError(f"the store file {self._path} is no longer writable")

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            self.check_file()
        except StorageError:
            _rollback(conn)
            raise
        _commit(conn)

    def _run_atomically(self, conn: sqlite3.Connection, op: Callable[[Backend], T]) -> T:
        with _map_sqlite_errors("store operation failed"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = op(self._backend)
            except BaseException:
                _rollback(conn)
                raise
            self._commit(conn)
            return result

    async def atomically(self, work: UnitOfWork[T]) -> T:
        """Run a whole unit of work in one worker-thread hop; see
        :meth:`p2pchat.storage.base.Store.atomically`.

        Group commit: units that arrive while one batch is being committed form the next
        batch, run in ONE transaction (each in its own savepoint: a unit that raises is
        rolled back alone) with one commit, so concurrent callers share the fsync. Each
        caller returns only after the commit that holds its unit: nothing is reported
        stored before it is durable. Once its batch started, a caller waits for it even
        if cancelled (as for a thread hop), so a unit's outcome is never lost.
        """
        self._check_open()
        if self._lock.statistics().owner is trio.lowlevel.current_task():
            raise LocalProtocolError(
                "the store was called inside its own transaction: call the transaction instead"
            )
        job: _Job = _Job(work)
        self._pending.append(job)
        try:
            while not job.done:
                if self._flushing:
                    await self._flushed.wait()
                else:
                    await self._flush()
        except BaseException:
            if not job.taken:
                self._pending.remove(job)
                raise
            with trio.CancelScope(shield=True):
                while not job.done:
                    await self._flushed.wait()
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    async def _flush(self) -> None:
        """Commit every pending unit as one batch (the caller is one of them)."""
        self._flushing = True
        try:
            async with serialized(self._lock):
                batch, self._pending = self._pending, []
                for job in batch:
                    job.taken = True
                with trio.CancelScope(shield=True):
                    try:
                        conn = self._check_open()
                        await trio.to_thread.run_sync(self._run_batch, conn, batch)
                    except BaseException as exc:  # noqa: BLE001 (each caller raises it)
                        for job in batch:  # the batch was not committed
                            if job.error is None:
                                job.error = exc
                            job.done = True
        finally:
            self._flushing = False
            self._flushed.set()
            self._flushed = trio.Event()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """In the worker: every unit of ``batch`` in one transaction, one commit."""
        with _map_sqlite_errors("store operation failed"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in batch:
                    _run_job(conn, self._backend, job, savepoint=len(batch) > 1)
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (I/O error, disk full):
                        # the units before this one are gone too.
                        raise StorageError("the transaction was rolled back by SQLite")
            except BaseException:
                _rollback(conn)
                raise
            if any(job.error is None for job in batch):
                self._commit(conn)
            else:
                _rollback(conn)
        for job in batch:
            job.done = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One atomic, durable unit of several calls; see the module docstring."""
        self._check_open()
        async with serialized(self._lock):
            conn = self._check_open()
            await trio.to_thread.run_sync(_in_map, _begin, conn)
            tx = _SqliteTransaction(self._backend, conn)
            try:
                yield tx
            except BaseException:
                tx.finish()
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_in_map, _rollback, conn)
                raise
            tx.finish()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_in_map, self._commit, conn)


class _Job:
    """One unit of work waiting for, or in, a batch."""

    __slots__ = ("done", "error", "result", "taken", "work")

    def __init__(self, work: UnitOfWork[object]) -> None:
        self.work = work
        self.taken = False  # in a batch: its outcome will come, whatever the caller does
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None


def _run_job(
    conn: sqlite3.Connection, backend: SqliteBackend, job: _Job, *, savepoint: bool
) -> None:
    """Run one unit inside the open transaction; its failure is its own (rolled back to
    its savepoint), recorded on the job for its caller."""
    if savepoint:
        conn.execute("SAVEPOINT unit")
    try:
        with _map_sqlite_errors("store operation failed"):
            job.result = run_unit(backend, job.work)
    except Exception as exc:  # noqa: BLE001 (its caller raises it)
        job.error = exc
        if savepoint and conn.in_transaction:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
        return
    if savepoint:
        conn.execute("RELEASE unit")


def _file_id(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the store file; ``None`` for SQLite's in-memory names."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _in_map(step: Callable[[sqlite3.Connection], None], conn: sqlite3.Connection) -> None:
    with _map_sqlite_errors("store transaction failed"):
        step(conn)


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _rollback(conn: sqlite3.Connection) -> None:
    # After some errors (I/O, disk full) SQLite has already rolled back by itself.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _commit(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:
        raise StorageError("the transaction was rolled back by SQLite after an error")
    try:
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


class _SqliteTransaction(Facade):
    """The ``tx`` of :meth:`SqliteStore.transaction`: calls join the open transaction."""

    def __init__(self, backend: SqliteBackend, conn: sqlite3.Connection) -> None:
        self._backend: SqliteBackend | None = backend
        self._conn = conn
        # Tasks sharing one transaction take turns: one connection, one statement at once.
        self._turn = trio.Lock()

    def finish(self) -> None:
        self._backend = None

    async def _call(self, op: Callable[[Backend], T]) -> T:
        async with self._turn:
            backend = self._backend
            if backend is None:
                raise ClosedError("the transaction has ended")
            return await trio.to_thread.run_sync(self._run, backend, op)

    def _run(self, backend: SqliteBackend, op: Callable[[Backend], T]) -> T:
        # Each call is atomic inside the transaction too: if one fails half-way (disk
        # full, say) and the caller carries on, the commit must not include its half.
        with _map_sqlite_errors("store operation failed"):
            if not self._conn.in_transaction:
                raise StorageError("the transaction was rolled back by SQLite after an error")
            self._conn.execute("SAVEPOINT op")
            try:
                result = op(backend)
            except BaseException:
                if self._conn.in_transaction:  # else SQLite rolled it all back: see _commit
                    self._conn.execute("ROLLBACK TO op")
                    self._conn.execute("RELEASE op")
                raise
            self._conn.execute("RELEASE op")
            return result
