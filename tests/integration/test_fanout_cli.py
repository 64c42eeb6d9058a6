"""Issue 18 with real processes on 127.0.0.1: Alice on two devices and Bob on one exchange
direct messages and posts in a private group; Alice links a third device, which receives
her contacts and groups and, with the laptop's consent, the DM history; then she revokes
her second device, which receives nothing new.
Nodes are ``p2pchat node run`` processes, driven over their RPC (the API the CLI uses);
``dm deliveries`` is run as the CLI. Every process is stopped in a ``finally``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from p2pchat.client import SyncClient
from p2pchat.errors import NotFoundError
from tests.integration.test_cli_node import LIMIT, p2pchat, wait_for_rpc
from tests.integration.test_devices_cli import _read_json, _start, _stop

pytestmark = pytest.mark.integration

LOCAL = ("--port", "0", "--listen", "127.0.0.1", "--no-relay", "--no-relay-service")
FAST = "--insecure-no-passphrase"  # the keystore KDF is not under test here


def call(home: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    with SyncClient.connect(home=home, reconnect_timeout=5.0) as client:
        return client.call(method, params or {}, timeout=LIMIT)


def until(check: Callable[[], bool], what: str, *, within: float = LIMIT) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def texts(home: Path, peer: str) -> list[tuple[str, str]]:
    try:
        history = call(home, "dm.history", {"conversation": peer, "limit": 100})
    except NotFoundError:
        return []  # no conversation yet
    return [(m["direction"], m["text"]) for m in history]


def group_texts(home: Path, group: str) -> list[str]:
    try:
        history = call(home, "groups.history", {"group": group, "limit": 100})
    except NotFoundError:
        return []  # not joined yet
    return [m["text"] for m in history if m.get("text")]


def test_two_accounts_three_devices_fan_out_link_and_revoke(tmp_path: Path) -> None:
    laptop, desktop, phone, bob = (tmp_path / n for n in ("laptop", "desktop", "phone", "bob"))
    processes: list[subprocess.Popen[str]] = []

    def run(home: Path, *extra: str) -> dict[str, Any]:
        process = _start(home, "node", "run", FAST, *LOCAL, "--json", *extra)
        processes.append(process)
        wait_for_rpc(home, process)
        return _read_json(process.stdout)

    def link(home: Path, first: dict[str, Any]) -> dict[str, Any]:
        offer = _start(laptop, "devices", "link", "--yes", "--json")
        processes.append(offer)
        code = _read_json(offer.stdout)["code"]
        info = run(home, "--link", code, "--bootstrap", first["listen_addrs"][0])
        _read_json(offer.stdout)  # the request
        assert _read_json(offer.stdout)["linked"]["refused"] is False
        assert offer.wait(timeout=LIMIT) == 0
        return info

    try:
        first = run(laptop, "--create-identity")
        boot = ("--bootstrap", first["listen_addrs"][0])
        bob_info = run(bob, "--create-identity", *boot)
        alice_key = first["identity"]["account_key"]
        bob_key = bob_info["identity"]["account_key"]
        call(laptop, "contacts.add", {"address": bob_key, "name": "Bob"})
        call(bob, "contacts.add", {"address": alice_key, "name": "Alice"})
        group = call(laptop, "groups.create", {"name": "Flat", "kind": "private"})["group_id"]
        invite = call(laptop, "groups.invite", {"group": group, "account": bob_key})["link"]
        call(bob, "groups.join", {"invite": invite})
        desk = link(desktop, first)
        desk_device = desk["identity"]["device_key"]

        # The desktop came with Bob as a contact and joins the group on its own.
        assert [c["account"] for c in call(desktop, "contacts.list")] == [bob_key]
        until(lambda: any(g["group_id"] == group for g in call(desktop, "groups.list")), "join")

        # DMs: Bob's reaches both of Alice's devices; the laptop's reaches Bob and the desktop.
        call(bob, "dm.send", {"to": "Alice", "text": "hello alice"})
        until(lambda: ("in", "hello alice") in texts(laptop, bob_key), "laptop reads")
        until(lambda: ("in", "hello alice") in texts(desktop, bob_key), "desktop reads")
        call(laptop, "dm.send", {"to": "Bob", "text": "hi bob"})
        until(lambda: ("in", "hi bob") in texts(bob, alice_key), "bob reads")
        until(lambda: ("out", "hi bob") in texts(desktop, bob_key), "the copy")
        shown = p2pchat(laptop, "dm", "deliveries", "Bob", "--json")
        assert shown.returncode == 0, shown.stderr

        def delivered_both() -> bool:
            found = json.loads(p2pchat(laptop, "dm", "deliveries", "Bob", "--json").stdout)
            return found["state"] == "delivered" and [
                (d["own"], d["state"]) for d in sorted(found["devices"], key=lambda d: d["own"])
            ] == [(False, "delivered"), (True, "delivered")]

        until(delivered_both, "delivered on Bob's device and on the desktop")

        # Group posts from every device.
        call(bob, "groups.post", {"group": group, "text": "bob posts"})
        until(lambda: "bob posts" in group_texts(desktop, group), "desktop reads bob")
        call(desktop, "groups.post", {"group": group, "text": "desktop posts"})
        until(lambda: "desktop posts" in group_texts(bob, group), "bob reads desktop")
        until(lambda: "desktop posts" in group_texts(laptop, group), "laptop reads desktop")

        # A third device gets the contacts and the group.
        run_phone = link(phone, first)
        assert run_phone["identity"]["account_key"] == alice_key
        assert [c["account"] for c in call(phone, "contacts.list")] == [bob_key]
        until(lambda: any(g["group_id"] == group for g in call(phone, "groups.list")), "phone")

        # With the laptop's consent, the phone copies the DM history (as the CLI does it).
        allow = _start(laptop, "devices", "history-allow", "--yes")  # as a person sees it
        processes.append(allow)
        laptop_device = first["identity"]["device_key"]
        copied = p2pchat(phone, "devices", "history-sync", laptop_device[:16], "--json")
        assert copied.returncode == 0, copied.stderr
        result = json.loads(copied.stdout)
        assert result["done"]
        assert result["received"] == result["total"] >= 2
        assert allow.wait(timeout=LIMIT) == 0
        said = " ".join((allow.stdout.read() if allow.stdout else "").split())  # unfolded
        assert "asks for your direct-message history (all of it" in said, said
        assert run_phone["identity"]["device_key"][:16] in said, said
        assert "Sending the history" in said, said
        assert {("in", "hello alice"), ("out", "hi bob")} <= set(texts(phone, bob_key))
        assert all(c["unread"] == 0 for c in call(phone, "dm.conversations"))

        # Revoke the desktop: nothing new reaches it.
        revoked = call(laptop, "devices.revoke", {"device": desk_device})
        assert revoked["state"] == "revoked"
        until(lambda: call(bob, "groups.info", {"group": group})["epoch"] >= 1, "new epoch")
        call(bob, "groups.post", {"group": group, "text": "after the revocation"})
        until(lambda: "after the revocation" in group_texts(laptop, group), "laptop reads")
        call(laptop, "dm.send", {"to": "Bob", "text": "a secret after"})
        until(lambda: ("in", "a secret after") in texts(bob, alice_key), "bob reads it")
        until(lambda: ("out", "a secret after") in texts(phone, bob_key), "the phone's copy")
        assert "after the revocation" not in group_texts(desktop, group)
        assert ("out", "a secret after") not in texts(desktop, bob_key)
    finally:
        for process in reversed(processes):
            _stop(process)
