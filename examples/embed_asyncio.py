"""Embed p2pchat in an asyncio program: nodes in trio threads, the app talks RPC.

    .venv/bin/python examples/embed_asyncio.py

The node runs on trio; an asyncio app (aiohttp, FastAPI, a discord bot…) keeps its own
loop and runs the node beside it with :func:`p2pchat.aio.run_node_in_thread`, then talks
to it through :class:`p2pchat.aio.AsyncioClient` over ``<home>/rpc.sock``, the same API
and tokens every other local app uses. Two nodes here (temporary homes, throw-away
identities, 127.0.0.1): Alice sends Bob a message, Bob's subscription prints it.

Instead of a thread, the node can be a separate process (``p2pchat node run``); the
client code stays the same (see ``docs/embedding.md``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

import nacl.utils

from p2pchat.aio import AsyncioClient, Event, NodeThread, run_node_in_thread
from p2pchat.config import NodeConfig
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import wall_clock_ms

TIMEOUT_S = 60


def start_node(home: Path, *, bootstrap: tuple[str, ...] = ()) -> NodeThread:
    """A node on 127.0.0.1 (any free port) serving RPC in ``home``; blocks until it listens."""
    net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap)
    identity = UnlockedIdentity.generate(rng=nacl.utils.random, now=wall_clock_ms())
    return run_node_in_thread(NodeConfig(home=home, net=net), identity)


async def chat(alice_home: Path, bob_home: Path) -> int:
    async with (
        await AsyncioClient.connect(home=alice_home, client_name="embed-asyncio") as alice,
        await AsyncioClient.connect(home=bob_home, client_name="embed-asyncio") as bob,
        bob.subscribe(["dm.received"]) as inbox,  # subscribed when the block is entered
    ):
        bob_account = (await bob.call("node.info"))["account"]
        sent = await alice.call("dm.send", {"to": bob_account, "text": "hello from asyncio"})
        print(f"alice queued message {sent['message_id'][:16]}")
        async for item in inbox:
            if isinstance(item, Event):
                print(f"bob received from {item.data['sender'][:16]}: {item.data['text']}")
                return 0
    return 1


async def main(root: Path) -> int:
    # Starting a node blocks until it listens: keep the event loop free meanwhile.
    alice = await asyncio.to_thread(start_node, root / "alice")
    try:
        logging.getLogger("libp2p").setLevel(logging.ERROR)  # imported now; see embed_trio.py
        async with await AsyncioClient.connect(home=alice.home) as client:
            info = await client.call("node.info")
        entry = info["listen_addrs"][0]  # a full multiaddr, ending in /p2p/<peer id>
        bob = await asyncio.to_thread(start_node, root / "bob", bootstrap=(entry,))
        try:
            # Bob's keys must be in the DHT before Alice can find him: wait on the trio side.
            await asyncio.to_thread(bob.run, bob.value.wait_published)
            return await asyncio.wait_for(chat(alice.home, bob.home), TIMEOUT_S)
        finally:
            await asyncio.to_thread(bob.stop)
    finally:
        await asyncio.to_thread(alice.stop)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="p2pchat-") as tmp:
        sys.exit(asyncio.run(main(Path(tmp))))
