"""Issue 16 item 3: a node whose home is deleted while it runs stops acknowledging
messages (the sender never sees "delivered" for what the store lost), says so, and
shuts down by itself."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import trio

from p2pchat.config import NodeConfig
from p2pchat.errors import StorageError
from p2pchat.events import DeliveryChanged, Event
from p2pchat.node import Node
from p2pchat.storage.records import DeliveryState
from tests.conftest import DeterministicRng
from tests.node.harness import FAST, hub, memory_opener, mock_clock_ms, new_peer, running, wait_for


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _delivered(events: list[Event], message_id: bytes) -> bool:
    return any(
        isinstance(e, DeliveryChanged) and e.message_id == message_id and e.state == "delivered"
        for e in events
    )


async def test_deleted_home_stops_receipts_and_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    bob_home = tmp_path / "bob-home"
    async with hub() as h, running(h, alice, tmp_path) as a:
        bob_node = Node(
            NodeConfig(home=bob_home, delivery=FAST, home_check_ms=1_000),
            bob.identity,
            network=memory_opener(h),  # bob's store: the real SQLite file in his home
            clock=mock_clock_ms,
            rng=DeterministicRng("bob-node"),
            seed=1,
        )
        sent: list[bytes] = []

        async def bob_runs_until_his_home_goes() -> None:
            async with bob_node as b:
                await b.wait_published()
                await b.add_contact(alice.account.hex(), name="alice")
                await a.add_contact(bob.account.hex(), name="bob")
                before = await a.send_dm(bob.account, "before")
                await wait_for(lambda: _delivered(alice.events, before.message_id))
                shutil.rmtree(bob_home)
                sent.append((await a.send_dm(bob.account, "after the home went")).message_id)
                with trio.fail_after(30):
                    await trio.sleep_forever()  # bob's node ends this block by itself

        errors: list[BaseException] = []
        with caplog.at_level(logging.CRITICAL, logger="p2pchat.node.health"):
            try:
                await bob_runs_until_his_home_goes()
            except BaseException as exc:  # the leaves are checked below
                errors = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled)]
        assert errors
        assert all(isinstance(e, StorageError) for e in errors), errors
        assert "deleted" in str(errors[0]) or "gone" in str(errors[0])
        assert any("stopping the node" in r.getMessage() for r in caplog.records)
        # whatever reached bob after the deletion was never acknowledged
        assert not _delivered(alice.events, sent[0])
        (msg,) = [m for m in await a.history(bob.account) if m.message_id == sent[0]]
        assert msg.state is not DeliveryState.DELIVERED
