"""A node with a long group history: start time and memory, beside an empty node's.

Issue 12: a node that runs for months must not need memory in proportion to its
history. Setup writes a public group with ``--events`` posts (default 100,000) straight
into a home's store through the real store API (``SqliteStore``, sealed under the
identity's key as a node writes it, in batched transactions); the events are signed by
the group engine itself, so they are exactly what a node would have stored. Then each
node is started in a fresh Python process (so RSS is its own): an empty node (the
baseline, measured in the same run) and the node with the history. For each: seconds
until ``async with Node`` returns (the store opened, every group loaded, listening on
127.0.0.1 with real py-libp2p), and the process's RSS once started.

    .venv/bin/python -m bench.history_bench               # 100,000 events
    .venv/bin/python -m bench.history_bench --events 2000 # smoke run
    .venv/bin/python -m bench.history_bench --flood 8500  # a member's flood, alone

``--flood N``: the memory a member's flood of N valid posts leaves in a group engine
(issue 12: one member posted 8,521 posts in 30 s; each member's RSS grew by ~63 MB). In a
fresh process, a member of an open group signs N posts; the RSS is read (after a garbage
collection), the posts are received one by one through ``GroupEngine.receive`` (the
full check: decoding, signature, chain, fold), each as a fresh copy of its bytes, and
the RSS is read again. After each post, the engine is told it was stored (as a node
does once it has written it to SQLite): its bytes leave memory. The author ceiling is
lifted for the measure: it defers the excess to sync, which fetches it later, so this
is the memory once all N are held.
It measures the engine (what grows with history), not a node's stores and buffers.

Goals (issue 12): start <= 3 s and RSS <= 150 MB with 100,000 events.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio
from nacl.signing import SigningKey

from p2pchat.config import NodeConfig
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node
from p2pchat.protocol.content import Content
from p2pchat.protocol.group_engine import EngineConfig, GroupEngine
from p2pchat.protocol.group_events import (
    GroupDescriptor,
    MemberJoin,
    Post,
    Rules,
    event_id_of,
    sign_event,
)
from p2pchat.protocol.group_log import decode_stored
from p2pchat.storage.records import GroupInfo, GroupStatus, StoredGroupEvent
from p2pchat.storage.sqlite import SqliteStore

__all__ = ["Figures", "bench_identity", "main", "measure", "setup_history"]

_NOW = 1_760_000_000_000
_BATCH = 5_000
START_GOAL_S = 3.0
RSS_GOAL_MB = 150.0


def bench_identity(seed: str) -> UnlockedIdentity:
    rng = random.Random(seed)
    return UnlockedIdentity.generate(rng=rng.randbytes, now=_NOW)


async def setup_history(home: Path, seed: str, events: int) -> float:
    """Write a public group with ``events`` posts into ``home``'s store; return seconds."""
    started = time.perf_counter()
    identity = bench_identity(seed)
    rng = random.Random(seed + "-group")
    rules = Rules(join="open", post="member", invite="member", slow=0)
    descriptor = GroupDescriptor(kind="public", name="history bench", rules=rules, tags=("bench",))
    engine, genesis = GroupEngine.create(
        descriptor, device=identity.device, now=_NOW, rng=rng.randbytes, config=EngineConfig()
    )
    await trio.Path(home).mkdir(parents=True, exist_ok=True, mode=0o700)
    async with await SqliteStore.open(home / "store.sqlite3", seal_key=identity.local_key) as store:
        await store.put_group(
            GroupInfo(
                group_id=engine.group_id,
                kind="public",
                name=descriptor.name,
                genesis=genesis,
                status=GroupStatus.ACTIVE,
                joined_at=_NOW,
                updated_at=_NOW,
                tags=descriptor.tags,
            )
        )
        # The owner's device chain continues from the genesis (its seq 1): signed here
        # directly (what GroupEngine.author would sign for a sole author), not folded.
        signing_key = SigningKey(identity.device.signing_seed())
        account = identity.device.certificate.account_key
        first = decode_stored(genesis).event
        seq, prev, lamport = first.seq, first.event_id, first.lamport
        batch: list[tuple[bytes, bytes, int, int]] = [(genesis, prev, seq, lamport)]
        for i in range(events):
            body = Post(content=Content(type="p2pchat/text", body={}, text=f"post {i} " * 8))
            data = sign_event(
                body,
                signing_key=signing_key,
                account=account,
                group=engine.group_id,
                seq=seq + 1,
                prev=prev,
                lamport=lamport + 1,
                now=_NOW + i,
            )
            seq, prev, lamport = seq + 1, event_id_of(data), lamport + 1
            batch.append((data, prev, seq, lamport))
            if len(batch) >= _BATCH or i == events - 1:
                await _write(store, engine.group_id, identity.device.public_key, batch)
                batch = []
    return time.perf_counter() - started


