"""The receiving node of ``test_node_sigkill.py``, run as a child process.

    python -m tests.integration._sigkill_receiver HOME KEYSTORE PORT BOOTSTRAP

Importing py-libp2p costs about a second, so the parent starts the next receiver while
the current one is still running: the child imports everything, prints ``ready`` and
waits for a ``go`` line on stdin. Only then does it open the node (SQLite store in
HOME, the identity from the unprotected KEYSTORE file, libp2p on 127.0.0.1:PORT,
BOOTSTRAP = the sender's address) and print ``opened <messages in store>`` once the node
listens. From then on it receives direct messages until the parent SIGKILLs it; it
never exits on its own (a clean exit would mean the parent closed stdin: it gave up).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.identity.keystore import LockedKeystore, UnlockedIdentity
from p2pchat.net.config import NetConfig, RetryConfig
from p2pchat.node import Node

# Imported here, not inside ``Node``: the cost belongs before ``ready``.
from p2pchat.net import libp2p_host  # noqa: F401  # isort: skip

#: The sender is a single peer streaming as fast as acks come back: no rate limit here.
RECEIVER_DELIVERY = DeliveryConfig(
    retry_initial_ms=200, retry_max_ms=1_000, ack_timeout_ms=3_000, peer_rate=10_000.0,
    peer_burst=10_000,
)  # fmt: skip


def receiver_config(home: Path, port: int, bootstrap: str) -> NodeConfig:
    net = NetConfig(
        listen_hosts=("127.0.0.1",),
        port=port,
        bootstrap=(bootstrap,),
        dial_timeout=3.0,
        dht_retry=RetryConfig(attempt_timeout=2.0, attempts=2, base_delay=0.1),
    )
    return NodeConfig(home=home, net=net, delivery=RECEIVER_DELIVERY, rpc=False)


async def receive_until_killed(config: NodeConfig, identity: UnlockedIdentity) -> None:
    async with Node(config, identity) as node:
        stats = await node.statistics()
        print(f"opened {stats['store']['messages']}", flush=True)
        await trio.sleep_forever()


def main(argv: list[str]) -> None:
    home, keystore, port, bootstrap = argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    identity = LockedKeystore.from_bytes(Path(keystore).read_bytes()).unlock(None)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    trio.run(receive_until_killed, receiver_config(Path(home), int(port), bootstrap), identity)


if __name__ == "__main__":
    main(sys.argv[1:])
