"""A store that fails (a full disk) does not stop the node's outbox worker.

Found by the testnet (tests/testnet, disk-full): with its home's filesystem full, a node
exited with "store transaction failed: database or disk is full" from its outbox worker,
taking every other task (and its RPC) down with it. The worker now logs the failure and
tries again at its next round; queued messages stay queued, and go once the store works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2pchat.errors import StorageError
from tests.node.harness import hub, new_peer, running, wait_for
from tests.node.test_dm_reconnect_backoff import delivered


async def test_outbox_worker_survives_a_failing_store_and_delivers_afterwards(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a:
        async with running(h, bob, tmp_path):
            first = await a.send_dm(bob.account, "hello")
            await wait_for(lambda: delivered(alice, first.message_id))
        real = alice.store.due_outbox
        failures = 0

        async def full_disk(*args: Any, **kwargs: Any) -> Any:
            nonlocal failures
            failures += 1
            raise StorageError("store transaction failed: database or disk is full")

        monkeypatch.setattr(alice.store, "due_outbox", full_disk)
        sent = await a.send_dm(bob.account, "written while the disk is full")
        await wait_for(lambda: failures >= 3)  # the worker keeps trying, the node lives
        monkeypatch.setattr(alice.store, "due_outbox", real)  # space again
        async with running(h, bob, tmp_path):
            await wait_for(lambda: delivered(alice, sent.message_id))
        assert (await a.statistics())["dm"]["store_failures"] >= 3
