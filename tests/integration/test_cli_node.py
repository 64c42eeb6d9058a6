"""``p2pchat node run`` as a real process on 127.0.0.1, driven by the real CLI.

The node gets a fresh home and ``--port 0``; the test waits until its RPC answers
(bounded), checks ``p2pchat status --json`` against what the node printed, then stops
it with SIGTERM and expects exit status 0 and the socket gone. The process is killed in
a ``finally`` whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pchat.client import SyncClient
from p2pchat.errors import P2PChatError

pytestmark = pytest.mark.integration

LIMIT = 60.0  # seconds: the first start derives the keystore key (Argon2id) and loads libp2p


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "P2PCHAT_HOME": str(home), "P2PCHAT_PASSPHRASE": "integration pass"}


def p2pchat(home: Path, *args: str, timeout: float = LIMIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pchat.cli", *args],
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_rpc(home: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + LIMIT
    while True:
        assert process.poll() is None, "the node exited before serving RPC"
        if (home / "rpc.sock").exists():
            try:
                with SyncClient.connect(home=home, reconnect_timeout=1.0) as client:
                    client.call("rpc.ping", timeout=5.0)
                return
            except P2PChatError:
                pass  # the socket is bound a moment before the token check passes
        assert time.monotonic() < deadline, "the node's RPC did not answer in time"
        time.sleep(0.1)


def test_node_run_serves_status_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    args = ["node", "run", "--create-identity", "--port", "0", "--listen", "127.0.0.1", "--json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "p2pchat.cli", *args],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_rpc(home, process)
        status = p2pchat(home, "status", "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["peer_id"].startswith("12D3KooW")
        assert all(a.startswith("/ip4/127.0.0.1/tcp/") for a in info["listen_addrs"])
        assert info["listen_addrs"]
        assert not any(a.startswith("/ip4/127.0.0.1/tcp/0/") for a in info["listen_addrs"])

        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=LIMIT)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=LIMIT)
    started = json.loads(out)
    assert started["identity"]["peer_id"] == info["peer_id"]
    assert started["identity"]["account_key"] == info["account_key"]
    assert started["listen_addrs"] == info["listen_addrs"]
    assert started["rpc"]["socket"] == str(home / "rpc.sock")
    assert not (home / "rpc.sock").exists()
    assert "SIGTERM received: stopping" in err
    assert "node stopped" in err
    assert "Traceback" not in err

    after = p2pchat(home, "status")
    assert after.returncode == 9
    assert "no node is running" in after.stderr


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p2pchat.cli", "node", "run", "--create-identity",
         "--listen", "127.0.0.1", "--port", "0", *args],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=LIMIT)
    return err


def _a_file_goes_from_bob_to_alice(tmp: Path, alice_home: Path, bob_home: Path) -> None:
    """Issue 19 on the same two processes (starting nodes is what costs): ``dm send
    --file`` on Bob's node, ``files get`` on Alice's; the bytes arrive intact and Alice's
    blob store holds only ciphertext."""
    payload = tmp / "report.pdf"
    payload.write_bytes(hashlib.shake_256(b"attachment").digest(8 * 1024 * 1024 + 123))
    sent = p2pchat(bob_home, "dm", "send", "alice", "the report", "--file", str(payload))
    assert sent.returncode == 0, sent.stderr
    bob_key = json.loads(p2pchat(bob_home, "status", "--json").stdout)["account_key"]
    deadline = time.monotonic() + LIMIT
    while True:
        read = json.loads(p2pchat(alice_home, "dm", "read", bob_key, "--json").stdout)
        files = [f for m in read["messages"] for f in m["files"]]
        if files:
            break
        assert time.monotonic() < deadline, read
        time.sleep(0.3)
    (attached,) = files
    assert (attached["name"], attached["size"]) == ("report.pdf", payload.stat().st_size)
    out = tmp / "downloads"
    out.mkdir()
    got = p2pchat(alice_home, "files", "get", attached["file_id"][:12], "--out", str(out))
    assert got.returncode == 0, got.stderr
    assert (out / "report.pdf").read_bytes() == payload.read_bytes()
    for held in (alice_home / "blobs").glob("*.dat"):
        assert payload.read_bytes()[:65536] not in held.read_bytes()


def test_issue16_item20_the_node_terminal_is_quiet_and_says_what_happens(tmp_path: Path) -> None:
    """Two real nodes: Bob writes to Alice. Alice's terminal shows one line for the
    message (and Bob's for the receipt), and nothing of py-libp2p's chatter. Then Bob
    sends a file (issue 19: :func:`_a_file_goes_from_bob_to_alice`)."""
    alice_home, bob_home = tmp_path / "alice", tmp_path / "bob"
    alice = _start(alice_home)
    bob: subprocess.Popen[str] | None = None
    errors: dict[str, str] = {}
    try:
        wait_for_rpc(alice_home, alice)
        info = json.loads(p2pchat(alice_home, "status", "--json").stdout)
        bob = _start(bob_home, "--bootstrap", info["listen_addrs"][0])
        wait_for_rpc(bob_home, bob)
        added = p2pchat(bob_home, "contacts", "add", info["account_key"], "--name", "alice")
        assert added.returncode == 0, added.stderr
        sent = p2pchat(bob_home, "dm", "send", "alice", "hi Alice, it's Bob")
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + LIMIT
        while True:
            read = json.loads(p2pchat(bob_home, "dm", "read", "alice", "--json").stdout)
            if [m["state"] for m in read["messages"]] == ["delivered"]:
                break
            assert time.monotonic() < deadline, read
            time.sleep(0.3)
        _a_file_goes_from_bob_to_alice(tmp_path, alice_home, bob_home)
    finally:
        errors["alice"] = _stop(alice)
        if bob is not None:
            errors["bob"] = _stop(bob)
    for who, err in errors.items():
        lines = err.splitlines()
        assert all(" p2pchat." in line for line in lines if line.strip()), (who, err)
        assert "auto_connector" not in err
        assert "Failed to read DHT message" not in err
    assert "message from " in errors["alice"]
    assert "18 characters (a contact request" in errors["alice"]
    assert "delivered ✓✓" in errors["bob"]
