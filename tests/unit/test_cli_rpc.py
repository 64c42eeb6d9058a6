"""The node-talking commands (contacts, dm, peers, status) against real running nodes.

Two nodes run on the in-memory network in a trio loop in a background thread, each
serving RPC in its home under ``tmp_path``; the commands run in this thread through
CliRunner and reach them over the unix socket, exactly as from a shell. Every wait is
bounded, and the nodes are stopped (and the thread joined) after each test.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from p2pchat.cli import cli
from p2pchat.client import SyncClient
from tests.node.harness import Peer, hub, new_peer, running

LIMIT = 30.0  # seconds any one wait may take


@dataclass
class Nodes:
    tmp: Path
    peers: dict[str, Peer]
    token: trio.lowlevel.TrioToken | None = None
    stop: trio.Event | None = None
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def home(self, name: str) -> Path:
        return self.tmp / name

    def account(self, name: str) -> str:
        return self.peers[name].account.hex()

    def shutdown(self) -> None:
        if self.token is not None and self.stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self.stop.set, trio_token=self.token)


def _serve(nodes: Nodes) -> None:
    async def main() -> None:
        alice, bob = nodes.peers["alice"], nodes.peers["bob"]
        async with (
            hub() as h,
            running(h, alice, nodes.tmp, display_name="Alice"),
            running(h, bob, nodes.tmp, display_name="Bob"),
        ):
            nodes.stop = trio.Event()
            nodes.token = trio.lowlevel.current_trio_token()
            nodes.ready.set()
            await nodes.stop.wait()

    try:
        trio.run(main)
    except BaseException as exc:
        nodes.error = exc
    finally:
        nodes.ready.set()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    state = Nodes(tmp=tmp_path, peers={"alice": new_peer("alice"), "bob": new_peer("bob")})
    thread = threading.Thread(target=_serve, args=(state,), name="test-nodes", daemon=True)
    thread.start()
    try:
        assert state.ready.wait(LIMIT), "the nodes did not start"
        if state.error is not None:
            raise state.error
        yield state
    finally:
        state.shutdown()
        thread.join(LIMIT)
        assert not thread.is_alive(), "the nodes did not stop"
    if state.error is not None:
        raise state.error


def p2p(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def p2p_json(home: Path, *args: str) -> Any:
    result = p2p(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wait_until(check: Callable[[], bool]) -> None:
    """Poll a condition on the nodes (answered over RPC) until it holds, within LIMIT."""
    deadline = time.monotonic() + LIMIT
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_without_a_node_commands_say_how_to_start_one(tmp_path: Path) -> None:
    home = tmp_path / "idle"
    for command in (["status"], ["peers"], ["contacts", "list"], ["dm", "list"]):
        result = p2p(home, *command)
        assert result.exit_code == 9, result.output
        assert f"no node is running in {home}" in result.stderr
        assert "p2pchat node run" in result.stderr
    as_json = p2p(home, "--json", "status")
    assert json.loads(as_json.stdout)["error"]["type"] == "node-not-running"
    assert as_json.exit_code == 9


def test_status_and_peers(nodes: Nodes) -> None:
    status = p2p_json(nodes.home("alice"), "status")
    assert status["peer_id"] == nodes.peers["alice"].peer_id
    assert status["account_key"] == nodes.account("alice")
    assert status["rejected"] == {}
    assert p2p_json(nodes.home("alice"), "peers") == {"connected": [], "nearby": []}
    human = p2p(nodes.home("alice"), "status")
    assert human.exit_code == 0
    assert nodes.peers["alice"].peer_id in human.stdout
    assert "Rejected" in human.stdout
    assert "No peers" in p2p(nodes.home("alice"), "peers").stdout
    token = (nodes.home("alice") / "rpc.token").read_text().strip()
    assert token not in human.output + json.dumps(status)


def test_contacts_add_list_block_by_name(nodes: Nodes) -> None:
    home, bob = nodes.home("alice"), nodes.account("bob")
    added = p2p_json(home, "contacts", "add", bob, "--name", "Bob")
    assert (added["contact"]["account"], added["contact"]["state"]) == (bob, "accepted")
    listed = p2p(home, "contacts", "list")
    assert "Bob" in listed.stdout
    assert bob[:12] + "…" in listed.stdout  # short in tables; in full with --wide
    assert bob in p2p(home, "contacts", "list", "--wide").stdout
    assert p2p_json(home, "contacts", "block", "bob")["contact"]["state"] == "blocked"
    blocked = p2p_json(home, "contacts", "list", "--state", "blocked")["contacts"]
    assert [c["account"] for c in blocked] == [bob]
    assert "unblocked" in p2p(home, "contacts", "unblock", "Bob").stdout

    unknown = p2p(home, "contacts", "block", "carol")
    assert unknown.exit_code == 10
    assert "no contact named 'carol'" in unknown.stderr
    bad = p2p(home, "contacts", "add", "not-a-key")
    assert bad.exit_code == 2
    assert "64 hex digits" in bad.stderr


def test_a_message_travels_from_one_cli_to_the_other(nodes: Nodes) -> None:
    alice_home, bob_home = nodes.home("alice"), nodes.home("bob")
    assert p2p(alice_home, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    sent = p2p_json(alice_home, "dm", "send", "bob", "hello", "bob")["message"]
    assert (sent["text"], sent["state"]) == ("hello bob", "queued")

    def delivered() -> bool:
        messages = p2p_json(alice_home, "dm", "read", "bob")["messages"]
        return [m["state"] for m in messages] == ["delivered"]

    wait_until(delivered)
    mine = p2p(alice_home, "dm", "read", "bob")
    assert "me: hello bob  ✓✓" in mine.stdout

    requests = p2p_json(bob_home, "contacts", "requests")["contacts"]
    assert [c["account"] for c in requests] == [nodes.account("alice")]
    [conversation] = p2p_json(bob_home, "dm", "list")["conversations"]
    assert conversation["unread"] == 1
    theirs = p2p(bob_home, "dm", "read", nodes.account("alice"))
    assert theirs.exit_code == 0
    assert ": hello bob" in theirs.stdout
    assert "me:" not in theirs.stdout
    assert p2p_json(bob_home, "dm", "list")["conversations"][0]["unread"] == 0
    assert p2p(bob_home, "contacts", "accept", nodes.account("alice")).exit_code == 0
    missing = p2p(bob_home, "dm", "read", "f" * 64)
    assert missing.exit_code == 10


def test_dm_read_follow_prints_new_messages(nodes: Nodes) -> None:
    alice_home, bob_home = nodes.home("alice"), nodes.home("bob")
    p2p(alice_home, "contacts", "add", nodes.account("bob"), "--name", "bob")
    p2p(bob_home, "contacts", "add", nodes.account("alice"), "--name", "alice")
    done = threading.Event()

    def keep_sending() -> None:
        # The follower subscribes at some moment we cannot see from here: send until it
        # has printed one new message (and stopped), or give up and interrupt it.
        deadline = time.monotonic() + LIMIT
        with SyncClient.connect(home=alice_home) as client:
            n = 0
            while not done.wait(0.1):
                if time.monotonic() > deadline:
                    _thread.interrupt_main()
                    return
                client.call("dm.send", {"to": "bob", "text": f"ping {n}"}, timeout=LIMIT)
                n += 1

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        result = p2p(bob_home, "dm", "read", "alice", "--follow", "--count", "1", "--json")
    finally:
        done.set()
        sender.join(LIMIT)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"event"')]
    assert len(lines) == 1
    assert lines[0]["event"]["type"] == "dm.received"
    assert lines[0]["event"]["text"].startswith("ping ")
    assert lines[0]["event"]["sender"] == nodes.account("alice")


def test_node_talking_commands_do_not_import_libp2p(nodes: Nodes) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from click.testing import CliRunner
        from p2pchat.cli import cli
        result = CliRunner().invoke(cli, ["--home", {str(nodes.home("alice"))!r}, "status"])
        assert result.exit_code == 0, result.output
        print(sorted(m for m in ("libp2p", "multiaddr") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=LIMIT, check=True
    )
    assert out.stdout.strip() == "[]"
