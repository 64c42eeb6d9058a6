"""What a durable commit costs, and what the store adds around SQLite.

    .venv/bin/python bench/store_bench.py            # full run (about ten seconds)
    .venv/bin/python bench/store_bench.py --quick    # smoke run

Rows (messages per second, best of a few repeats on this shared machine):

* ``ack unit, FULL``: the node's receive path, one transaction per message holding the
  session pickle and the message, ``synchronous=FULL`` (the store's setting): one fsync each;
* ``ack unit, NORMAL``: the same with ``synchronous=NORMAL`` (forced on the private
  connection, for comparison only): what durability against power loss costs;
* ``batched, FULL``: 100 messages per transaction (a sync catch-up);
* ``raw sqlite3, FULL``: the same single-message transactions on a bare connection in the
  calling thread: what the lock and the worker-thread hop add;
* ``memory store``: the in-memory store, for scale.

And the latency of ``is_blocked`` among 10,000 contacts (the node calls it per frame).
Timing is reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from p2pchat.storage import (
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    DeliveryState,
    Direction,
    MemoryStore,
    NewMessage,
    SessionRecord,
    SqliteStore,
    Store,
)

NOW_MS = 1_767_225_600_000
PEER = b"\x01" * 32
DEVICE = b"\x02" * 32
BODY = b"\xa2" + b"x" * 200


def _message(n: int) -> NewMessage:
    return NewMessage(
        conversation_id="dm",
        message_id=n.to_bytes(16, "big"),
        sender_account=PEER,
        sender_device=DEVICE,
        direction=Direction.IN,
        content_type="text/plain",
        body=BODY,
        sent_at=NOW_MS,
        received_at=NOW_MS + n,
        state=DeliveryState.DELIVERED,
    )


def _session(n: int) -> SessionRecord:
    return SessionRecord(
        account=PEER, device=DEVICE, session_id=b"s", pickle=b"p" * 600, updated_at=n
    )


async def _prepare(store: Store) -> None:
    await store.put_conversation(
        Conversation(
            conversation_id="dm", kind=ConversationKind.DM, peer_account=PEER, last_activity=0
        )
    )


async def _ack_units(store: Store, start: int, count: int) -> None:
    for n in range(start, start + count):
        async with store.transaction() as tx:
            await tx.put_session(_session(n))
            await tx.add_message(_message(n))


async def _batched(store: Store, start: int, count: int) -> None:
    for first in range(start, start + count, 100):
        async with store.transaction() as tx:
            for n in range(first, min(first + 100, start + count)):
                await tx.add_message(_message(n))


async def _best_rate(
    count: int, repeats: int, run: Callable[[Store, int, int], Awaitable[None]], *, kind: str
) -> float:
    best = 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            if kind == "memory":
                store: Store = MemoryStore()
            else:
                sqlite_store = await SqliteStore.open(Path(folder) / "bench.db")
                if kind == "normal":
                    assert sqlite_store._conn is not None
                    sqlite_store._conn.execute("PRAGMA synchronous = NORMAL")
                store = sqlite_store
            async with store:
                await _prepare(store)
                start = time.perf_counter()
                await run(store, 0, count)
                best = max(best, count / (time.perf_counter() - start))
    return best


def _raw_rate(count: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            conn = sqlite3.connect(Path(folder) / "raw.db", isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("CREATE TABLE s (k BLOB PRIMARY KEY, p BLOB, t INTEGER)")
            conn.execute("CREATE TABLE m (id BLOB UNIQUE, seq INTEGER, body BLOB)")
            start = time.perf_counter()
            for n in range(count):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO s VALUES (?, ?, ?)", (b"s", b"p" * 600, n))
                conn.execute("INSERT INTO m VALUES (?, ?, ?)", (n.to_bytes(16, "big"), n, BODY))
                conn.execute("COMMIT")
            best = max(best, count / (time.perf_counter() - start))
            conn.close()
    return best


async def _blocked_lookup_us(contacts: int, lookups: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        async with await SqliteStore.open(Path(folder) / "bench.db") as store:
            async with store.transaction() as tx:
                for n in range(contacts):
                    state = ContactState.BLOCKED if n % 10 == 0 else ContactState.ACCEPTED
                    await tx.put_contact(
                        Contact(
                            account=n.to_bytes(32, "big"),
                            display_name=f"c{n}",
                            state=state,
                            created_at=0,
                            updated_at=0,
                        )
                    )
            start = time.perf_counter()
            for n in range(lookups):
                await store.is_blocked((n * 7919 % contacts).to_bytes(32, "big"))
            return (time.perf_counter() - start) / lookups * 1e6


async def main(quick: bool) -> None:
    count, repeats = (50, 1) if quick else (400, 3)
    rows = [
        ("ack unit, FULL", await _best_rate(count, repeats, _ack_units, kind="full")),
        ("ack unit, NORMAL", await _best_rate(count, repeats, _ack_units, kind="normal")),
        ("batched, FULL", await _best_rate(count * 5, repeats, _batched, kind="full")),
        ("raw sqlite3, FULL", _raw_rate(count, repeats)),
        ("memory store", await _best_rate(count * 5, repeats, _ack_units, kind="memory")),
    ]
    print(f"{'operation':<22}{'messages/s':>12}")
    for name, rate in rows:
        print(f"{name:<22}{rate:>12,.0f}")
    contacts = 1_000 if quick else 10_000
    latency = await _blocked_lookup_us(contacts, 200 if quick else 2_000)
    print(f"is_blocked among {contacts:,} contacts: {latency:,.0f} µs per call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    trio.run(main, parser.parse_args().quick)
