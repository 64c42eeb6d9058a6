"""Direct-message throughput and latency between two nodes, next to raw py-libp2p.

    .venv/bin/python -m bench.dm_bench              # full run (about a minute)
    .venv/bin/python -m bench.dm_bench --quick      # smoke run
    .venv/bin/python -m bench.dm_bench --profile 400  # cProfile of 400 batched messages
    .venv/bin/python -m bench.dm_bench --hops 400 --mode sequential  # thread hops per DM

Measured in one run, on one machine, two real nodes (libp2p on 127.0.0.1, SQLite
stores in temporary homes, WAL + ``synchronous=FULL``) in one trio thread:

* throughput: N messages queued, time until the last ``delivered`` event (its signed
  ``dm.ack`` arrived), after one warm-up message set up the session, three ways:
  ``sequential`` (one ``send_dm`` after the other: each waits for its own commit and
  fsync), ``concurrent`` (N ``send_dm`` tasks at once: the node coalesces them into
  batches, one transaction each) and ``batched`` (``send_dms`` of 64 messages at a time);
* latency: send one message, wait for ``delivered``, repeat: p50 / p99;
* the raw framed-stream rate of ``bench.net_bench.measure_framed_baseline`` in the same
  run, at the size of a DM frame, and the ratio DM / raw (the goal in issue 5: >= 60 %);
* RSS of an idle node: a fresh process that starts a node, waits until it listens and
  idles, beside a process that only imports libp2p (``/proc/<pid>/status`` VmRSS).

Both nodes share one core here, so the DM figures pay the sender's and the receiver's
CPU together (the raw baseline does too). Timing is reported here, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nacl.utils
import trio

from bench.net_bench import NetBaseline, measure_framed_baseline
from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.dm.service import DM_PROTOCOL
from p2pchat.events import DeliveryChanged
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.base import FramedStream, Network, StreamHandler
from p2pchat.net.config import NetConfig
from p2pchat.node import NetworkOpener, Node
from p2pchat_crypto.identity import Device

__all__ = [
    "DmThroughput",
    "DmLatency",
    "IdleRss",
    "measure_dm",
    "measure_idle_rss",
    "report",
    "main",
]

ROOT = Path(__file__).resolve().parents[1]
#: The bench sends as fast as acks return: the receiver's per-peer limit must not bind.
BENCH_DELIVERY = DeliveryConfig(
    retry_initial_ms=200, retry_max_ms=1_000, peer_rate=1e6, peer_burst=10**6
)
TEXT = "x" * 100  # a short chat line
STEP_TIMEOUT = 300.0


#: How the throughput run queues its messages (see the module docstring).
MODES = ("sequential", "concurrent", "batched")
BATCH = 64


@dataclass(frozen=True, slots=True)
class DmThroughput:
    mode: str
    messages: int
    seconds: float
    frame_bytes: int  # size of one DM frame on the wire (envelope + ratchet message)
    cpu_seconds: float = 0.0  # process CPU (both nodes, every thread) over the run

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_seconds / self.messages * 1e6


@dataclass(frozen=True, slots=True)
class DmLatency:
    samples: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class IdleRss:
    node_kib: int
    node_peak_kib: int
    import_only_kib: int

    @property
    def node_extra_kib(self) -> int:
        return self.node_kib - self.import_only_kib


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Delivered:
    """Message ids whose ``delivered`` event arrived, with a wait for a condition."""

    def __init__(self) -> None:
        self.ids: set[bytes] = set()
        self._pending: set[bytes] = set()
        self._changed = trio.Event()

    async def record(self, node: Node, task_status: trio.TaskStatus[None]) -> None:
        async with node.events() as stream:
            task_status.started()
            async for event in stream:
                if isinstance(event, DeliveryChanged) and event.state == "delivered":
                    self.ids.add(event.message_id)
                    self._pending.discard(event.message_id)
                    self._changed.set()
                    self._changed = trio.Event()

    async def wait_all(self, ids: list[bytes]) -> None:
        """Wait until every one of ``ids`` was delivered (O(1) per event: the bench must
        not charge the DM path for its own bookkeeping)."""
        self._pending = set(ids) - self.ids
        with trio.fail_after(STEP_TIMEOUT):
            while self._pending:
                await self._changed.wait()

    async def wait(self, condition: Callable[[], bool]) -> None:
        with trio.fail_after(STEP_TIMEOUT):
            while not condition():
                await self._changed.wait()


class _MeasuredStream:
    """A DM stream that records the size of every frame read (the receiver's view)."""

    def __init__(self, inner: FramedStream, sizes: list[int]) -> None:
        self._inner = inner
        self._sizes = sizes

    @property
    def remote_peer(self) -> str:
        return self._inner.remote_peer

    @property
    def protocol(self) -> str:
        return self._inner.protocol

    async def read_frame(self, max_size: int) -> bytes | None:
        frame = await self._inner.read_frame(max_size)
        if frame is not None:
            self._sizes.append(len(frame))
        return frame

    async def write_frame(self, data: bytes) -> None:
        await self._inner.write_frame(data)

    async def write_frames(self, frames: Sequence[bytes]) -> None:
        await self._inner.write_frames(frames)

    async def close(self) -> None:
        await self._inner.close()

    async def reset(self) -> None:
        await self._inner.reset()


class _MeasuringNetwork:
    """The libp2p network, with inbound DM streams wrapped in :class:`_MeasuredStream`."""

    def __init__(self, inner: Network, sizes: list[int]) -> None:
        self._inner = inner
        self._sizes = sizes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        if protocol != DM_PROTOCOL:
            self._inner.set_stream_handler(protocol, handler)
            return

        async def measured(stream: FramedStream) -> None:
            await handler(_MeasuredStream(stream, self._sizes))

        self._inner.set_stream_handler(protocol, measured)


def _measuring_opener(config: NodeConfig, sizes: list[int]) -> NetworkOpener:
    @asynccontextmanager
    async def open_network(device: Device) -> AsyncIterator[Network]:
        from p2pchat.net.libp2p_host import open_libp2p_network

        seed = device.signing_seed()
        async with open_libp2p_network(seed, config.net, jitter=random.Random()) as network:
            yield cast(Network, _MeasuringNetwork(network, sizes))

    return open_network


def _config(home: Path, *, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap)
    return NodeConfig(home=home, net=net, delivery=BENCH_DELIVERY, rpc=False, event_buffer=1 << 16)


def _identity() -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=nacl.utils.random, now=time.time_ns() // 1_000_000)


@asynccontextmanager
async def _two_nodes(
    tmp: Path, frame_sizes: list[int]
) -> AsyncIterator[tuple[Node, Node, _Delivered]]:
    """A sender and a receiver, connected, with a session set up by one message."""
    sender = Node(_config(tmp / "sender"), _identity())
    async with sender, trio.open_nursery() as nursery:
        boot = (f"{sender.listen_addrs[0]}/p2p/{sender.peer_id}",)
        config = _config(tmp / "receiver", bootstrap=boot)
        receiver = Node(config, _identity(), network=_measuring_opener(config, frame_sizes))
        async with receiver:
            delivered = _Delivered()
            await nursery.start(delivered.record, sender)
            await receiver.wait_published()
            first = await sender.send_dm(receiver.account_key, TEXT)
            await delivered.wait(lambda: first.message_id in delivered.ids)
            yield sender, receiver, delivered
        nursery.cancel_scope.cancel()


async def _queue_all(sender: Node, account: bytes, messages: int, mode: str) -> list[bytes]:
    """Queue ``messages`` DMs the ``mode`` way; their ids."""
    if mode == "sequential":
        return [(await sender.send_dm(account, TEXT)).message_id for _ in range(messages)]
    if mode == "batched":
        ids = []
        for start in range(0, messages, BATCH):
            count = min(BATCH, messages - start)
            ids += [m.message_id for m in await sender.send_dms(account, [TEXT] * count)]
        return ids
    if mode != "concurrent":
        raise ValueError(f"unknown mode {mode!r}")
    found: list[bytes] = []

    async def one() -> None:
        found.append((await sender.send_dm(account, TEXT)).message_id)

    async with trio.open_nursery() as nursery:
        for _ in range(messages):
            nursery.start_soon(one)
    return found


async def measure_dm(
    *, messages: int, round_trips: int, modes: tuple[str, ...] = MODES
) -> tuple[list[DmThroughput], DmLatency]:
    """Two nodes in temporary homes: throughput of ``messages`` queued each way of
    ``modes``, then ``round_trips`` one-at-a-time latencies."""
    frame_sizes: list[int] = []
    runs = []
    with tempfile.TemporaryDirectory(prefix="dmb") as tmp:
        async with _two_nodes(Path(tmp), frame_sizes) as (sender, receiver, delivered):
            account = receiver.account_key
            for mode in modes:
                start, cpu_start = time.perf_counter(), time.process_time()
                ids = await _queue_all(sender, account, messages, mode)
                await delivered.wait_all(ids)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
                runs.append((mode, elapsed, cpu))
            samples = []
            for _ in range(round_trips):
                t0 = time.perf_counter()
                message = await sender.send_dm(account, TEXT)
                await delivered.wait(lambda: message.message_id in delivered.ids)  # noqa: B023
                samples.append((time.perf_counter() - t0) * 1000)
            frame = int(statistics.median(frame_sizes[1:]))  # [0]: the X3DH message
    throughputs = [
        DmThroughput(
            mode=mode, messages=messages, seconds=elapsed, frame_bytes=frame, cpu_seconds=cpu
        )
        for mode, elapsed, cpu in runs
    ]
    latency = DmLatency(
        samples=round_trips, p50_ms=statistics.median(samples), p99_ms=_percentile(samples, 0.99)
    )
    return throughputs, latency


@dataclass(frozen=True, slots=True)
class FirstDm:
    nodes: int
    #: send_dm to a stranger until ``delivered`` (DHT lookups, X3DH, dial), one per pair
    first_ms: tuple[float, ...]
    second_ms: tuple[float, ...]  # the next message on that session
    connected: int  # pairs whose sender still had a connection to the stranger


async def measure_first_dm(*, nodes: int = 10, pairs: int = 3) -> FirstDm:
    """``nodes`` libp2p nodes bootstrapped to the first one, their records published;
    then ``pairs`` distinct pairs (node i to node N - i) exchange their first DM, each
    sender knowing the stranger only by its account key."""
    first: list[float] = []
    second: list[float] = []
    connected = 0
    with tempfile.TemporaryDirectory(prefix="dmf") as tmp, trio.fail_after(STEP_TIMEOUT):
        async with AsyncExitStack() as stack:
            hub = await stack.enter_async_context(Node(_config(Path(tmp) / "n0"), _identity()))
            boot = (f"{hub.listen_addrs[0]}/p2p/{hub.peer_id}",)
            started = [hub]
            for index in range(1, nodes):
                config = _config(Path(tmp) / f"n{index}", bootstrap=boot)
                started.append(await stack.enter_async_context(Node(config, _identity())))
            for node in started:
                await node.wait_published()
            for index in range(1, min(pairs, (nodes - 1) // 2) + 1):
                sender, stranger = started[index], started[nodes - index]
                # Strangers: in a network this small everyone is connected to everyone,
                # so the pair's connection is closed first; the sender must find it again.
                await sender._net.disconnect(stranger.peer_id)
                await stranger._net.disconnect(sender.peer_id)
                connected += stranger.peer_id in sender._net.connected_peers()
                delivered = _Delivered()
                async with trio.open_nursery() as nursery:
                    await nursery.start(delivered.record, sender)
                    for times in (first, second):
                        t0 = time.perf_counter()
                        message = await sender.send_dm(stranger.account_key, TEXT)
                        await delivered.wait(lambda: message.message_id in delivered.ids)  # noqa: B023
                        times.append((time.perf_counter() - t0) * 1000)
                    nursery.cancel_scope.cancel()
    return FirstDm(nodes=nodes, first_ms=tuple(first), second_ms=tuple(second), connected=connected)


_IDLE_NODE = """
import logging, sys, tempfile, time
from pathlib import Path
import nacl.utils, trio
from p2pchat.config import NodeConfig
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node

async def main():
    with tempfile.TemporaryDirectory(prefix="rss") as tmp:
        now = time.time_ns() // 1_000_000
        identity = UnlockedIdentity.generate(rng=nacl.utils.random, now=now)
        net = NetConfig(listen_hosts=("127.0.0.1",), port=0)
        async with Node(NodeConfig(home=Path(tmp), net=net), identity):
            print("listening", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)  # idle until stdin closes

logging.getLogger("libp2p").setLevel(logging.CRITICAL)
trio.run(main)
"""
_IMPORT_ONLY = "import sys, libp2p; print('listening', flush=True); sys.stdin.read()"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


async def _rss_of(script: str) -> tuple[int, int]:
    """Start ``python -c script``; once it prints a line, its (VmRSS, VmHWM) in KiB."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with trio.fail_after(120):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(64)
                if not chunk:
                    raise RuntimeError("the process exited before it was ready")
                line += chunk
        rss = _status_kib(process.pid, "VmRSS"), _status_kib(process.pid, "VmHWM")
        await process.stdin.aclose()  # the idle process exits
        with trio.move_on_after(30):
            await process.wait()
        return rss
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdout.aclose()


async def measure_idle_rss() -> IdleRss:
    """RSS of a fresh process running an idle, listening node (RPC on, no peers),
    beside a fresh process that only ran ``import libp2p``."""
    node_kib, peak_kib = await _rss_of(_IDLE_NODE)
    import_kib, _ = await _rss_of(_IMPORT_ONLY)
    return IdleRss(node_kib=node_kib, node_peak_kib=peak_kib, import_only_kib=import_kib)


def report_first_dm(first: FirstDm) -> str:
    median = statistics.median(first.first_ms)
    samples = ", ".join(f"{ms:,.0f}" for ms in first.first_ms)
    return (
        f"goal: first DM to a stranger <= 300 ms at N = {first.nodes}: median {median:,.0f} ms "
        f"({median / 300:.1f}x the goal; {samples} ms; {first.connected} of "
        f"{len(first.first_ms)} senders were still connected after disconnecting); "
        f"the next DM: median {statistics.median(first.second_ms):,.1f} ms"
    )


def report(
    throughputs: list[DmThroughput], latency: DmLatency, raw: NetBaseline, rss: IdleRss
) -> str:
    (one_way,) = raw.one_way
    rows = [
        (
            f"{t.mode} msg/s ({t.messages} x {t.frame_bytes} B)",
            f"{t.messages_per_second:,.1f}",
            f"{one_way.messages_per_second:,.0f}",
            f"{t.messages_per_second / one_way.messages_per_second:.2%}",
        )
        for t in throughputs
    ]
    rows += [
        (
            f"latency p50, ms ({latency.samples} sends)",
            f"{latency.p50_ms:.2f}",
            f"{raw.rtt_p50_ms:.2f}",
            f"x{latency.p50_ms / raw.rtt_p50_ms:.1f}",
        ),
        (
            "latency p99, ms",
            f"{latency.p99_ms:.2f}",
            f"{raw.rtt_p99_ms:.2f}",
            f"x{latency.p99_ms / raw.rtt_p99_ms:.1f}",
        ),
    ]
    header = ("DM between two nodes (127.0.0.1)", "DM", "raw libp2p", "DM/raw")
    lines = [f"{header[0]:<44} {header[1]:>10} {header[2]:>11} {header[3]:>8}"]
    lines += [f"{a:<44} {b:>10} {c:>11} {d:>8}" for a, b, c, d in rows]
    for t in throughputs:
        ratio = t.messages_per_second / one_way.messages_per_second
        cpu = t.cpu_us_per_message
        lines.append(
            f"goal ({t.mode}): DM throughput >= 60 % of raw ({ratio:.2%} measured); "
            f"CPU per DM (both ends) <= 600 us ({cpu:,.0f} us, {cpu / 600:.1f}x the goal)"
        )
    rtt_ratio = latency.p50_ms / raw.rtt_p50_ms
    lines.append(f"goal: latency p50 <= 2x raw RTT (x{rtt_ratio:.1f} measured)")
    mib = 1024
    lines.append(
        f"idle node RSS: {rss.node_kib / mib:.1f} MiB (peak {rss.node_peak_kib / mib:.1f}); "
        f"`import libp2p` alone: {rss.import_only_kib / mib:.1f} MiB; "
        f"node on top: {rss.node_extra_kib / mib:+.1f} MiB"
    )
    return "\n".join(lines)


async def main(*, quick: bool, first_dm: bool = True) -> None:
    messages, round_trips = (30, 10) if quick else (1_000, 300)
    throughputs, latency = await measure_dm(messages=messages, round_trips=round_trips)
    raw = await measure_framed_baseline(
        messages=max(messages, 200) * 10,
        round_trips=max(round_trips, 100),
        sizes=(throughputs[0].frame_bytes,),
    )
    rss = await measure_idle_rss()
    print(report(throughputs, latency, raw, rss))
    if first_dm:
        print(report_first_dm(await measure_first_dm(nodes=3 if quick else 10)))


def _count_hops(messages: int, mode: str) -> None:
    """Worker-thread hops and SQLite commits per DM (both nodes), over a throughput run
    (a one-message run subtracted: node start, publishing, the session's setup)."""
    import p2pchat.storage.sqlite as sqlite_store

    counts = {"thread hops": 0, "commits": 0}
    run_sync, commit = trio.to_thread.run_sync, sqlite_store._commit

    async def counting_run_sync(*args: Any, **kwargs: Any) -> Any:
        counts["thread hops"] += 1
        return await run_sync(*args, **kwargs)

    def counting_commit(conn: Any) -> None:
        counts["commits"] += 1
        commit(conn)

    trio.to_thread.run_sync = counting_run_sync  # type: ignore[assignment]
    sqlite_store._commit = counting_commit
    trio.run(lambda: measure_dm(messages=1, round_trips=1, modes=(mode,)))
    base = dict(counts)
    trio.run(lambda: measure_dm(messages=messages + 1, round_trips=1, modes=(mode,)))
    per = {name: (counts[name] - 2 * base[name]) / messages for name in counts}
    print("per DM (both ends): " + ", ".join(f"{v:.2f} {k}" for k, v in per.items()))


def _profile(messages: int, mode: str) -> None:
    """cProfile of the throughput run (both nodes), top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(lambda: measure_dm(messages=messages, round_trips=1, modes=(mode,)))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--profile", type=int, metavar="N", help="profile N messages instead")
    parser.add_argument("--hops", type=int, metavar="N", help="count thread hops over N DMs")
    parser.add_argument(
        "--mode", choices=MODES, default="batched", help="how --profile / --hops queue"
    )
    parser.add_argument("--no-first-dm", action="store_true", help="skip the first-DM part")
    parser.add_argument(
        "--first-dm", type=int, metavar="N", help="only the first DM to a stranger among N nodes"
    )
    args = parser.parse_args()
    # py-libp2p logs expected stream resets at ERROR level.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    if args.profile:
        _profile(args.profile, args.mode)
    elif args.hops:
        _count_hops(args.hops, args.mode)
    elif args.first_dm:
        print(report_first_dm(trio.run(lambda: measure_first_dm(nodes=args.first_dm))))
    else:
        trio.run(lambda: main(quick=args.quick, first_dm=not args.no_first_dm))
