"""Raw framed-stream baseline between two py-libp2p hosts on 127.0.0.1.

What the DM bench compares against: the cost of the transport alone (TCP + Noise +
Yamux + our varint framing), with no protocol logic. Also measures how often DHT
lookups fail on a first attempt under concurrent load, and whether retries absorb it.

    .venv/bin/python -m bench.net_bench                 # defaults (~10 s)
    .venv/bin/python -m bench.net_bench --messages 5000 --round-trips 2000 --dht-hosts 8

From another bench, in its own trio run::

    from bench.net_bench import measure_framed_baseline
    baseline = await measure_framed_baseline(messages=2000, round_trips=500)
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import trio

from p2pchat.errors import NetworkError
from p2pchat.net.base import FramedStream
from p2pchat.net.config import NetConfig, RetryConfig
from p2pchat.net.libp2p_host import Libp2pNetwork, open_libp2p_network

__all__ = [
    "OneWay",
    "NetBaseline",
    "DhtLoad",
    "measure_framed_baseline",
    "measure_dht_under_load",
]

SINK = "/p2pchat/bench/sink/1"
ECHO = "/p2pchat/bench/echo/1"
LOOPBACK = NetConfig(listen_hosts=("127.0.0.1",), port=0)


@dataclass(frozen=True, slots=True)
class OneWay:
    size: int
    messages: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.messages * self.size / self.seconds / 1e6


@dataclass(frozen=True, slots=True)
class NetBaseline:
    one_way: tuple[OneWay, ...]
    round_trips: int
    rtt_p50_ms: float
    rtt_p99_ms: float
    stream_open_p50_ms: float

    def report(self) -> str:
        lines = [
            f"one-way {o.size:>5} B: {o.messages_per_second:>9.0f} msg/s "
            f"({o.megabytes_per_second:.1f} MB/s, {o.messages} messages)"
            for o in self.one_way
        ]
        lines.append(
            f"round trip 64 B: p50 {self.rtt_p50_ms:.2f} ms, p99 {self.rtt_p99_ms:.2f} ms "
            f"({self.round_trips} round trips)"
        )
        lines.append(f"stream open: p50 {self.stream_open_p50_ms:.2f} ms")
        return "\n".join(lines)


async def _sink(stream: FramedStream) -> None:
    """Count frames until EOF, then answer with the count (ends the one-way timing)."""
    count = 0
    while await stream.read_frame(1 << 20) is not None:
        count += 1
    await stream.write_frame(str(count).encode())


async def _echo(stream: FramedStream) -> None:
    while (frame := await stream.read_frame(1 << 20)) is not None:
        await stream.write_frame(frame)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Libp2pNetwork, Libp2pNetwork]]:
    async with (
        open_libp2p_network(b"\x51" * 32, LOOPBACK, jitter=random.Random(1)) as a,
        open_libp2p_network(b"\x52" * 32, LOOPBACK, jitter=random.Random(2)) as b,
    ):
        b.set_stream_handler(SINK, _sink)
        b.set_stream_handler(ECHO, _echo)
        await a.connect(b.peer_id, b.listen_addrs)
        yield a, b


async def measure_framed_baseline(
    *, messages: int = 2000, round_trips: int = 500, sizes: tuple[int, ...] = (64, 1024)
) -> NetBaseline:
    """Open two hosts, measure, close them. Wall-clock numbers: run on a quiet machine."""
    async with _pair() as (a, b):
        one_way = []
        for size in sizes:
            payload = b"\xab" * size
            stream = await a.open_stream(b.peer_id, SINK)
            start = time.perf_counter()
            for _ in range(messages):
                await stream.write_frame(payload)
            await stream.close()
            answer = await stream.read_frame(32)
            elapsed = time.perf_counter() - start
            if answer != str(messages).encode():
                raise NetworkError("the sink did not receive every frame")
            one_way.append(OneWay(size=size, messages=messages, seconds=elapsed))

        opens = []
        for _ in range(20):
            start = time.perf_counter()
            stream = await a.open_stream(b.peer_id, ECHO)
            opens.append((time.perf_counter() - start) * 1000)
            await stream.close()
        stream = await a.open_stream(b.peer_id, ECHO)
        payload = b"\xcd" * 64
        rtts = []
        for _ in range(round_trips):
            start = time.perf_counter()
            await stream.write_frame(payload)
            await stream.read_frame(1024)
            rtts.append((time.perf_counter() - start) * 1000)
        await stream.close()
    return NetBaseline(
        one_way=tuple(one_way),
        round_trips=round_trips,
        rtt_p50_ms=statistics.median(rtts),
        rtt_p99_ms=_percentile(rtts, 0.99),
        stream_open_p50_ms=statistics.median(opens),
    )


@dataclass(frozen=True, slots=True)
class DhtLoad:
    hosts: int
    lookups: int
    attempts: int
    failed_attempts: int
    gave_up: int
    not_found: int
    seconds: float

    def report(self) -> str:
        return (
            f"DHT: {self.hosts} hosts, {self.lookups} concurrent find_providers (+ refreshes) in "
            f"{self.seconds:.2f} s: {self.attempts} attempts, {self.failed_attempts} failed "
            f"attempts, {self.gave_up} gave up after retries, {self.not_found} not found"
        )


async def measure_dht_under_load(*, hosts: int = 8, lookups: int = 40) -> DhtLoad:
    """Each host provides a key; then all hosts refresh their routing tables and run
    ``lookups`` provider lookups at once (py-libp2p resets kad streams beyond 12 per
    server, which is the load this is meant to produce)."""
    policy = RetryConfig(attempt_timeout=5, attempts=3, base_delay=0.2)
    config = NetConfig(listen_hosts=("127.0.0.1",), port=0, dht_retry=policy)
    rng = random.Random(42)
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            open_libp2p_network(b"\x60" * 32, config, jitter=random.Random(0))
        )
        with_bootstrap = NetConfig(
            listen_hosts=("127.0.0.1",), port=0, dht_retry=policy, bootstrap=(boot.listen_addrs[0],)
        )
        nets = [
            await stack.enter_async_context(
                open_libp2p_network(bytes([0x61 + i]) * 32, with_bootstrap, jitter=random.Random(i))
            )
            for i in range(hosts - 1)
        ]
        for net in nets:
            await net.dht.provide(f"/bench/{net.peer_id}")
        not_found = 0
        gave_up = 0

        async def lookup(source: Libp2pNetwork, target: str) -> None:
            nonlocal not_found, gave_up
            try:
                found = await source.dht.find_providers(f"/bench/{target}")
                if target not in [p.peer_id for p in found]:
                    not_found += 1
            except NetworkError:
                gave_up += 1

        async def refresh(net: Libp2pNetwork) -> None:
            nonlocal gave_up
            try:
                await net.dht.refresh()
            except NetworkError:
                gave_up += 1

        before = [net.dht.statistics() for net in nets]
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for net in nets:
                nursery.start_soon(refresh, net)
            for _ in range(lookups):
                source, target = rng.sample(nets, 2)
                nursery.start_soon(lookup, source, target.peer_id)
        elapsed = time.perf_counter() - start
        after = [net.dht.statistics() for net in nets]
    return DhtLoad(
        hosts=hosts,
        lookups=lookups,
        attempts=sum(a.attempts - b.attempts for a, b in zip(after, before, strict=True)),
        failed_attempts=sum(
            a.failed_attempts - b.failed_attempts for a, b in zip(after, before, strict=True)
        ),
        gave_up=gave_up,
        not_found=not_found,
        seconds=elapsed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--dht-hosts", type=int, default=8)
    parser.add_argument("--dht-lookups", type=int, default=40)
    args = parser.parse_args()
    # py-libp2p logs expected stream resets at ERROR level; the counters report them.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)

    async def run() -> None:
        baseline = await measure_framed_baseline(
            messages=args.messages, round_trips=args.round_trips
        )
        print(baseline.report())
        if args.dht_hosts >= 3:
            load = await measure_dht_under_load(hosts=args.dht_hosts, lookups=args.dht_lookups)
            print(load.report())

    trio.run(run)


if __name__ == "__main__":
    main()
