"""Embed p2pchat directly in a trio program: two nodes on this machine exchange a message.

    .venv/bin/python examples/embed_trio.py

A Python app that already runs trio (or is happy to) uses :class:`p2pchat.node.Node`
itself: no socket, no serialisation, typed results and typed events. Both nodes here
live in temporary homes with throw-away identities and listen on 127.0.0.1; Bob joins
the network through Alice (``bootstrap``) and finds nothing but her address: Alice
finds Bob's keys in the DHT from his account key alone.

A real app keeps its identity in an encrypted keystore instead:
``identity, _ = p2pchat.identity.keyfile.open_or_create(Home(path), passphrase=..., create=True,
rng=nacl.utils.random, now=wall_clock_ms())`` (see ``docs/embedding.md``).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import nacl.utils
import trio

from p2pchat.config import NodeConfig
from p2pchat.events import MessageReceived
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node, wall_clock_ms

TIMEOUT_S = 60


def local_config(home: Path, *, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    """A node on 127.0.0.1, any free port; no RPC socket (this app calls the node directly)."""
    net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap)
    return NodeConfig(home=home, net=net, rpc=False)


def quiet_libp2p() -> None:
    """py-libp2p warns about every stray DHT stream, and sets its own log levels when
    it is imported (by the first node that starts): lower them after that."""
    logging.getLogger("libp2p").setLevel(logging.ERROR)


def new_identity() -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=nacl.utils.random, now=wall_clock_ms())


async def main(root: Path) -> int:
    async with Node(local_config(root / "alice"), new_identity()) as alice:
        quiet_libp2p()
        entry = alice.listen_addrs[0]  # a full multiaddr: /ip4/127.0.0.1/tcp/N/p2p/<peer id>
        bob_config = local_config(root / "bob", bootstrap=(entry,))
        async with (
            Node(bob_config, new_identity()) as bob,
            # Subscribe before sending: a stream sees every event from its creation on.
            bob.events() as events,
        ):
            await bob.wait_published()  # Bob's keys are in the DHT now
            sent = await alice.send_dm(bob.account_key, "hello Bob, from an embedded node")
            print(f"alice queued message {sent.message_id.hex()[:16]}")
            async for event in events:
                if isinstance(event, MessageReceived):
                    print(f"bob received from {event.sender.hex()[:16]}: {event.text}")
                    return 0
    return 1  # pragma: no cover - the event stream ended first


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="p2pchat-") as tmp:

        async def bounded() -> int:
            with trio.fail_after(TIMEOUT_S):
                return await main(Path(tmp))

        sys.exit(trio.run(bounded))
