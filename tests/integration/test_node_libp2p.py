"""Real py-libp2p nodes on 127.0.0.1: discovery through the DHT only, E2EE messages both
ways, a node that goes offline and comes back from its SQLite store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nacl.utils
import pytest
import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.events import DeliveryChanged, Event, MessageReceived
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node
from p2pchat.protocol.content import Content

pytestmark = pytest.mark.integration

FAST = DeliveryConfig(retry_initial_ms=200, retry_max_ms=1_000, ack_timeout_ms=3_000)


def identity() -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=nacl.utils.random, now=time.time_ns() // 1_000_000)


def config(home: Path, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap)
    return NodeConfig(home=home, net=net, delivery=FAST, rpc=False)


class Recorder:
    """Collects a node's events and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = trio.Event()

    async def run(self, node: Node) -> None:
        async with node.events() as stream:
            async for event in stream:
                self.events.append(event)
                self._changed.set()
                self._changed = trio.Event()

    async def wait(self, predicate: object) -> Event:
        assert callable(predicate)
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            await self._changed.wait()


@asynccontextmanager
async def started(node: Node) -> AsyncIterator[tuple[Node, Recorder]]:
    recorder = Recorder()
    async with node, trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run, node)
        yield node, recorder
        nursery.cancel_scope.cancel()


def address(node: Node) -> str:
    return f"{node.listen_addrs[0]}/p2p/{node.peer_id}"


def delivered(message_id: bytes) -> object:
    return lambda e: (
        isinstance(e, DeliveryChanged) and (e.message_id == message_id and e.state == "delivered")
    )


async def in_history(node: Node, peer: bytes, texts: set[str]) -> None:
    """Wait until the conversation with ``peer`` holds every one of ``texts`` (stored)."""

    async def stored() -> set[str]:
        history = await node.history(peer, limit=100)
        return {Content.from_bytes(m.body, max_size=1 << 16).text for m in history}

    while not texts <= await stored():  # noqa: ASYNC110 - polls the store, under fail_after
        await trio.sleep(0.05)


def received(text: str) -> object:
    return lambda e: isinstance(e, MessageReceived) and e.text == text


async def test_four_nodes_dht_discovery_offline_delivery_and_restart(tmp_path: Path) -> None:
    ids = {name: identity() for name in "abcd"}
    with trio.fail_after(90):
        async with started(Node(config(tmp_path / "a"), ids["a"])) as (a, _):
            boot = (address(a),)
            async with (
                started(Node(config(tmp_path / "c", boot), ids["c"])) as (c, c_events),
                # D is a bystander: one more DHT server between B and C.
                started(Node(config(tmp_path / "d", boot), ids["d"])),
            ):
                async with started(Node(config(tmp_path / "b", boot), ids["b"])) as (b, b_ev):
                    await b.wait_published()
                    # C knows only B's account key: bundle and address come from the DHT.
                    first = await c.send_dm(b.account_key, "hello B, found you in the DHT")
                    await c_events.wait(delivered(first.message_id))
                    await b_ev.wait(received("hello B, found you in the DHT"))
                    await b.accept_contact(c.account_key)
                    reply = await b.send_dm(c.account_key, "hello C")
                    await b_ev.wait(delivered(reply.message_id))
                    await c_events.wait(received("hello C"))
                # B is offline: C's messages wait in its outbox.
                waiting = [await c.send_dm(b.account_key, f"while away {i}") for i in range(3)]
                stats = await c.statistics()
                assert stats["store"]["outbox"] >= 1
                # B comes back from its SQLite store (same identity, a new port).
                async with started(Node(config(tmp_path / "b", boot), ids["b"])) as (b, b_ev):
                    for message in waiting:
                        await c_events.wait(delivered(message.message_id))
                    # C may deliver while B is still starting, before B's recorder has
                    # subscribed to its events: the store is the source of truth.
                    texts = {f"while away {i}" for i in range(3)}
                    await in_history(b, c.account_key, texts)
                    # The Double Ratchet session survived the restart: no new X3DH.
                    again = await b.send_dm(c.account_key, "back again")
                    await b_ev.wait(delivered(again.message_id))
                    assert (await b.statistics())["store"]["sessions"] == 1
                    history = await b.history(c.account_key, limit=100)
                    assert [m.direction.value for m in history].count("in") == 4