async def _write(
    store: SqliteStore, group_id: bytes, device: bytes, batch: list[tuple[bytes, bytes, int, int]]
) -> None:
    rows = [
        StoredGroupEvent(
            event_id=event_id, device=device, seq=seq, lamport=lamport, data=data, received_at=_NOW
        )
        for data, event_id, seq, lamport in batch
    ]
    await store.add_group_events(group_id, rows)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _start_once(home: Path, seed: str) -> dict[str, float]:
    identity = bench_identity(seed)
    net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=())
    config = NodeConfig(home=home, net=net, rpc=False)
    started, cpu = time.perf_counter(), time.process_time()
    async with Node(config, identity) as node:
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        groups = await node.groups()
        stats = await node.statistics()
        return {
            "start_s": elapsed,
            # CPU seconds of the start (this process): the figure to compare on a shared
            # machine, where wall time also counts the other processes' turns.
            "start_cpu_s": cpu,
            "rss_mb": _rss_mb(),
            "groups": len(groups),
            "events": stats["store"]["group_events"] if "store" in stats else -1,
        }


@dataclass(frozen=True, slots=True)
class Figures:
    events: int
    setup_s: float
    empty_start_s: float
    empty_rss_mb: float
    full_start_s: float
    full_rss_mb: float
    empty_cpu_s: float = 0.0
    full_cpu_s: float = 0.0

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [
            (
                "start, seconds",
                f"{self.empty_start_s:.2f}",
                f"{self.full_start_s:.2f}",
                f"<= {START_GOAL_S:.0f}",
            ),
            ("start, CPU seconds", f"{self.empty_cpu_s:.2f}", f"{self.full_cpu_s:.2f}", ""),
            (
                "RSS once started, MB",
                f"{self.empty_rss_mb:.0f}",
                f"{self.full_rss_mb:.0f}",
                f"<= {RSS_GOAL_MB:.0f}",
            ),
            (
                "RSS per stored event, KB",
                "-",
                f"{(self.full_rss_mb - self.empty_rss_mb) * 1024 / max(self.events, 1):.2f}",
                "",
            ),
        ]


