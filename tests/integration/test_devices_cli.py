"""Issue 18 with real processes on 127.0.0.1: ``devices link`` on a running node, ``devices
join CODE`` on a new home, then a plain ``node run`` there (no ``--bootstrap``: the join saved
the linking device as the home's bootstrap); the new device lists both, joins the group
synced to it and, linked with ``--history all``, asks for the DM history (the first agrees),
then the first revokes it and it learns that from the DHT (what a revoked
device may still do is tested on the memory network, tests/node/test_devices_memory.py).
Every process is stopped in a ``finally``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from tests.integration.test_cli_node import LIMIT, env_for, p2pchat, wait_for_rpc

pytestmark = pytest.mark.integration


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p2pchat.cli", *args],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_json(stream: IO[str] | None) -> dict[str, Any]:
    """One pretty-printed JSON object from a process's stdout (blocking, bounded by the
    process's own timeouts: the link command gives up after 5 minutes)."""
    assert stream is not None
    lines = []
    while True:
        line = stream.readline()
        assert line, "the process ended before printing its JSON"
        lines.append(line)
        if line.rstrip() == "}":
            return dict(json.loads("".join(lines)))


def _devices(home: Path) -> list[tuple[str, bool]]:
    done = p2pchat(home, "devices", "list", "--json")
    assert done.returncode == 0, done.stderr
    return [(d["state"], d["this_device"]) for d in json.loads(done.stdout)["devices"]]


def _groups(home: Path) -> list[str]:
    done = p2pchat(home, "groups", "list", "--json")
    assert done.returncode == 0, done.stderr
    return [g["group_id"] for g in json.loads(done.stdout)["groups"]]


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def test_link_a_second_device_with_two_processes_then_revoke_it(tmp_path: Path) -> None:
    first, second = tmp_path / "laptop", tmp_path / "desktop"
    local = ("--port", "0", "--listen", "127.0.0.1", "--no-relay", "--no-relay-service")
    fast = "--insecure-no-passphrase"  # the keystore KDF is not under test here
    processes = [_start(first, "node", "run", "--create-identity", fast, *local, "--json")]
    try:
        wait_for_rpc(first, processes[0])
        started = _read_json(processes[0].stdout)
        link = _start(first, "devices", "link", "--yes", "--json")
        processes.append(link)
        code = _read_json(link.stdout)["code"]
        assert code.startswith("p2pchat-link:")

        group = p2pchat(first, "groups", "create", "Flat", "--private", "--json")
        assert group.returncode == 0, group.stderr
        group_id = json.loads(group.stdout)["group"]["group_id"]

        # `devices join` links the new home and saves the laptop as its bootstrap, so a
        # plain `node run` (no --bootstrap) enters the DHT and joins the group through it.
        # --history: once it runs, the desktop asks the laptop for the DM history.
        name = ("--name", "desktop")
        join = p2pchat(second, "devices", "join", code, *name, fast, "--history", "all", "--json")
        assert join.returncode == 0, join.stderr
        assert json.loads(join.stdout)["history_since"] == 0
        joined = _start(second, "node", "run", *local, "--json")
        processes.append(joined)
        wait_for_rpc(second, joined)
        request = _read_json(link.stdout)["request"]
        linked = _read_json(link.stdout)["linked"]
        assert linked["refused"] is False
        assert linked["device"] == request["device"]
        assert link.wait(timeout=LIMIT) == 0
        info = _read_json(joined.stdout)
        assert info["identity"]["account_key"] == started["identity"]["account_key"]
        assert info["identity"]["device_key"] == request["device"]
        # The laptop's user agrees to the history the desktop asked for on its own.
        allow = p2pchat(first, "devices", "history-allow", "--yes", "--json")
        assert allow.returncode == 0, allow.stderr
        answer = json.loads(allow.stdout)
        assert (answer["device"], answer["since"], answer["accepted"]) == (
            request["device"],
            0,
            True,
        )

        assert sorted(_devices(second)) == [("current", False), ("current", True)]
        _until(lambda: group_id in _groups(second), "the desktop joins the synced group")

        revoked = p2pchat(first, "devices", "revoke", request["device"][:8], "--yes", "--json")
        assert revoked.returncode == 0, revoked.stderr
        assert json.loads(revoked.stdout)["device"]["state"] == "revoked"
        # The revoked device learns it from the account's list in the DHT.
        assert sorted(_devices(second)) == [("current", False), ("revoked", True)]
    finally:
        for process in reversed(processes):
            _stop(process)
