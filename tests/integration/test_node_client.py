"""The Node.js client (``clients/node``) against real nodes, driven from Node.js.

Installs the client's one dependency from the committed lockfile (``npm ci``; skipped
when ``node_modules`` already matches the lockfile), runs its ``node --test`` unit tests,
then starts two nodes (one in-memory network, real RPC servers, in a trio thread) and
uses the example app ``example/chat.mjs``: ``info`` and ``send`` on Alice's node, and
``listen`` on Bob's, which must print the DM from its event subscription; and for groups,
``groups join`` with an invite link on Bob's node, ``groups listen`` there, and
``groups post`` on Alice's, so a program not written in Python joins a group and
receives its messages.

Node.js and npm are required: without them, or without the npm registry, these tests
fail loudly rather than skip (CI has both).
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchat.aio import TrioThread, start_trio_thread
from p2pchat.client import SyncClient
from tests.integration.test_asyncio_client import LIMIT, TwoNodes, two_nodes
from tests.integration.test_rpc_fakes import Running, running

pytestmark = pytest.mark.integration

__all__ = ["two_nodes"]  # the fixture, re-used from the asyncio tests

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
STAMP = CLIENT / "node_modules" / ".p2pchat-lock-sha256"
STEP = 30.0  # seconds: bounds each Node.js process


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required for the Node.js client tests (Node.js 20+ and npm)")
    return path


def _lock_digest() -> str:
    return hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``clients/node`` with its dependencies installed exactly as the lockfile says."""
    node = _tool("node")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=STEP, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"the Node.js client needs Node.js 20 or later, found {version}")
    digest = _lock_digest()
    if not (STAMP.exists() and STAMP.read_text().strip() == digest):
        done = subprocess.run(
            [_tool("npm"), "ci", "--no-audit", "--no-fund"],
            cwd=CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed (is the npm registry reachable?):\n{done.stderr[-4000:]}")
        STAMP.write_text(digest + "\n")
    return CLIENT


def _node(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("node"), *args], cwd=cwd, capture_output=True, text=True, timeout=STEP, check=False
    )


def test_node_unit_tests_pass(node_client: Path) -> None:
    """``node --test``: framing, the strict msgpack profile, and the client on a fake node."""
    done = _node("--test", "test/", cwd=node_client)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "# fail 0" in done.stdout


class _Lines:
    """Read lines from a child's pipe with a deadline (no thread, no sleep)."""

    def __init__(self, stream: object) -> None:
        self._fd = stream.fileno()  # type: ignore[attr-defined]
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def wait_for(self, needle: str, *, within: float) -> list[str]:
        """Lines read until one contains ``needle``; fails after ``within`` seconds."""
        deadline = time.monotonic() + within
        lines: list[str] = []
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                lines.append(line.decode())
                if needle in lines[-1]:
                    return lines
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                pytest.fail(f"no line with {needle!r} within {within} s; got {lines}")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                pytest.fail(f"stream ended before a line with {needle!r}; got {lines}")
            self._buffer += chunk


@pytest.fixture
def listener(node_client: Path, two_nodes: TrioThread[TwoNodes]) -> Iterator[subprocess.Popen[str]]:
    """``chat.mjs listen`` on Bob's node, subscribed (its ready line was seen)."""
    proc = subprocess.Popen(
        [
            _tool("node"),
            "example/chat.mjs",
            "--home",
            str(two_nodes.value.bob_home),
            "listen",
            "--count",
            "1",
            "--json",
        ],
        cwd=node_client,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _Lines(proc.stderr).wait_for("listening for messages", within=STEP)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=STEP)


