"""Attachment transfer over real py-libp2p hosts on 127.0.0.1, against the raw stream.

In one run: (1) the raw bandwidth of one framed py-libp2p stream (TCP + Noise + Yamux +
our varint framing) sending the file's size in 256 KiB frames; (2) the same bytes as an
encrypted blob over ``/p2pchat/blob/1.0.0`` (request pipelining, hashing every chunk,
writing to the blob store), reported as a ratio of (1); (3) the same download from 3
holders at once against 1 holder. Sealing (encrypting the file into the store) is timed
apart. Every host runs in this one Python thread, so the figures are lower bounds, and
several holders cannot beat one here (they share one CPU): they show that spreading the
work costs little, not the gain on a real network.

(1) and (2) run ``--repeat`` times, alternately, between the same two hosts (the blob
is deleted from the receiver between runs); the ratio is that of the best of each, so
that another process stealing the CPU during one run does not decide the figure. The
ratio of each pair is printed too.

    .venv/bin/python -m bench.blob_bench                 # 50 MB (default), 3 pairs
    .venv/bin/python -m bench.blob_bench --mb 10 --no-multi --repeat 1
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nacl.utils
import trio

from p2pchat.blobs.service import Blobs
from p2pchat.config import BlobConfig
from p2pchat.errors import NetworkError
from p2pchat.events import EventBus
from p2pchat.net.base import FramedStream
from p2pchat.net.config import NetConfig
from p2pchat.net.libp2p_host import Libp2pNetwork, open_libp2p_network
from p2pchat.protocol.blob import CHUNK_SIZE

__all__ = ["BlobBench", "measure"]

SINK = "/p2pchat/bench/blob-sink/1"
LOOPBACK = NetConfig(listen_hosts=("127.0.0.1",), port=0)
#: Benchmarks must not be rate limited by the holders they measure.
UNLIMITED = BlobConfig(serve_rate=1 << 40, serve_burst=1 << 40, idle_timeout_ms=120_000)


@dataclass(frozen=True, slots=True)
class BlobBench:
    size: int
    raw_runs: tuple[float, ...]
    seal_s: float
    blob_runs: tuple[float, ...]
    one_source_s: float | None
    three_sources_s: float | None

    @property
    def raw_s(self) -> float:
        return min(self.raw_runs)

    @property
    def blob_s(self) -> float:
        return min(self.blob_runs)

    def report(self) -> str:
        mb = self.size / 1e6
        pairs = ", ".join(
            f"{r / b:.0%}" for r, b in zip(self.raw_runs, self.blob_runs, strict=True)
        )
        lines = [
            f"file: {mb:.1f} MB, {-(-self.size // CHUNK_SIZE)} chunks of 256 KiB",
            f"raw framed stream:  {mb / self.raw_s:6.1f} MB/s ({self.raw_s:.2f} s, best of "
            f"{len(self.raw_runs)})",
            f"sealing into store: {mb / self.seal_s:6.1f} MB/s ({self.seal_s:.2f} s)",
            f"blob transfer:      {mb / self.blob_s:6.1f} MB/s ({self.blob_s:.2f} s), "
            f"{self.raw_s / self.blob_s:.0%} of raw (goal >= 70 %)",
            f"blob/raw of each pair: {pairs}",
        ]
        if self.one_source_s is not None and self.three_sources_s is not None:
            gain = self.one_source_s / self.three_sources_s
            lines.append(
                f"1 holder:  {mb / self.one_source_s:6.1f} MB/s; 3 holders: "
                f"{mb / self.three_sources_s:6.1f} MB/s (x{gain:.2f}; all hosts share one thread)"
            )
        return "\n".join(lines)


async def _sink(stream: FramedStream) -> None:
    total = 0
    while (frame := await stream.read_frame(1 << 20)) is not None:
        total += len(frame)
    await stream.write_frame(str(total).encode())


@asynccontextmanager
async def _hosts(count: int, tmp: Path) -> AsyncIterator[list[tuple[Libp2pNetwork, Blobs]]]:
    async with AsyncExitStack() as stack:
        out = []
        for i in range(count):
            net = await stack.enter_async_context(
                open_libp2p_network(bytes([0x70 + i]) * 32, LOOPBACK, jitter=random.Random(i))
            )
            blobs = Blobs(
                root=tmp / f"h{i}",
                seal_key=None,
                network=net,
                events=EventBus(),
                config=UNLIMITED,
                clock=lambda: time.time_ns() // 1_000_000,
                rng=nacl.utils.random,
                peer_id=net.peer_id,
            )
            stack.callback(blobs.close)
            net.set_stream_handler(SINK, _sink)
            out.append((net, blobs))
        for i, (net, _) in enumerate(out):
            for other, _ in out[i + 1 :]:
                await net.connect(other.peer_id, other.listen_addrs)
        yield out


async def _raw(a: Libp2pNetwork, b: Libp2pNetwork, size: int) -> float:
    frame = b"\xab" * CHUNK_SIZE
    stream = await a.open_stream(b.peer_id, SINK)
    start = time.perf_counter()
    sent = 0
    while sent < size:
        part = frame[: min(CHUNK_SIZE, size - sent)]
        await stream.write_frame(part)
        sent += len(part)
    await stream.close()
    answer = await stream.read_frame(64)
    elapsed = time.perf_counter() - start
    if answer != str(size).encode():
        raise NetworkError("the sink did not receive every byte")
    return elapsed


async def _fetch(blobs: Blobs, ref_hash: bytes, sources: list[str]) -> float:
    start = time.perf_counter()
    await blobs.fetch(ref_hash, sources=sources)
    return time.perf_counter() - start


async def measure(*, megabytes: int = 50, multi: bool = True, repeat: int = 3) -> BlobBench:
    size = megabytes * 1_000_000
    with tempfile.TemporaryDirectory(prefix="blob-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "payload.bin"
        with source.open("wb") as f:
            block = hashlib.shake_256(b"blob bench").digest(1 << 20)
            for _ in range(size // len(block)):
                f.write(block)
            f.write(block[: size % len(block)])
        async with _hosts(5 if multi else 2, tmp) as hosts:
            (a_net, a), (b_net, b) = hosts[0], hosts[1]
            start = time.perf_counter()
            ref = await a.add_file(source)
            seal = time.perf_counter() - start
            raw: list[float] = []
            blob: list[float] = []
            for _ in range(repeat):
                raw.append(await _raw(a_net, b_net, size))
                b.store.delete(ref.hash)
                b.note([ref])
                blob.append(await _fetch(b, ref.hash, [a_net.peer_id]))
                assert b.store.complete(ref.hash)
            one = three = None
            if multi:
                (c_net, c), (_, d), (_, e) = hosts[2], hosts[3], hosts[4]
                c.note([ref])
                await c.fetch(ref.hash, sources=[a_net.peer_id])
                # Holders: a, b, c. d fetches from one, e from all three.
                d.note([ref])
                one = await _fetch(d, ref.hash, [a_net.peer_id])
                e.note([ref])
                three = await _fetch(e, ref.hash, [a_net.peer_id, b_net.peer_id, c_net.peer_id])
                assert e.store.complete(ref.hash)
    return BlobBench(
        size=size,
        raw_runs=tuple(raw),
        seal_s=seal,
        blob_runs=tuple(blob),
        one_source_s=one,
        three_sources_s=three,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="file size in MB (default 50)")
    parser.add_argument("--no-multi", action="store_true", help="skip the 3-holder run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="raw/blob pairs, best of each counts (default 3)"
    )
    args = parser.parse_args()
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    result = trio.run(
        lambda: measure(megabytes=args.mb, multi=not args.no_multi, repeat=max(1, args.repeat))
    )
    print(result.report())


if __name__ == "__main__":
    main()