def measure(home: Path, seed: str) -> dict[str, float]:
    """Start a node on ``home`` in a fresh process; its start time and RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.history_bench", "--measure", str(home), "--seed", seed],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


async def main(*, events: int = 100_000) -> Figures:
    with tempfile.TemporaryDirectory(prefix="p2pchat-history-") as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "full"
        setup_s = await setup_history(full, "full", events)
        base = await trio.to_thread.run_sync(measure, empty, "empty")
        loaded = await trio.to_thread.run_sync(measure, full, "full")
    figures = Figures(
        events=events,
        setup_s=setup_s,
        empty_start_s=base["start_s"],
        empty_rss_mb=base["rss_mb"],
        full_start_s=loaded["start_s"],
        full_rss_mb=loaded["rss_mb"],
        empty_cpu_s=base["start_cpu_s"],
        full_cpu_s=loaded["start_cpu_s"],
    )
    print(f"history bench: one public group with {events:,} stored posts")
    print(f"  setup (sign + store, batched): {setup_s:.1f} s")
    print(f"  {'':28} {'empty node':>12} {'with history':>14} {'goal':>8}")
    for name, base_figure, full_figure, goal in figures.rows():
        print(f"  {name:28} {base_figure:>12} {full_figure:>14} {goal:>8}")
    return figures


def _sign_flood(posts: int) -> tuple[bytes, list[bytes]]:
    """The genesis of an open group, then a member's join and ``posts`` posts."""
    owner, member = bench_identity("flood-owner"), bench_identity("flood-member")
    rng = random.Random("flood")
    rules = Rules(join="open", post="member", invite="member", slow=0)
    descriptor = GroupDescriptor(kind="public", name="flood", rules=rules, tags=())
    _, genesis = GroupEngine.create(descriptor, device=owner.device, now=_NOW, rng=rng.randbytes)
    flooder = GroupEngine.from_genesis(genesis, config=_FLOOD_CONFIG)
    events = [flooder.author(MemberJoin(), device=member.device, now=_NOW)]
    for i in range(posts):
        text = f"flood {i} " * 8
        body = Post(content=Content(type="p2pchat/text", body={}, text=text))
        events.append(flooder.author(body, device=member.device, now=_NOW + i))
    return genesis, events


#: The author ceiling lifted (see the module docstring).
_FLOOD_CONFIG = EngineConfig(author_rate=1e9, author_burst=10**9)


def _flood_measure(path: Path) -> dict[str, float]:
    """In a fresh process: receive the events written at ``path``; RSS before and after
    (the signing happened in another process, so no freed memory is reused here)."""
    blob = path.read_bytes()
    sizes = json.loads(path.with_suffix(".json").read_text())
    genesis, join = blob[: sizes[0]], blob[sizes[0] : sizes[0] + sizes[1]]
    receiver = GroupEngine.from_genesis(genesis, config=_FLOOD_CONFIG)
    receiver.receive(join, now=_NOW)
    gc.collect()
    before, cpu = _rss_mb(), time.process_time()
    offset = sizes[0] + sizes[1]
    for i, size in enumerate(sizes[2:]):
        # A fresh bytes object per post (as from the network), counted in the delta.
        result = receiver.receive(blob[offset : offset + size], now=_NOW + i, source="flooder")
        # A node stores what it accepted, then the engine drops the bytes (the store's
        # own memory is not counted: it pages from SQLite).
        receiver.mark_stored(s.event_id for s in result.accepted)
        offset += size
    cpu = time.process_time() - cpu
    gc.collect()
    after = _rss_mb()
    assert len(receiver.log) == len(sizes), "every post is held"
    return {"posts": len(sizes) - 2, "added_mb": after - before, "cpu_s": cpu}


def flood(posts: int) -> dict[str, float]:
    """RSS added by ``posts`` valid posts of one member received by an engine (see the
    module docstring): signed here, received in a fresh process."""
    genesis, events = _sign_flood(posts)
    with tempfile.TemporaryDirectory(prefix="p2pchat-flood-") as tmp:
        path = Path(tmp) / "events.bin"
        path.write_bytes(genesis + b"".join(events))
        path.with_suffix(".json").write_text(json.dumps([len(genesis)] + [len(e) for e in events]))
        out = subprocess.run(
            [sys.executable, "-m", "bench.history_bench", "--flood-measure", str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--flood", type=int, help="a member's flood of N posts, alone")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flood-measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(trio.run(_start_once, args.measure, args.seed)))
        return
    if args.flood_measure is not None:
        print(json.dumps(_flood_measure(args.flood_measure)))
        return
    if args.flood is not None:
        figures = flood(args.flood)
        print(
            f"flood: {args.flood:,} posts of one member held by an engine: "
            f"+{figures['added_mb']:.1f} MB RSS "
            f"({figures['added_mb'] * 1024 / max(args.flood, 1):.2f} KB per post; "
            f"goal <= 10 MB for ~8,500), {figures['cpu_s']:.1f} CPU s to receive"
        )
        return
    trio.run(lambda: main(events=args.events))


if __name__ == "__main__":
    _cli()
