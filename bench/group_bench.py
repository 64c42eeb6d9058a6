"""Groups on real py-libp2p hosts, against raw gossipsub and raw streams in the same run.

Every figure is measured on the same hosts, in one process, on 127.0.0.1: the raw
gossipsub baseline publishes on its own topic through the very networks the group
nodes use (same connections, same gossip parameters), and the raw stream baseline is
:func:`bench.net_bench.measure_framed_baseline`. Wall-clock numbers; all nodes share
one Python thread, so per-node figures are lower bounds.

    .venv/bin/python -m bench.group_bench            # 20 nodes (~2-3 minutes)
    .venv/bin/python -m bench.group_bench --quick    # smoke run, 4 nodes
    .venv/bin/python -m bench.group_bench --profile  # + where catch-up time goes

What is compared (goals from issue 6):
  latency    one message at a time, p50/p99 over every receiver     group <= 1.2x raw
  burst      N messages back to back, share delivered               group 100 % after sync
  sustained  messages per second delivered to *every* member        group >= 10x raw
  catch-up   late joiner's bytes/s vs one raw framed stream         group >= 50 %
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import logging
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nacl.utils
import trio

from bench.net_bench import measure_framed_baseline
from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.events import GroupMessage
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node
from p2pchat.protocol.content import Content
from p2pchat.protocol.group_events import Post, decode_event
from p2pchat.storage.records import StoredGroupEvent

__all__ = ["Settings", "main", "run"]

RAW_TOPIC = "/p2pchat/bench/raw"
#: Large enough that no bench phase is shaped by the per-peer DoS budget (the default,
#: 50 signatures/s per peer, caps one author's gossip at 50 events/s per receiver; the
#: hostile-peer test covers that policy).
BENCH_DELIVERY = DeliveryConfig(
    retry_initial_ms=200,
    retry_max_ms=1_000,
    ack_timeout_ms=3_000,
    peer_rate=1e6,
    peer_burst=10**6,
    author_rate=1e6,  # nor by the author ceiling (tests/node/test_group_flood.py)
    author_burst=10**6,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    nodes: int = 20
    latency_messages: int = 20
    latency_interval: float = 0.3
    burst: int = 500
    sustained_seconds: float = 4.0
    #: Raw gossipsub is paced at each of these rates (messages/s); the best one counts.
    raw_paces: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0)
    history: int = 10_000
    #: Arrivals are complete once none came for this long (> the 1 s gossip heartbeat,
    #: which is when IHAVE/IWANT repairs what a mesh push missed).
    settle: float = 3.0
    profile: bool = False

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            nodes=4,
            latency_messages=4,
            latency_interval=0.2,
            burst=40,
            sustained_seconds=1.0,
            raw_paces=(10.0, 50.0),
            history=300,
            settle=1.5,
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Arrivals:
    """When each labelled message reached each node (perf_counter seconds)."""

    def __init__(self) -> None:
        self.at: defaultdict[str, dict[int, float]] = defaultdict(dict)
        self.changed = trio.Event()

    def note(self, label: str, node: int) -> None:
        self.at[label].setdefault(node, time.perf_counter())
        self.changed.set()

    def count(self, labels: list[str]) -> int:
        """Arrivals at the receivers (node 0 publishes everything)."""
        return sum(len([n for n in self.at.get(label, {}) if n != 0]) for label in labels)

    async def settle(self, labels: list[str], *, want: int, quiet: float, limit: float) -> None:
        """Wait until ``want`` arrivals, or none for ``quiet`` s, or ``limit`` s in all."""
        with trio.move_on_after(limit):
            while self.count(labels) < want:
                self.changed = trio.Event()
                with trio.move_on_after(quiet) as scope:
                    await self.changed.wait()
                if scope.cancelled_caught:
                    return


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    raw: float
    group: float
    unit: str
    goal: str

    def ratio(self) -> float:
        return self.group / self.raw if self.raw else float("inf")


# -- the cluster ----------------------------------------------------------------------


@asynccontextmanager
async def _cluster(tmp: Path, count: int) -> AsyncIterator[list[Node]]:
    def config(home: Path, bootstrap: tuple[str, ...]) -> NodeConfig:
        net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap)
        return NodeConfig(
            home=home, net=net, delivery=BENCH_DELIVERY, rpc=False, event_buffer=1 << 20
        )

    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        for i in range(count):
            boot = () if not nodes else (f"{nodes[0].listen_addrs[0]}/p2p/{nodes[0].peer_id}",)
            identity = UnlockedIdentity.generate(rng=nacl.utils.random, now=_now_ms())
            nodes.append(
                await stack.enter_async_context(Node(config(tmp / f"n{i}", boot), identity))
            )
        for node in nodes:
            await node.wait_published()
        yield nodes


async def _record_group(node: Node, index: int, group_id: bytes, arrivals: Arrivals) -> None:
    async with node.events() as stream:
        async for event in stream:
            if isinstance(event, GroupMessage) and event.group_id == group_id:
                arrivals.note(event.text, index)


async def _record_raw(node: Node, index: int, arrivals: Arrivals) -> None:
    subscription = await node._net.pubsub.subscribe(RAW_TOPIC)
    async for _, data in subscription:
        arrivals.note(data.split(b"|", 1)[0].decode(), index)


def _raw_payload(label: str) -> bytes:
    # About the size of a one-event group batch on the wire.
    return label.encode() + b"|" + b"x" * 400


async def _wait(predicate: Callable[[], bool], *, limit: float) -> bool:
    with trio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling node state in a bench
            await trio.sleep(0.05)
        return True
    return False


# -- phases ---------------------------------------------------------------------------


async def _latency(
    sides: list[tuple[Callable[[str], object], Arrivals, str]], s: Settings
) -> list[list[float]]:
    """One message at a time, the sides taking turns (so both see the same background
    load); milliseconds from publish to arrival, per side, over every receiver."""
    sent: dict[str, float] = {}
    for i in range(s.latency_messages):
        for publish, _, prefix in sides:
            label = f"{prefix}-lat-{i}"
            sent[label] = time.perf_counter()
            await publish(label)  # type: ignore[misc]
            await trio.sleep(s.latency_interval / len(sides))
    samples = []
    for _, arrivals, prefix in sides:
        labels = [label for label in sent if label.startswith(f"{prefix}-")]
        await arrivals.settle(labels, want=len(labels) * (s.nodes - 1), quiet=s.settle, limit=30)
        samples.append(
            [
                (at - sent[label]) * 1000
                for label in labels
                for node, at in arrivals.at.get(label, {}).items()
                if node != 0
            ]
        )
    return samples


async def _burst(
    publish: Callable[[str], object], arrivals: Arrivals, prefix: str, count: int, s: Settings
) -> tuple[list[str], float]:
    labels = [f"{prefix}-burst-{i}" for i in range(count)]
    for label in labels:
        await publish(label)  # type: ignore[misc]
    await arrivals.settle(labels, want=count * (s.nodes - 1), quiet=s.settle, limit=60)
    return labels, arrivals.count(labels) / (count * (s.nodes - 1))


@dataclass(frozen=True, slots=True)
class Sustained:
    published: int
    complete: int
    seconds: float  # first publish to the last arrival of a complete message

    @property
    def rate(self) -> float:
        return self.complete / self.seconds if self.seconds else 0.0

    @property
    def share(self) -> float:
        return self.complete / self.published if self.published else 0.0


async def _sustained(
    publish: Callable[[str], object],
    arrivals: Arrivals,
    prefix: str,
    s: Settings,
    *,
    pace: float | None = None,
) -> Sustained:
    """Publish for ``sustained_seconds`` (``pace`` messages/s, or back to back); count the
    messages that reached every other node, per second up to the last such arrival."""
    labels: list[str] = []
    start = time.perf_counter()
    while time.perf_counter() - start < s.sustained_seconds:
        label = f"{prefix}-sus-{pace}-{len(labels)}"
        labels.append(label)
        await publish(label)  # type: ignore[misc]
        await trio.sleep(0 if pace is None else 1 / pace)
    await arrivals.settle(labels, want=len(labels) * (s.nodes - 1), quiet=s.settle, limit=90)
    complete = [label for label in labels if arrivals.count([label]) == s.nodes - 1]
    if not complete:
        return Sustained(len(labels), 0, 0.0)
    last = max(max(arrivals.at[label].values()) for label in complete)
    return Sustained(len(labels), len(complete), last - start)


async def _sync_until_complete(nodes: list[Node], group_id: bytes, want: int) -> float:
    """Run sync rounds until every node holds ``want`` events; seconds it took."""
    start = time.perf_counter()
    for _ in range(10):
        if all(n._groups.engine(group_id).statistics()["events"] >= want for n in nodes):
            break
        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(node.sync_group, group_id)
    return time.perf_counter() - start


def _bulk_author(node: Node, group_id: bytes, count: int) -> list[StoredGroupEvent]:
    """``count`` posts straight on the creator's engine: a long history, fast."""
    groups = node._groups
    engine = groups.engine(group_id)
    now = _now_ms()
    rows = []
    for i in range(count):
        body = Post(content=Content(type="p2pchat/text", body={}, text=f"archive {i}"))
        data = engine.author(body, device=groups._device, now=now)
        stored = engine.log.get(decode_event(data).event_id)
        assert stored is not None
        rows.append(
            StoredGroupEvent(
                event_id=stored.event_id,
                device=stored.event.author_device,
                seq=stored.event.seq,
                lamport=stored.event.lamport,
                data=data,
                received_at=now,
            )
        )
    return rows


