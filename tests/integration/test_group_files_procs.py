"""Issue 19 with real processes: a 20 MiB file posted to a group of four ``p2pchat node
run`` processes on 127.0.0.1, fetched by the three members from several holders.

The owner posts the file (too large to be fetched without being asked); one member
fetches it (from the owner: the only holder); then the two others fetch it at the same
time, from the owner *and* the first member (and from each other's partial copies).
Every node's serving counters show that more than one holder served chunks, and every
member's copy opens to the same bytes. Bounded: every process is stopped in a
``finally``; every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from p2pchat.cli import cli
from p2pchat.client import SyncClient
from p2pchat.identity import keystore
from p2pchat.protocol.blob import CHUNK_SIZE
from tests.integration.test_cli_node import LIMIT, _start, _stop, env_for, wait_for_rpc
from tests.unit.test_cli_keys import FAST

pytestmark = pytest.mark.integration

SIZE = 20 * 1024 * 1024
CHUNKS = -(-SIZE // CHUNK_SIZE)


def _call(home: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    with SyncClient.connect(home=home, reconnect_timeout=5.0) as client:
        return client.call(method, params or {}, timeout=LIMIT)


def _until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + LIMIT
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _served(home: Path) -> int:
    stats = _call(home, "node.statistics")
    return int(stats["files"]["serving"].get("chunks_served", 0))


def _cheap_identity(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keystore with the smallest Argon2id cost, so that four nodes starting at once
    on two shared cores do not spend their time (and 1 GiB) deriving keys."""
    with monkeypatch.context() as patch:
        patch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)
        made = CliRunner().invoke(cli, ["--home", str(home), "keys", "generate"], env=env_for(home))
    assert made.exit_code == 0, made.output


def test_a_20_mib_group_file_is_fetched_from_several_holders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    homes = [tmp_path / name for name in ("owner", "m1", "m2", "m3")]
    for home in homes:
        _cheap_identity(home, monkeypatch)
    processes: list[subprocess.Popen[str]] = []
    try:
        processes += [_start(home) for home in homes]  # at once: starting is what costs
        for home, process in zip(homes, processes, strict=True):
            wait_for_rpc(home, process)
        print(f"\nstarted: {time.monotonic() - started:.1f} s")
        addrs = [_call(home, "node.info")["listen_addrs"][0] for home in homes]
        # Everyone knows the owner, and the members know each other (as group members
        # who met would).
        for i, home in enumerate(homes[1:], start=1):
            for addr in addrs[:i]:
                _call(home, "peers.connect", {"address": addr})

        group = _call(homes[0], "groups.create", {"name": "photo club"})["group_id"]
        link = _call(homes[0], "groups.invite", {"group": group, "uses": 3})["link"]
        for home in homes[1:]:
            _call(home, "groups.join", {"invite": link})
        _until(
            "the members to join",
            lambda: _call(homes[0], "groups.info", {"group": group})["members"] == 4,
        )

        print(f"joined: {time.monotonic() - started:.1f} s")
        payload = tmp_path / "panorama.tif"
        payload.write_bytes(hashlib.shake_256(b"a big picture").digest(SIZE))
        added = _call(homes[0], "files.add", {"path": str(payload)})
        file_id = added["file_id"]
        _call(homes[0], "groups.post", {"group": group, "text": "the view", "files": [file_id]})
        for home in homes[1:]:
            _until(
                "the post to arrive",
                lambda home=home: any(f["file_id"] == file_id for f in _call(home, "files.list")),
            )
        assert not _call(homes[1], "files.info", {"file": file_id})["complete"]  # not auto

        print(f"posted: {time.monotonic() - started:.1f} s")
        # One member first: the owner is the only holder.
        _call(homes[1], "files.fetch", {"file": file_id})
        owner_first = _served(homes[0])
        assert owner_first == CHUNKS

        print(f"first fetch: {time.monotonic() - started:.1f} s")
        # Two members at once: the owner and the first member both serve.
        failures: list[BaseException] = []

        def fetch(home: Path) -> None:
            try:
                _call(home, "files.fetch", {"file": file_id})
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=fetch, args=(home,)) for home in homes[2:]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(LIMIT)
        assert not failures, failures
        assert not any(thread.is_alive() for thread in threads)

        print(f"fetches: {time.monotonic() - started:.1f} s")
        served = [_served(home) for home in homes]
        holders = [i for i, count in enumerate(served) if count > 0]
        assert len(holders) >= 2, served
        assert served[1] > 0, served  # the first member served the later ones
        assert sum(served) == 3 * CHUNKS, served  # each chunk once per member

        outs = [tmp_path / f"{home.name}-out" for home in homes[1:]]
        threads = []
        for home, out in zip(homes[1:], outs, strict=True):
            out.mkdir()
            get = {"file": file_id, "out": str(out)}
            threads.append(threading.Thread(target=_call, args=(home, "files.get", get)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(LIMIT)
        for out in outs:
            assert hashlib.sha256((out / payload.name).read_bytes()).digest() == (
                hashlib.sha256(payload.read_bytes()).digest()
            )
    finally:
        errors = [_stop(process) for process in processes]
    for err in errors:
        assert "Traceback" not in err, err
    elapsed = time.monotonic() - started
    print(f"4 nodes, 20 MiB to 3 members: {elapsed:.1f} s; chunks served per node: {served}")
