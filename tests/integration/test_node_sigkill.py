"""A receiving node SIGKILLed again and again while direct messages stream in.

The receiver is a real :class:`~p2pchat.node.Node` in a child process
(``_sigkill_receiver.py``): libp2p on a fixed 127.0.0.1 port chosen here, so its
address survives restarts; its SQLite store and unprotected identity in a tmp home.
The sender is a node in this process that keeps ``WINDOW`` messages in flight
(a new one whenever one is acknowledged) and records every ``delivered`` event: the
signed ``dm.ack`` arrived, so the receiver claimed the message durable.

``KILLS`` times, at a seeded random point (after 0 to 13 further acks, plus up to
30 ms, so sometimes while the node is still starting and often between a commit and
its ack), the receiver gets SIGKILL. After each kill the parent opens the receiver's
store itself: it must open, pass ``integrity_check`` and hold every acknowledged
message exactly once and nothing that was never sent. A last receiver then drains
the sender's outbox (the sender kept retrying the same ciphertext through every
restart, and the Double Ratchet session survived them), and every message sent is
there exactly once.

Each start pays ``import libp2p`` (~1 s); the next child is spawned while the current
one runs and waits for ``go`` on stdin, which hides most of that cost.
"""

from __future__ import annotations

import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nacl.utils
import pytest
import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.dm.service import dm_conversation_id
from p2pchat.events import DeliveryChanged
from p2pchat.identity.keystore import UNPROTECTED, UnlockedIdentity
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.config import NetConfig, RetryConfig
from p2pchat.node import Node
from p2pchat.storage import SqliteStore
from p2pchat.storage.records import Direction

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KILLS = 22
SEED = 20261129
#: Messages the sender keeps queued but not yet acknowledged.
WINDOW = 12
#: Acks to wait for (after a start) before the kill: 0 kills while the node starts.
ACKS_BEFORE_KILL = (0, 1, 1, 2, 3, 5, 8)
STEP_TIMEOUT = 30.0

