"""Why attachments do not use py-libp2p 0.8.1's Bitswap (protocol-spec/blobs.md §5).

Two hosts on 127.0.0.1: the raw framed-stream bandwidth, then the same bytes as 256 KiB
blocks fetched with Bitswap 1.2 (``BlockService.get_blocks_batch`` from the one peer
that holds them), in the same run. Printed as MB/s and as a ratio of raw.

    .venv/bin/python -m bench.bitswap_eval --mb 10
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from typing import Any

import trio

from p2pchat.net.base import FramedStream
from p2pchat.net.config import NetConfig
from p2pchat.net.libp2p_host import open_libp2p_network

LOOPBACK = NetConfig(listen_hosts=("127.0.0.1",), port=0)
BLOCK = 256 * 1024


async def _sink(stream: FramedStream) -> None:
    total = 0
    while (frame := await stream.read_frame(1 << 20)) is not None:
        total += len(frame)
    await stream.write_frame(str(total).encode())


async def measure(size: int) -> tuple[float, float, int, int]:
    """(raw seconds, bitswap seconds, blocks received intact, blocks)."""
    from libp2p.bitswap import BlockService, MemoryBlockStore, compute_cid_v1
    from libp2p.bitswap.client import BitswapClient

    async with (
        open_libp2p_network(b"\x71" * 32, LOOPBACK, jitter=random.Random(1)) as a,
        open_libp2p_network(b"\x72" * 32, LOOPBACK, jitter=random.Random(2)) as b,
    ):
        b.set_stream_handler("/p2pchat/bench/sink/1", _sink)
        await a.connect(b.peer_id, b.listen_addrs)
        data = os.urandom(size)
        blocks = [data[i : i + BLOCK] for i in range(0, size, BLOCK)]
        stream = await a.open_stream(b.peer_id, "/p2pchat/bench/sink/1")
        start = time.perf_counter()
        for block in blocks:
            await stream.write_frame(block)
        await stream.close()
        await stream.read_frame(64)
        raw = time.perf_counter() - start
        async with trio.open_nursery() as nursery:
            fetcher: Any = BitswapClient(a.host, MemoryBlockStore())
            holder: Any = BitswapClient(b.host, MemoryBlockStore())
            for client in (fetcher, holder):
                client.set_nursery(nursery)
                await client.start()
            cids = []
            for block in blocks:
                cid = compute_cid_v1(block)
                await holder.add_block(cid, block)
                cids.append(cid)
            service: Any = BlockService(fetcher.block_store, fetcher)
            start = time.perf_counter()
            got = await service.get_blocks_batch(
                cids, fetcher.new_session(), peer_id=b.host.get_id(), timeout=120
            )
            swapped = time.perf_counter() - start
            intact = sum(1 for c, blk in zip(cids, blocks, strict=True) if got.get(c) == blk)
            await fetcher.stop()
            await holder.stop()
            nursery.cancel_scope.cancel()
    return raw, swapped, intact, len(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)  # bitswap logs every block at INFO
    size = args.mb * 1_000_000
    raw, swapped, intact, total = trio.run(measure, size)
    print(f"raw framed stream: {size / raw / 1e6:.1f} MB/s")
    print(
        f"bitswap: {intact}/{total} blocks, {size / swapped / 1e6:.1f} MB/s, "
        f"{raw / swapped:.0%} of raw"
    )


if __name__ == "__main__":
    main()
