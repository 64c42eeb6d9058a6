"""Throughput of the local RPC against direct in-process calls of the same backend.

    .venv/bin/python bench/rpc_bench.py            # full run (about ten seconds)
    .venv/bin/python bench/rpc_bench.py --quick    # smoke run

Measured in one run, on one machine, with the fake backend of the RPC tests:

* calls/s of ``test.echo`` awaited directly (dataclass params, no RPC), next to the same
  method over ``<home>/rpc.sock``: one call at a time (round-trip latency bound), 32
  concurrent callers (pipelined), and through the blocking ``SyncClient`` (thread hop);
* events/s delivered to a subscriber: ``server.publish`` -> socket -> ``Client``
  subscription iterator, next to the same events pushed through an in-process trio
  memory channel.

Server and client share one trio thread here, so every RPC figure pays both sides' CPU
on one core: a lower bound for a separate CLI process. Ratios are RPC rate / direct
rate. Timing is reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.lowlevel

from p2pchat.client import Client, Event, SyncClient
from tests.integration.test_rpc_fakes import EchoParams, FakeBackend, running

CONCURRENCY = 32


async def _rate(n: int, op: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await op()
    return n / (time.perf_counter() - start)


async def _concurrent_rate(n: int, op: Callable[[], Awaitable[object]]) -> float:
    per_task = n // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_task):
            await op()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)
    return per_task * CONCURRENCY / (time.perf_counter() - start)


async def _latencies(n: int, op: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


async def _event_rate_rpc(n: int, r_server: object, client: Client) -> float:
    server = r_server
    async with client.subscribe(["bench"]) as sub:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                for i in range(n):
                    server.publish({"type": "bench", "i": i})  # type: ignore[attr-defined]
                    if i % 256 == 255:
                        await trio.lowlevel.checkpoint()  # let the writer run, as a busy node would

            nursery.start_soon(produce)
            got = 0
            async for item in sub:
                assert isinstance(item, Event)
                got += 1
                if got == n:
                    break
        return n / (time.perf_counter() - start)


async def _event_rate_direct(n: int) -> float:
    send, recv = trio.open_memory_channel[dict[str, object]](1024)
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:

        async def produce() -> None:
            async with send:
                for i in range(n):
                    await send.send({"type": "bench", "i": i})

        nursery.start_soon(produce)
        async with recv:
            async for _ in recv:
                pass
    return n / (time.perf_counter() - start)


def _sync_rate(home: Path, n: int) -> float:
    with SyncClient.connect(home=home) as client:
        start = time.perf_counter()
        for _ in range(n):
            client.call("test.echo", {"text": "x"})
        return n / (time.perf_counter() - start)


async def main(quick: bool) -> None:
    calls = 300 if quick else 5_000
    events = 2_000 if quick else 50_000
    backend = FakeBackend()
    params = EchoParams("x")
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="rpcb") as tmp:
        home = Path(tmp) / "h"
        async with (
            running(home, event_queue=events, rate=1e9, burst=10**9) as r,
            await Client.connect(home=home) as client,
        ):
            direct = await _rate(calls * 10, lambda: backend.echo(params))
            seq = await _rate(calls, lambda: client.call("test.echo", {"text": "x"}))
            par = await _concurrent_rate(calls * 2, lambda: client.call("test.echo", {"text": "x"}))
            sync = await trio.to_thread.run_sync(_sync_rate, home, calls)
            rows += [
                ("echo call, direct await", direct, 1.0),
                ("echo call, RPC sequential", seq, seq / direct),
                (f"echo call, RPC {CONCURRENCY} concurrent", par, par / direct),
                ("echo call, SyncClient", sync, sync / direct),
            ]
            p50, p99 = await _latencies(calls, lambda: client.call("rpc.ping"))
            ev_direct = await _event_rate_direct(events)
            ev_rpc = await _event_rate_rpc(events, r.server, client)
            rows += [
                ("events, in-process channel", ev_direct, 1.0),
                ("events, publish -> socket -> subscription", ev_rpc, ev_rpc / ev_direct),
            ]
    print(f"{'operation':<44} {'per second':>12} {'ratio':>8}")
    for name, rate, ratio in rows:
        print(f"{name:<44} {rate:>12,.0f} {ratio:>8.3f}")
    print(f"rpc.ping round trip: p50 {p50:,.0f} us, p99 {p99:,.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    sys.setrecursionlimit(10_000)
    trio.run(main, args.quick)
