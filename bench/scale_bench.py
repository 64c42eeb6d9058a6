"""Groups across N real ``p2pchat node run`` processes, beside bare gossipsub processes.

Everything runs on 127.0.0.1, each node in its own process (the command users run, with
its own home, SQLite store and RPC socket), so a node's CPU and memory are its own:

1. **group**: N nodes; node 0 creates a public group, the others join it by id through
   the RPC; once every member is in, one RPC client posts ``--posts`` messages to node 0
   back to back (each ``groups.post`` awaited: the fastest rate one client can post)
   while every other node's ``group.message`` events are followed over its RPC socket.
2. **bare**: N ``bench._gossip_peer`` processes in the same run: py-libp2p gossipsub with
   the same parameters (``GossipConfig``), the same transport stack (Noise, Yamux, one
   connection per peer), every peer connected to every other (as the nodes' connection
   manager ends up at N = 20), one of them publishing the same number of messages back
   to back.

For each side: time until every receiver had every message (or the share delivered when
some never arrived), latency p50/p99 over all (message, receiver) pairs (authored time to
arrival; the group side's arrival is when the RPC event reached this process), CPU per
receiving node per delivered message (``/proc/<pid>/stat`` utime + stime over the
posting and settling window, summed over receivers, divided by deliveries), and RSS
(``VmRSS``) at the end. Ratios group / bare are printed beside them, and the goal of
issue 15 (N = 20: <= 1 ms CPU per node per delivered message, p99 <= 1 s).

    .venv/bin/python -m bench.scale_bench                  # N = 20, 200 posts (~3-5 min)
    .venv/bin/python -m bench.scale_bench --quick          # N = 4, 40 posts
    .venv/bin/python -m bench.scale_bench --only group --keep /tmp/scale  # keep homes/logs
    .venv/bin/python -m bench.scale_bench --py-spy 30 --keep /tmp/s  # + py-spy, 2 nodes

The machine is shared: the load average is printed before each side; compare ratios
from one run rather than absolute figures across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import trio

from p2pchat.client import Client
from p2pchat.errors import NotFoundError, P2PChatError

__all__ = ["Side", "main", "run_bare", "run_group"]

GOAL_CPU_MS = 1.0
GOAL_P99_S = 1.0
_TICK = os.sysconf("SC_CLK_TCK")
_NODE_ARGS = (
    "--create-identity",
    "--insecure-no-passphrase",
    "--listen",
    "127.0.0.1",
    "--port",
    "0",
    "--json",
    # Irrelevant on loopback, and the bare side has none of them.
    "--no-relay",
    "--no-relay-service",
    "--no-hole-punching",
)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load() -> str:
    return "/".join(Path("/proc/loadavg").read_text().split()[:3])


def _percentile(samples: Sequence[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Side:
    """What one side measured."""

    name: str
    nodes: int
    posts: int
    load: str
    post_s: float = 0.0
    #: From the first post to the moment every receiver had every message (None: never).
    to_all_s: float | None = None
    latencies: list[float] = field(default_factory=list)
    deliveries: int = 0
    receiver_cpu_s: float = 0.0
    publisher_cpu_s: float = 0.0
    rss: list[float] = field(default_factory=list)
    window_s: float = 0.0
    #: Receivers' CPU while idle (the 3 s before the first post), ms per node per second:
    #: heartbeats and timers, which the window's CPU includes too.
    idle_ms_per_s: float = 0.0
    #: Group side: the receivers' gossip/sync counters, summed.
    transport: dict[str, int] = field(default_factory=dict)
    #: Group side: the poster's publish counters.
    poster: dict[str, int] = field(default_factory=dict)

    @property
    def expected(self) -> int:
        return self.posts * (self.nodes - 1)

    @property
    def share(self) -> float:
        return self.deliveries / self.expected if self.expected else 1.0

    @property
    def cpu_ms_per_delivery(self) -> float:
        """CPU of a receiving node per message delivered to it (receivers' mean)."""
        return 1000 * self.receiver_cpu_s / self.deliveries if self.deliveries else float("inf")

    @property
    def p50(self) -> float:
        return _percentile(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return _percentile(self.latencies, 0.99)

    def line(self) -> str:
        to_all = "never" if self.to_all_s is None else f"{self.to_all_s:.2f}s"
        return (
            f"{self.name:6} N={self.nodes} posts={self.posts} posted_in={self.post_s:.2f}s "
            f"to_all={to_all} delivered={self.share:.1%} "
            f"p50={self.p50:.3f}s p99={self.p99:.3f}s "
            f"cpu/node/msg={self.cpu_ms_per_delivery:.2f}ms "
            f"idle={self.idle_ms_per_s:.1f}ms/node/s "
            f"publisher_cpu={self.publisher_cpu_s:.2f}s window={self.window_s:.1f}s "
            f"rss_mean={sum(self.rss) / max(1, len(self.rss)):.1f}MB "
            f"rss_max={max(self.rss, default=0):.1f}MB load={self.load}"
        )


class Arrivals:
    """Receiver -> message label -> (authored s, arrived s)."""

    def __init__(self, receivers: int, posts: int) -> None:
        self.at: list[dict[str, tuple[float, float]]] = [{} for _ in range(receivers)]
        self.posts = posts
        self.complete = trio.Event()
        self.done_at: float | None = None
        self._full = 0
        self.last = 0.0

    def note(self, receiver: int, label: str, authored: float, arrived: float) -> None:
        got = self.at[receiver]
        if label in got:
            return
        got[label] = (authored, arrived)
        self.last = arrived
        if len(got) == self.posts:
            self._full += 1
            if self._full == len(self.at):
                self.done_at = arrived
                self.complete.set()


# -- the p2pchat side ---------------------------------------------------------------------


class NodeProc:
    """One ``p2pchat node run`` process with its own home."""

    def __init__(self, home: Path, log: IO[str], bootstrap: Sequence[str] = ()) -> None:
        self.home = home
        home.mkdir(parents=True)
        # Every node dials from 127.0.0.1: the default per-IP inbound limit (16) would
        # refuse a 17th neighbour on one host.
        (home / "config.json").write_text(json.dumps({"max_inbound_per_ip": 256}))
        argv = [sys.executable, "-m", "p2pchat.cli", "node", "run", *_NODE_ARGS]
        argv += [arg for addr in bootstrap for arg in ("--bootstrap", addr)]
        env = {**os.environ, "P2PCHAT_HOME": str(home)}
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        self.addrs: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        text = ""
        while True:  # one JSON object, maybe over several lines
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"node in {self.home} exited: see its log")
            text += line
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if not isinstance(value, dict) or "listen_addrs" not in value:
                raise RuntimeError(f"node in {self.home} did not start: {text[:300]}")
            self.addrs = value["listen_addrs"]
            return


def _stop(*procs: subprocess.Popen[Any]) -> None:
    """SIGTERM every process group at once, then wait (SIGKILL after 10 s)."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def _nodes(root: Path, count: int) -> Iterator[list[NodeProc]]:
    procs: list[NodeProc] = []
    root.mkdir(parents=True, exist_ok=True)
    with (root / "nodes.log").open("a") as log:
        try:
            first = NodeProc(root / "n00", log)
            procs.append(first)
            first.wait_ready()
            for index in range(1, count):
                procs.append(NodeProc(root / f"n{index:02d}", log, first.addrs[:1]))
            for proc in procs[1:]:
                proc.wait_ready()
            yield procs
        finally:
            _stop(*(proc.proc for proc in procs))


async def _wait(what: str, probe: Any, limit: float) -> None:
    deadline = trio.current_time() + limit
    while not await probe():
        if trio.current_time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await trio.sleep(0.25)


def _spy(root: Path, pids: list[int], seconds: float) -> list[subprocess.Popen[Any]]:
    """py-spy (if asked for, and installed beside this Python) on ``pids`` for ``seconds``:
    collapsed stacks in ``<root>/spy-<pid>.txt``."""
    binary = Path(sys.executable).parent / "py-spy"
    if seconds <= 0 or not binary.exists():
        return []
    options = ["-d", str(int(seconds)), "-r", "100", "-f", "raw", "--nonblocking"]
    return [
        subprocess.Popen(
            [str(binary), "record", "-p", str(pid), *options, "-o", str(root / f"spy-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


async def _group_side(
    procs: list[NodeProc], posts: int, settle: float, side: Side, spy: float
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(await Client.connect(home=p.home)) for p in procs
        ]
        owner = clients[0]
        group = (await owner.call("groups.create", {"name": "scale", "kind": "public"}))["group_id"]

        errors: list[str] = []

        async def join(client: Client) -> None:
            # Bootstrap dials can time out when 20 nodes start at once on 2 cores: dial the
            # owner explicitly, then join by id.
            async def joined() -> bool:
                try:
                    await client.call("peers.connect", {"address": procs[0].addrs[0]})
                    await client.call("groups.join", {"invite": group})
                except P2PChatError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return False
                return True

            try:
                await _wait("a join", joined, 180)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; last errors: {errors[-3:]}") from None

        async with trio.open_nursery() as nursery:
            for client in clients[1:]:
                nursery.start_soon(join, client)

        counts: list[int] = []

        async def members(client: Client) -> int:
            try:
                return len(await client.call("groups.members", {"group": group}))
            except NotFoundError:  # joined, not stored yet
                return 0

        async def everyone_in() -> bool:
            counts[:] = [await members(client) for client in clients]
            return min(counts) == len(clients)

        try:
            await _wait("every member at every node", everyone_in, 180)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: members seen per node {counts}") from None
        idle0 = [cpu_seconds(p.pid) for p in procs[1:]], time.time()
        await trio.sleep(3.0)  # a few gossip heartbeats: meshes form
        side.idle_ms_per_s = _idle(procs[1:], *idle0)
        arrivals = Arrivals(len(clients) - 1, posts)
        async with trio.open_nursery() as nursery:
            for index, client in enumerate(clients[1:]):
                sub = client.subscribe(["group.message"])
                await stack.enter_async_context(sub)
                nursery.start_soon(_follow, sub, index, arrivals)
            spies = _spy(procs[0].home.parent, [procs[0].pid, procs[1].pid], spy)
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            started = time.time()
            for seq in range(posts):
                await owner.call("groups.post", {"group": group, "text": f"m{seq}"})
            side.post_s = time.time() - started
            with trio.move_on_after(settle):
                await arrivals.complete.wait()
            window_end = time.time()
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            nursery.cancel_scope.cancel()
        for proc in spies:
            proc.wait()
        # How the receivers got their events (gossip, sync, deferred, rate limited).
        totals: dict[str, int] = {}
        for client in clients[1:]:
            stats = await client.call("node.statistics")
            for key, value in stats.get("groups", {}).get("transport", {}).items():
                totals[key] = totals.get(key, 0) + int(value)
        side.transport = totals
        # How the poster batched: gossip messages published for the posts.
        stats = (await owner.call("node.statistics")).get("groups", {}).get("transport", {})
        side.poster = {k: int(v) for k, v in stats.items() if k.startswith("published")}
        _fill(side, arrivals, started, window_end, cpu0, cpu1, [rss_mb(p.pid) for p in procs])


def _idle_pids(pids: list[int], cpu0: list[float], since: float) -> float:
    used = sum(cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True))
    return 1000 * used / max(1, len(pids)) / (time.time() - since)


def _idle(procs: list[NodeProc], cpu0: list[float], since: float) -> float:
    return _idle_pids([p.pid for p in procs], cpu0, since)


def _fill(
    side: Side,
    arrivals: Arrivals,
    started: float,
    window_end: float,
    cpu0: list[float],
    cpu1: list[float],
    rss: list[float],
) -> None:
    side.window_s = window_end - started
    side.to_all_s = None if arrivals.done_at is None else arrivals.done_at - started
    for got in arrivals.at:
        side.deliveries += len(got)
        side.latencies += [arrived - authored for authored, arrived in got.values()]
    side.publisher_cpu_s = cpu1[0] - cpu0[0]
    side.receiver_cpu_s = sum(b - a for a, b in zip(cpu0[1:], cpu1[1:], strict=True))
    side.rss = rss


async def _follow(sub: Any, index: int, arrivals: Arrivals) -> None:
    async for item in sub:
        data = getattr(item, "data", None)
        if not data or not str(data.get("text", "")).startswith("m"):
            continue
        arrivals.note(index, data["text"], data["ts"] / 1000, time.time())


def run_group(nodes: int, posts: int, settle: float, root: Path, spy: float = 0.0) -> Side:
    side = Side("group", nodes, posts, load())
    with _nodes(root, nodes) as procs:
        trio.run(_group_side, procs, posts, settle, side, spy)
    return side


# -- the bare gossipsub side --------------------------------------------------------------


class BarePeer:
    def __init__(self, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._gossip_peer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        self.addr = ""

    def ask(self, line: str) -> str:
        self.send(line)
        return self.answer()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def answer(self) -> str:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise RuntimeError("a bare gossipsub peer exited: see bare.log")
        return text.strip()


def run_bare(nodes: int, posts: int, size: int, settle: float, root: Path) -> Side:
    side = Side("bare", nodes, posts, load())
    with (root / "bare.log").open("a") as log:
        peers = [BarePeer(log) for _ in range(nodes)]
        try:
            for peer in peers:
                peer.addr = peer.answer().split(" ", 1)[1]
            for index, peer in enumerate(peers[1:], start=1):
                for other in peers[:index]:
                    peer.ask(f"connect {other.addr}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # every peer has a mesh for the topic
                if all(int(p.ask("mesh").split()[1]) >= 1 for p in peers):
                    break
                time.sleep(0.25)
            pids = [p.proc.pid for p in peers]
            idle0 = [cpu_seconds(pid) for pid in pids[1:]], time.time()
            time.sleep(3.0)  # as on the group side: a few heartbeats
            side.idle_ms_per_s = _idle_pids(pids[1:], *idle0)
            cpu0 = [cpu_seconds(pid) for pid in pids]
            started = time.time()
            side.post_s = float(peers[0].ask(f"publish {posts} {size}").split()[2])
            arrivals = Arrivals(nodes - 1, posts)
            quiet_since = time.monotonic()
            seen = 0
            while time.monotonic() - quiet_since < min(settle, 5.0):
                time.sleep(0.5)
                for index, peer in enumerate(peers[1:]):
                    got = json.loads(peer.ask("received").split(" ", 1)[1])
                    for seq, sent, arrived in got:
                        arrivals.note(index, f"m{seq}", sent, arrived)
                total = sum(len(a) for a in arrivals.at)
                if arrivals.complete.is_set() or time.time() - started > settle:
                    break
                if total != seen:
                    seen, quiet_since = total, time.monotonic()
            window_end = arrivals.done_at or arrivals.last or time.time()
            cpu1 = [cpu_seconds(pid) for pid in pids]
            _fill(side, arrivals, started, window_end, cpu0, cpu1, [rss_mb(pid) for pid in pids])
        finally:
            for peer in peers:
                with contextlib.suppress(OSError):
                    peer.send("quit")
            _stop(*(peer.proc for peer in peers))
    return side


# -- report -------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def report(group: Side | None, bare: Side | None) -> None:
    for side in (group, bare):
        if side is not None:
            print(side.line())
    if group is not None and bare is not None:
        print(
            "group/bare: "
            f"to_all={_ratio(group.to_all_s, bare.to_all_s)} "
            f"delivered={_ratio(group.share, bare.share)} "
            f"p50={_ratio(group.p50, bare.p50)} p99={_ratio(group.p99, bare.p99)} "
            f"cpu/node/msg={_ratio(group.cpu_ms_per_delivery, bare.cpu_ms_per_delivery)} "
            f"rss={_ratio(max(group.rss, default=0), max(bare.rss, default=0))}"
        )
    if group is not None and group.transport:
        print("group receivers' transport counters:", json.dumps(group.transport, sort_keys=True))
        print("group poster's publish counters:", json.dumps(group.poster, sort_keys=True))
    if group is not None:
        ok_cpu = group.cpu_ms_per_delivery <= GOAL_CPU_MS
        ok_p99 = group.p99 <= GOAL_P99_S and group.share == 1.0
        print(
            f"goal (issue 15, N=20): cpu/node/msg {group.cpu_ms_per_delivery:.2f} ms "
            f"/ {GOAL_CPU_MS} ms = {group.cpu_ms_per_delivery / GOAL_CPU_MS:.2f}x "
            f"{'MET' if ok_cpu else 'not met'}; p99 {group.p99:.3f} s / {GOAL_P99_S} s = "
            f"{group.p99 / GOAL_P99_S:.2f}x {'MET' if ok_p99 else 'not met'}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--size", type=int, default=400, help="bare payload bytes")
    parser.add_argument("--settle", type=float, default=120.0, help="max seconds to wait")
    parser.add_argument("--only", choices=("group", "bare"))
    parser.add_argument("--quick", action="store_true", help="N = 4, 40 posts")
    parser.add_argument("--keep", type=Path, help="keep homes and logs in this directory")
    parser.add_argument(
        "--py-spy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="profile the poster (node 0) and a receiver (node 1) while posting "
        "(collapsed stacks in the --keep directory; needs py-spy in this venv)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.posts, args.settle = 4, 40, 30.0
    root = args.keep or Path(tempfile.mkdtemp(prefix="p2pchat-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        group = bare = None
        if args.only in (None, "group"):
            group = run_group(args.nodes, args.posts, args.settle, root / "group", args.py_spy)
            print(group.line(), flush=True)
        if args.only in (None, "bare"):
            bare = run_bare(args.nodes, args.posts, args.size, args.settle, root)
            print(bare.line(), flush=True)
        print()
        report(group, bare)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