def test_nodejs_app_sends_a_dm_and_the_recipient_prints_it(
    node_client: Path, two_nodes: TrioThread[TwoNodes], listener: subprocess.Popen[str]
) -> None:
    alice_home = str(two_nodes.value.alice_home)
    alice_account = two_nodes.value.alice.account_key.hex()
    bob_account = two_nodes.value.bob.account_key.hex()

    info = _node("example/chat.mjs", "--home", alice_home, "info", cwd=node_client)
    assert info.returncode == 0, info.stderr
    assert f"account     {alice_account}" in info.stdout.splitlines()

    sent = _node(
        "example/chat.mjs", "--home", alice_home, "send", bob_account, "hello", "from", "node",
        cwd=node_client,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("queued ")

    out, err = listener.communicate(timeout=LIMIT)
    assert listener.returncode == 0, err
    [line] = out.splitlines()
    event = json.loads(line)
    assert (event["type"], event["text"], event["author"]) == (
        "dm.received",
        "hello from node",
        alice_account,
    )
    assert event["sender"] == event["author"]  # the older name, deprecated (rpc.md)
    assert event["message_id"] == sent.stdout.split()[1]
    assert event["cursor"] >= 1


def test_nodejs_errors_carry_the_nodes_code(
    node_client: Path, two_nodes: TrioThread[TwoNodes]
) -> None:
    """An unknown contact name is the node's 1001 not-found, printed by the example."""
    done = _node(
        "example/chat.mjs", "--home", str(two_nodes.value.alice_home), "send", "nobody", "hi",
        cwd=node_client,
    )  # fmt: skip
    assert done.returncode == 1
    assert "error 1001 (not-found)" in done.stderr


def test_nodejs_app_joins_a_group_and_receives_its_messages(
    node_client: Path, two_nodes: TrioThread[TwoNodes]
) -> None:
    """Alice (Python) creates a group and an invite; Bob's Node.js app joins with the
    link and listens; Alice's Node.js app posts; Bob's prints the ``group.message``."""
    alice_home, bob_home = str(two_nodes.value.alice_home), str(two_nodes.value.bob_home)
    with SyncClient.connect(home=two_nodes.value.alice_home) as alice:
        group = alice.call("groups.create", {"name": "Node fans"}, timeout=LIMIT)["group_id"]
        link = alice.call("groups.invite", {"group": group}, timeout=LIMIT)["link"]

    joined = _node("example/chat.mjs", "--home", bob_home, "groups", "join", link, cwd=node_client)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split()[:2] == ["joined", group]

    proc = subprocess.Popen(
        [_tool("node"), "example/chat.mjs", "--home", bob_home, "groups", "listen", "--count", "1",
         "--json"],
        cwd=node_client, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _Lines(proc.stderr).wait_for("listening for messages", within=STEP)
        posted = _node(
            "example/chat.mjs", "--home", alice_home, "groups", "post", "node FANS", "hi", "bob",
            cwd=node_client,
        )  # fmt: skip
        assert posted.returncode == 0, posted.stderr
        out, err = proc.communicate(timeout=STEP)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=STEP)
    assert proc.returncode == 0, err
    [line] = out.splitlines()
    event = json.loads(line)
    assert (event["type"], event["group_id"], event["text"], event["kind"]) == (
        "group.message",
        group,
        "hi bob",
        "post",
    )
    assert event["author"] == two_nodes.value.alice.account_key.hex()
    assert event["event_id"] == posted.stdout.split()[1]


def _dm(server: TrioThread[Running], text: str) -> None:
    event = {"type": "dm.received", "author": "ab" * 32, "text": text}
    server.run_sync(server.value.server.publish, event)


def test_nodejs_subscription_survives_a_node_restart(node_client: Path, tmp_path: Path) -> None:
    """The real RPC server stops and a new run starts on the same home: the Node.js
    client reconnects by itself, is told it may have missed events (new epoch), and
    gets the new run's events, replayed and live."""
    home = tmp_path / "h"
    first = start_trio_thread(lambda: running(home), ready_timeout=LIMIT)
    proc = subprocess.Popen(
        [
            _tool("node"),
            "example/chat.mjs",
            "--home",
            str(home),
            "listen",
            "--json",
            "--count",
            "3",
        ],
        cwd=node_client,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second: TrioThread[Running] | None = None
    try:
        stderr, stdout = _Lines(proc.stderr), _Lines(proc.stdout)
        stderr.wait_for("listening for messages", within=STEP)
        _dm(first, "one")
        stdout.wait_for('"text":"one"', within=STEP)
        first.stop(timeout=LIMIT)
        second = start_trio_thread(lambda: running(home), ready_timeout=LIMIT)
        _dm(second, "two")  # published before the client is back: replayed from the log
        stderr.wait_for("may have been missed", within=STEP)
        stdout.wait_for('"text":"two"', within=STEP)
        _dm(second, "three")
        stdout.wait_for('"text":"three"', within=STEP)
        assert proc.wait(timeout=STEP) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=STEP)
        first.stop(timeout=LIMIT)
        if second is not None:
            second.stop(timeout=LIMIT)
