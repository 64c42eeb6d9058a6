"""Attachments between real node processes on 127.0.0.1, driven by the real CLI:
``dm send --file`` on one node, ``files get`` on the other; the bytes arrive intact,
and the receiver's home holds only ciphertext."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from p2pchat.client import SyncClient
from tests.integration.test_cli_node import LIMIT, _start, _stop, p2pchat, wait_for_rpc

pytestmark = pytest.mark.integration


def test_a_file_sent_in_a_dm_is_fetched_and_saved_by_the_cli(tmp_path: Path) -> None:
    alice_home, bob_home = tmp_path / "alice", tmp_path / "bob"
    payload = tmp_path / "report.pdf"
    payload.write_bytes(hashlib.shake_256(b"attachment").digest(8 * 1024 * 1024 + 123))
    # Both start at once (the keystore's Argon2id and libp2p's import dominate), then
    # Bob dials Alice.
    alice, bob = _start(alice_home), _start(bob_home)
    try:
        wait_for_rpc(alice_home, alice)
        wait_for_rpc(bob_home, bob)
        info = json.loads(p2pchat(alice_home, "status", "--json").stdout)
        with SyncClient.connect(home=bob_home, reconnect_timeout=1.0) as client:
            client.call("peers.connect", {"address": info["listen_addrs"][0]}, timeout=LIMIT)
        bob_key = json.loads(p2pchat(bob_home, "status", "--json").stdout)["account_key"]
        added = p2pchat(bob_home, "contacts", "add", info["account_key"], "--name", "alice")
        assert added.returncode == 0, added.stderr
        started = time.monotonic()
        sent = p2pchat(bob_home, "dm", "send", "alice", "the report", "--file", str(payload))
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + LIMIT
        while True:
            read = p2pchat(alice_home, "dm", "read", "--json", bob_key)
            messages = json.loads(read.stdout)["messages"] if read.returncode == 0 else []
            if messages:
                break
            assert time.monotonic() < deadline, read.stderr
            time.sleep(0.2)
        (attached,) = messages[0]["files"]
        assert (attached["name"], attached["size"]) == ("report.pdf", payload.stat().st_size)
        out = tmp_path / "downloads"
        out.mkdir()
        got = p2pchat(alice_home, "files", "get", attached["file_id"][:12], "--out", str(out))
        assert got.returncode == 0, got.stderr
        elapsed = time.monotonic() - started
        saved = out / "report.pdf"
        assert saved.read_bytes() == payload.read_bytes()
        listed = json.loads(p2pchat(alice_home, "files", "list", "--json").stdout)["files"]
        assert [(f["file_id"], f["complete"]) for f in listed] == [(attached["file_id"], True)]
        # Only ciphertext in Alice's blob store.
        for held in (alice_home / "blobs").iterdir():
            if held.suffix == ".dat":
                assert payload.read_bytes()[:65536] not in held.read_bytes()
        assert elapsed < LIMIT
    finally:
        errors = [_stop(alice), _stop(bob)]
    for err in errors:
        assert "Traceback" not in err
