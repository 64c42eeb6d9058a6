"""An asyncio program drives real nodes over their RPC sockets (nodes in a trio thread).

Two nodes share one in-memory network inside one trio thread (``start_trio_thread``, the
general form of ``run_node_in_thread``); each serves its real RPC server in its home.
One more test runs ``run_node_in_thread`` itself with the real libp2p host on 127.0.0.1.
Every test is a sync function around ``asyncio.run``, bounded in time.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pchat.aio import AsyncioClient, Event, TrioThread, run_node_in_thread, start_trio_thread
from p2pchat.api.serve import serve_node
from p2pchat.config import NodeConfig
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.config import NetConfig
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node, wall_clock_ms
from p2pchat.storage.memory import MemoryStore
from tests.conftest import DeterministicRng
from tests.node.harness import FAST, hub, memory_opener

pytestmark = pytest.mark.integration

LIMIT = 60.0  # seconds: bounds starting nodes and every asyncio test body


@dataclass(frozen=True)
class TwoNodes:
    alice: Node
    bob: Node
    alice_home: Path
    bob_home: Path
    #: Their memory network (e.g. ``announce_nearby`` for mDNS), used in its trio thread.
    network_hub: MemoryHub | None = None


def identity(name: str) -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=DeterministicRng(name), now=wall_clock_ms())


@asynccontextmanager
async def open_two_nodes(root: Path) -> AsyncIterator[TwoNodes]:
    """Alice and Bob on one memory network, each serving RPC in its home under ``root``."""
    async with hub() as h, AsyncExitStack() as stack:
        nodes = []
        for name in ("alice", "bob"):
            node = Node(
                NodeConfig(home=root / name, delivery=FAST, display_name=name.title()),
                identity(name),
                network=memory_opener(h),
                store=MemoryStore(),
                rng=DeterministicRng(f"{name}-node"),
                seed=1,
            )
            nodes.append(await stack.enter_async_context(node))
            await stack.enter_async_context(serve_node(node, rng=DeterministicRng(f"{name}-rpc")))
        for node in nodes:
            await node.wait_published()
        yield TwoNodes(nodes[0], nodes[1], root / "alice", root / "bob", h)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[TrioThread[TwoNodes]]:
    """Two running nodes in a trio thread; stopped (and their errors raised) at the end."""
    handle = start_trio_thread(lambda: open_two_nodes(tmp_path), ready_timeout=LIMIT)
    try:
        yield handle
    finally:
        handle.stop(timeout=LIMIT)


def test_asyncio_app_sends_a_dm_and_the_recipient_gets_the_event(
    two_nodes: TrioThread[TwoNodes],
) -> None:
    alice_home, bob_home = two_nodes.value.alice_home, two_nodes.value.bob_home
    alice_account = two_nodes.value.alice.account_key.hex()

    async def main() -> None:
        async with (
            await AsyncioClient.connect(home=alice_home) as alice,
            await AsyncioClient.connect(home=bob_home) as bob,
            bob.subscribe(["dm.received"]) as inbox,
        ):
            info = await alice.call("node.info")
            assert info["account_key"] == alice_account
            bob_account = (await bob.call("node.info"))["account_key"]
            sent = await alice.call("dm.send", {"to": bob_account, "text": "hello from asyncio"})
            item = await anext(inbox)
            assert isinstance(item, Event)
            assert item.type == "dm.received"
            assert item.data["text"] == "hello from asyncio"
            assert item.data["sender"] == alice_account
            assert item.data["message_id"] == sent["message_id"]
            history = await bob.call("dm.history", {"conversation": alice_account})
            assert [m["text"] for m in history] == ["hello from asyncio"]

    asyncio.run(asyncio.wait_for(main(), LIMIT))


def test_run_node_in_thread_serves_rpc_on_a_real_libp2p_host(tmp_path: Path) -> None:
    config = NodeConfig(home=tmp_path / "n", net=NetConfig(listen_hosts=("127.0.0.1",), port=0))
    me = identity("solo")
    with run_node_in_thread(config, me, ready_timeout=LIMIT) as handle:
        assert handle.socket_path.exists()

        async def main() -> None:
            async with await AsyncioClient.connect(home=handle.home) as client:
                info = await client.call("node.info")
                assert info["account_key"] == me.account.account_key.hex()
                assert info["peer_id"] == peer_id_from_ed25519(me.device.public_key)
                assert any("/ip4/127.0.0.1/tcp/" in a for a in info["listen_addrs"])

        asyncio.run(asyncio.wait_for(main(), LIMIT))
    assert not handle.socket_path.exists()  # the node removed its socket on stop


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script", ["embed_trio.py", "embed_asyncio.py"])
def test_embedding_examples_run(script: str) -> None:
    """The documented examples work as shipped: two libp2p nodes on 127.0.0.1 chat."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=2 * LIMIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("alice queued message ")
    assert lines[1].startswith("bob received from ")
    assert lines[1].endswith(("hello from asyncio", "hello Bob, from an embedded node"))
