"""Crash durability: a writer SIGKILLed at random points loses nothing it reported.

A child process commits transactions (a session pickle *and* a message, as a node does
before acking) and prints each message id only after its commit returned, like a node
sending an ack. The parent kills it at a seeded random point (after 0 to 40 acks, so
sometimes during opening and migration, often mid-transaction or mid-checkpoint),
reopens the store and checks that every acknowledged id is there exactly once, that the
session pickle and the messages moved together, and that ``integrity_check`` is ok.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

from p2pchat.storage import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
KILLS = 24
SEED = 20261128

CHILD = """
import random, sys, trio
from p2pchat.storage import (
    Conversation, ConversationKind, DeliveryState, Direction, NewMessage, SessionRecord,
    SqliteStore,
)

PEER = b"\\x01" * 32
DEVICE = b"\\x02" * 32

async def main(path, run):
    rnd = random.Random(run)
    async with await SqliteStore.open(path) as store:
        if await store.get_conversation("dm") is None:
            await store.put_conversation(Conversation(
                conversation_id="dm", kind=ConversationKind.DM, peer_account=PEER,
                last_activity=0))
        n = 0
        while True:
            mid = f"{run}-{n}".encode()
            async with store.transaction() as tx:
                await tx.put_session(SessionRecord(
                    account=PEER, device=DEVICE, session_id=b"s", pickle=mid, updated_at=n))
                await tx.add_message(NewMessage(
                    conversation_id="dm", message_id=mid, sender_account=PEER,
                    sender_device=DEVICE, direction=Direction.IN, content_type="text/plain",
                    body=rnd.randbytes(rnd.randrange(10, 6000)), sent_at=n, received_at=n,
                    state=DeliveryState.DELIVERED))
            print(mid.decode(), flush=True)  # the "ack": only after the commit returned
            n += 1

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


async def _run_and_kill(path: Path, run: int, acks: int, stderr_path: Path) -> list[str]:
    """Start a writer, SIGKILL it after ``acks`` acknowledgements, return every ack read."""
    with stderr_path.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", CHILD, str(path), str(run)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
        )
    assert proc.stdout is not None
    output = b""
    try:
        while output.count(b"\n") < acks:
            chunk = await proc.stdout.receive_some()
            if not chunk:
                break
            output += chunk
        proc.kill()
        await proc.wait()
        while chunk := await proc.stdout.receive_some():  # acks printed before the kill
            output += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
        await proc.stdout.aclose()
    assert proc.returncode == -signal.SIGKILL, await trio.Path(stderr_path).read_text()
    lines = output.split(b"\n")
    return [line.decode() for line in lines[:-1]]  # the last piece may be a partial line


async def _check(path: Path, acked: list[str]) -> None:
    async with await SqliteStore.open(path) as store:  # opens cleanly, every time
        conversation = await store.get_conversation("dm")
        if acked:
            assert conversation is not None
        listed = await store.list_messages("dm", limit=100_000) if conversation else []
        messages = sorted(listed, key=lambda m: m.seq)  # listed in time order; stored in seq
        session = await store.get_session(b"\x01" * 32, b"\x02" * 32, b"s")
    stored = [m.message_id.decode() for m in messages]
    assert len(stored) == len(set(stored))
    assert set(acked) <= set(stored), sorted(set(acked) - set(stored))[:5]
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    # The session pickle and the message were one transaction: they moved together.
    if messages:
        assert session is not None
        assert session.pickle == messages[-1].message_id
    else:
        assert session is None
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


async def test_sigkilled_writer_loses_no_acknowledged_message(tmp_path: Path) -> None:
    rnd = random.Random(SEED)
    path = tmp_path / "store.db"
    acked: list[str] = []
    with trio.fail_after(180):
        for run in range(KILLS):
            acks = rnd.choice([0, 1, 2, 5, 10, 20, 40])
            acked += await _run_and_kill(path, run, acks, tmp_path / f"child-{run}.err")
            await _check(path, acked)
    assert len(acked) >= KILLS * 5  # the campaign really wrote, it did not just start