async def _catch_up(nodes: list[Node], s: Settings) -> tuple[int, int, float, str]:
    """A group with ``history`` events; the last node joins it late. Returns events,
    bytes, seconds and (with ``profile``) the profile of the join."""
    creator, late = nodes[0], nodes[-1]
    group = await creator.create_group("Archive")
    rows = _bulk_author(creator, group, s.history)
    await creator._groups._store.add_group_events(group, rows)
    engine = creator._groups.engine(group)
    engine.mark_stored(r.event_id for r in rows)  # stored: as a node, served from the store
    link = await creator.invite(group)
    total = engine.statistics()["events"]
    size = sum(len(r.data) for r in rows) + len(engine.event_bytes(group) or b"")
    profiler = cProfile.Profile() if s.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    await late.join_group(link)
    joined = late._groups.engine(group)
    await _wait(lambda: joined.statistics()["events"] >= total, limit=120)
    elapsed = time.perf_counter() - start
    if profiler:
        profiler.disable()
    return total, size, elapsed, "" if profiler is None else _profile_text(profiler)


def _profile_text(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
    return out.getvalue()


# -- the run --------------------------------------------------------------------------


async def run(s: Settings) -> list[Row]:
    rows: list[Row] = []
    notes: list[str] = []
    sustained_profile = ""
    raw_stream = await measure_framed_baseline(messages=2000, round_trips=50, sizes=(1024,))
    with tempfile.TemporaryDirectory(prefix="groupbench") as tmp:
        async with _cluster(Path(tmp), s.nodes) as nodes, trio.open_nursery() as nursery:
            setup = time.perf_counter()
            creator = nodes[0]
            group_arrivals, raw_arrivals = Arrivals(), Arrivals()
            # The raw topic is subscribed first, so that its mesh is at least as settled
            # as the group's when measuring starts (a young mesh delivers at heartbeats).
            for i, node in enumerate(nodes):
                nursery.start_soon(_record_raw, node, i, raw_arrivals)
            group = await creator.create_group("Bench", tags=("bench",))
            for node in nodes[1:]:
                await node.join_group(group.hex())
            await _wait(
                lambda: all(len(n.group_state(group).members) == s.nodes for n in nodes), limit=60
            )
            for i, node in enumerate(nodes):
                nursery.start_soon(_record_group, node, i, group, group_arrivals)
            await trio.sleep(3.0)  # three gossip heartbeats after the last join
            _progress(f"setup: {s.nodes} nodes joined in {time.perf_counter() - setup:.1f} s")

            async def raw(label: str) -> None:
                await creator._net.pubsub.publish(RAW_TOPIC, _raw_payload(label))

            async def post(label: str) -> None:
                await creator.post(group, label)

            raw_lat, group_lat = await _latency(
                [(raw, raw_arrivals, "raw"), (post, group_arrivals, "grp")], s
            )
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                rows.append(
                    Row(
                        f"latency {name}, {s.nodes} nodes",
                        _percentile(raw_lat, q),
                        _percentile(group_lat, q),
                        "ms",
                        "<= 1.2x",
                    )
                )
            _progress(f"latency: {len(raw_lat)} raw and {len(group_lat)} group samples")

            _, raw_share = await _burst(raw, raw_arrivals, "raw", s.burst, s)
            labels, gossip_share = await _burst(post, group_arrivals, "grp", s.burst, s)
            want = creator._groups.engine(group).statistics()["events"]
            synced_in = await _sync_until_complete(nodes, group, want)
            await group_arrivals.settle(
                labels, want=s.burst * (s.nodes - 1), quiet=s.settle, limit=30
            )
            after_sync = group_arrivals.count(labels) / (s.burst * (s.nodes - 1))
            rows.append(
                Row(
                    f"burst of {s.burst}, delivered",
                    raw_share * 100,
                    after_sync * 100,
                    "%",
                    "100 %",
                )
            )
            notes.append(
                f"burst: group gossip alone delivered {gossip_share:.1%}; "
                f"sync rounds took {synced_in:.2f} s"
            )
            _progress("burst done")

            paced = [
                (pace, await _sustained(raw, raw_arrivals, "raw", s, pace=pace))
                for pace in s.raw_paces
            ]
            best_pace, best = max(paced, key=lambda p: p[1].rate)
            _progress("sustained raw done")
            profiler = cProfile.Profile() if s.profile else None
            if profiler:
                profiler.enable()
            grp = await _sustained(post, group_arrivals, "grp", s)
            if profiler:
                profiler.disable()
                sustained_profile = _profile_text(profiler)
            rows.append(Row("sustained, delivered to all", best.rate, grp.rate, "msg/s", ">= 10x"))
            notes.append(
                "sustained raw, paced: "
                + ", ".join(f"{p:g}/s -> {r.rate:.1f}/s ({r.share:.0%} to all)" for p, r in paced)
                + f"; best at {best_pace:g}/s"
            )
            notes.append(
                f"sustained group, one author posting back to back: {grp.published} events, "
                f"{grp.share:.1%} reached every member by gossip alone, the last after "
                f"{grp.seconds:.1f} s"
            )
            _progress("sustained group done")

            total, size, elapsed, profile = await _catch_up(nodes, s)
            raw_bps = raw_stream.one_way[0].megabytes_per_second * 1e6
            rows.append(
                Row("catch-up, bytes/s", raw_bps / 1e6, size / elapsed / 1e6, "MB/s", ">= 50 %")
            )
            notes.append(
                f"catch-up: {total} events ({size / 1e6:.1f} MB) in {elapsed:.2f} s = "
                f"{total / elapsed:,.0f} events/s; raw stream "
                f"{raw_stream.one_way[0].messages_per_second:,.0f} frames/s of 1 KiB"
            )
            stats = await creator.statistics()
            notes.append(f"creator transport counters: {stats['groups']['transport']}")
            nursery.cancel_scope.cancel()
    _print(rows, notes)
    if sustained_profile:
        print("\nprofile of the sustained group phase, every node (tottime):")
        print(sustained_profile)
    if profile:
        print("\nprofile of the late joiner's catch-up (tottime):")
        print(profile)
    return rows


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _print(rows: list[Row], notes: list[str]) -> None:
    print(f"{'measure':<34} {'raw':>10} {'group':>10} {'unit':>6} {'ratio':>8}  goal")
    for row in rows:
        print(
            f"{row.name:<34} {row.raw:>10,.2f} {row.group:>10,.2f} {row.unit:>6} "
            f"{row.ratio():>8.2f}  {row.goal}"
        )
    for note in notes:
        print(f"  {note}")


async def main(*, quick: bool = False, profile: bool = False) -> list[Row]:
    settings = Settings.quick() if quick else Settings()
    return await run(dataclasses.replace(settings, profile=profile))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (4 nodes)")
    parser.add_argument("--profile", action="store_true", help="profile the late joiner")
    args = parser.parse_args()
    # py-libp2p logs expected stream resets and DHT misses at ERROR level.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)
    trio.run(lambda: main(quick=args.quick, profile=args.profile))