SENDER_DELIVERY = DeliveryConfig(retry_initial_ms=100, retry_max_ms=500, ack_timeout_ms=2_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sender_config(home: Path) -> NodeConfig:
    net = NetConfig(
        listen_hosts=("127.0.0.1",),
        port=0,
        dial_timeout=2.0,
        dht_retry=RetryConfig(attempt_timeout=1.0, attempts=1),
    )
    return NodeConfig(home=home, net=net, delivery=SENDER_DELIVERY, rpc=False)


class Acks:
    """What the sender sent and which of it was acknowledged (``delivered`` events)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.acked: set[bytes] = set()
        self.stream_done = trio.Event()
        self._stopped = False
        self._changed = trio.Event()

    @property
    def outstanding(self) -> int:
        return len(self.sent) - len(self.acked)

    async def record(self, sender: Node, task_status: trio.TaskStatus[None]) -> None:
        async with sender.events() as stream:
            task_status.started()
            async for event in stream:
                if isinstance(event, DeliveryChanged) and event.state == "delivered":
                    self.acked.add(event.message_id)
                    self._changed.set()
                    self._changed = trio.Event()

    async def wait(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def stream(self, sender: Node, account: bytes) -> None:
        """Keep ``WINDOW`` messages in flight until :meth:`stop` (never cancelled halfway
        through ``send_dm``, so every message queued is in ``sent``)."""
        while True:
            await self.wait(lambda: self._stopped or self.outstanding < WINDOW)
            if self._stopped:
                self.stream_done.set()
                return
            message = await sender.send_dm(account, f"message {len(self.sent)}")
            self.sent.append(message.message_id)

    def stop(self) -> None:
        self._stopped = True
        self._changed.set()
        self._changed = trio.Event()

    @property
    def all_acked(self) -> bool:
        return set(self.sent) <= self.acked


class Receiver:
    """One receiver child process and its stdout lines."""

    def __init__(self, process: trio.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self._buffer = b""

    @classmethod
    async def spawn(cls, args: list[str], stderr: Path) -> Receiver:
        with stderr.open("wb") as err:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tests.integration._sigkill_receiver", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
            )
        return cls(process, stderr)

    async def line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"receiver exited early:\n{self.stderr.read_text()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def start(self) -> int:
        """Let a ``ready`` child open its node; returns the messages its store held."""
        assert self.process.stdin is not None
        assert await self.line() == "ready"
        await self.process.stdin.send_all(b"go\n")
        word, count = (await self.line()).split()
        assert word == "opened"
        return int(count)

    async def sigkill(self) -> None:
        self.process.kill()
        await self.process.wait()
        assert self.process.returncode == -signal.SIGKILL, self.stderr.read_text()

    async def aclose(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        with trio.CancelScope(shield=True):
            await self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    await pipe.aclose()


async def check_store(
    path: Path, sender: bytes, acks: Acks, seal_key: bytes, *, all_sent: bool = False
) -> int:
    """Open the dead receiver's store as the next start would; returns its message count."""
    async with await SqliteStore.open(path, seal_key=seal_key) as store:
        conversation = dm_conversation_id(sender)
        found = await store.get_conversation(conversation) is not None
        messages = await store.list_messages(conversation, limit=1_000_000) if found else []
    assert all(m.direction is Direction.IN for m in messages)
    counts = Counter(m.message_id for m in messages)
    duplicated = [mid.hex() for mid, n in counts.items() if n > 1]
    assert not duplicated, f"stored twice: {duplicated}"
    lost = acks.acked - set(counts)
    assert not lost, f"acknowledged but not stored: {sorted(m.hex() for m in lost)}"
    assert set(counts) <= set(acks.sent), "a message nobody sent"
    if all_sent:
        assert set(counts) == set(acks.sent)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    return len(messages)


async def test_receiver_sigkilled_mid_stream_keeps_every_acked_message_once(
    tmp_path: Path,
) -> None:
    rnd = random.Random(SEED)
    now = time.time_ns() // 1_000_000
    receiver_identity = UnlockedIdentity.generate(rng=nacl.utils.random, now=now)
    keystore = tmp_path / "receiver.keystore"
    keystore.write_bytes(receiver_identity.lock(UNPROTECTED, rng=nacl.utils.random))
    home = tmp_path / "receiver"
    port = free_port()
    receiver_peer = peer_id_from_ed25519(receiver_identity.device.public_key)
    receiver_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{receiver_peer}"
    acks = Acks()
    children: list[Receiver] = []
    opens = 0
    stored = 0  # messages in the receiver's store after the last kill
    commits_unacked = 0  # kills that left a stored message whose ack was not seen
    sender = Node(sender_config(tmp_path / "sender"), UnlockedIdentity.generate(
        rng=nacl.utils.random, now=now))  # fmt: skip
    try:
        with trio.fail_after(240):
            async with sender, trio.open_nursery() as nursery:
                bootstrap = f"{sender.listen_addrs[0]}/p2p/{sender.peer_id}"
                args = [str(home), str(keystore), str(port), bootstrap]

                async def spawn(run: int) -> Receiver:
                    child = await Receiver.spawn(args, tmp_path / f"receiver-{run}.err")
                    children.append(child)
                    return child

                await nursery.start(acks.record, sender)
                following = await spawn(0)
                for run in range(KILLS):
                    child = following
                    with trio.fail_after(STEP_TIMEOUT):
                        held = await child.start()
                    opens += 1
                    # It opened the store we checked; it may already have taken more,
                    # since a node accepts messages as soon as it is listening.
                    assert held >= stored
                    following = await spawn(run + 1)  # imports while this one receives
                    if run == 0:
                        # The outbox falls back to this address while the receiver is down.
                        await sender.connect(receiver_addr)
                        nursery.start_soon(
                            acks.stream, sender, receiver_identity.account.account_key
                        )
                    target = len(acks.acked) + rnd.choice(ACKS_BEFORE_KILL)
                    with trio.fail_after(STEP_TIMEOUT):
                        await acks.wait(lambda: len(acks.acked) >= target)  # noqa: B023
                    # Not a wait for a condition: a random kill point between frames.
                    await trio.sleep(rnd.uniform(0, 0.06))
                    await child.sigkill()
                    stored = await check_store(
                        home / "store.sqlite3",
                        sender.account_key,
                        acks,
                        receiver_identity.local_key,
                    )
                    # More stored than acked: killed between a commit and its ack (or the
                    # ack was still on its way); that message must not arrive twice.
                    commits_unacked += stored > len(acks.acked)
                    print(f"kill {run}: held {held}, acked {len(acks.acked)}, stored {stored}")

                # The last receiver drains the outbox: the sender never gave up.
                acks.stop()
                await acks.stream_done.wait()
                with trio.fail_after(STEP_TIMEOUT):
                    assert await following.start() >= stored
                    opens += 1
                    await acks.wait(lambda: acks.all_acked)
                await following.sigkill()
                stored = await check_store(
                    home / "store.sqlite3",
                    sender.account_key,
                    acks,
                    receiver_identity.local_key,
                    all_sent=True,
                )
                nursery.cancel_scope.cancel()
    finally:
        for child in children:
            await child.aclose()
    print(f"{KILLS} kills, {len(acks.sent)} messages, {commits_unacked} kills after a commit")
    assert opens == KILLS + 1  # every start opened its store
    # The campaign really streamed: more than a message per restart on average.
    assert stored == len(acks.sent) > KILLS


async def test_a_fixed_port_with_only_time_wait_connections_can_be_listened_on() -> None:
    """A node that stopped or crashed leaves TIME_WAIT connections on its port: its
    restart on the same port must not be refused as "another node running"."""
    from p2pchat.net.libp2p_host import open_libp2p_network

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the listening side closes first: TIME_WAIT on ``port``
        assert client.recv(1) == b""
        client.close()
    config = NetConfig(listen_hosts=("127.0.0.1",), port=port)
    with trio.fail_after(30):
        async with open_libp2p_network(bytes(32), config, jitter=random.Random(0)) as net:
            assert any(f"/tcp/{port}" in addr for addr in net.listen_addrs)
