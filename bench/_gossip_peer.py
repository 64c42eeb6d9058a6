"""One bare py-libp2p gossipsub process: the baseline of ``bench.scale_bench``.

The same stack a p2pchat node runs (TCP on 127.0.0.1, Noise, Yamux, one connection per
peer, ``GossipSub`` with :class:`p2pchat.net.config.GossipConfig`'s parameters, strict
signing), and nothing else: no DHT, no store, no groups layer, no RPC. Driven by
``bench.scale_bench`` over stdin/stdout, one command or answer per line:

    (printed once listening)  ready <multiaddr>
    connect <multiaddr>       -> connected <peer id> | failed <reason>
    mesh                      -> mesh <peers in our mesh for the topic> <topic peers>
    publish <count> <size>    -> published <count> <seconds>   (back to back, awaited)
    received                  -> received <json: [[seq, sent_s, received_s], ...]>
    quit

Each payload starts with its sequence number and the publisher's ``time.time()``; a
receiver notes its own ``time.time()`` when the subscription hands the message over.
All processes run on one machine, so the clocks agree.

    .venv/bin/python -m bench._gossip_peer      # (started by bench.scale_bench)
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import time

import trio
from libp2p import new_host
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from p2pchat.net.config import GossipConfig
from p2pchat.net.libp2p_host import key_pair_from_seed

TOPIC = "/p2pchat/bench/scale"
_HEADER = struct.Struct(">Id")


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def main() -> None:
    key_pair = key_pair_from_seed(os.urandom(32))
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    listen = Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen],
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    config = GossipConfig()
    router = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]
        max_messages_per_topic_per_second=config.max_messages_per_topic_per_second,
    )
    pubsub = Pubsub(host, router, strict_signing=True)
    received: list[tuple[int, float, float]] = []
    async with (
        host.run(listen_addrs=[listen]),
        background_trio_service(pubsub),
        background_trio_service(router),
        trio.open_nursery() as nursery,
    ):
        await pubsub.wait_until_ready()
        subscription = await pubsub.subscribe(TOPIC)

        async def drain() -> None:
            while True:
                message = await subscription.get()
                now = time.time()
                seq, sent = _HEADER.unpack_from(bytes(message.data))
                received.append((seq, sent, now))

        nursery.start_soon(drain)
        addr = f"{host.get_addrs()[0]}"
        say(f"ready {addr}")
        while line := (await trio.to_thread.run_sync(sys.stdin.readline)).strip():
            verb, _, rest = line.partition(" ")
            if verb == "connect":
                try:
                    with trio.fail_after(10):
                        await host.connect(info_from_p2p_addr(Multiaddr(rest)))
                    say(f"connected {rest.rsplit('/', 1)[-1]}")
                except Exception as exc:
                    say(f"failed {type(exc).__name__}")
            elif verb == "mesh":
                mesh = len(router.mesh.get(TOPIC, ()))
                peers = len(pubsub.peer_topics.get(TOPIC, ()))
                say(f"mesh {mesh} {peers}")
            elif verb == "publish":
                count, size = (int(x) for x in rest.split())
                padding = b"x" * max(0, size - _HEADER.size)
                started = time.perf_counter()
                for seq in range(count):
                    await pubsub.publish(TOPIC, _HEADER.pack(seq, time.time()) + padding)
                say(f"published {count} {time.perf_counter() - started:.6f}")
            elif verb == "received":
                say(f"received {json.dumps(received)}")
            elif verb == "quit":
                break
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    trio.run(main)
