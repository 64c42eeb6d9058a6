"""Run a scenario: start the nodes, make strangers meet, build groups, drive traffic and
faults on a timeline, let the network settle, then collect what every node holds.

Everything goes through each node's public RPC (``tests.testnet.nodes``); nothing reads a
node's store or internals. Times are wall-clock seconds (``time.time()``), shared by every
namespace on the host; ``t`` in records is seconds since the traffic phase began.
"""

from __future__ import annotations

import heapq
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netns import Host
from tests.testnet.disk import DiskNode
from tests.testnet.nodes import NodeProcess
from tests.testnet.observe import Arrival, Inbox, sample_process
from tests.testnet.scenario import Scenario
from tests.testnet.testbed import Testbed

__all__ = ["Run", "RunData"]

SAMPLE_EVERY_S = 10.0
START_WAVE = 4  # nodes started at once (2 shared cores: Argon2id + libp2p import each)
FIRST_CONTACT_LIMIT_S = 90.0
JOIN_LIMIT_S = 90.0
RESTART_LIMIT_S = 240.0


@dataclass
class RunData:
    """Everything recorded; the checks and the report read only this."""

    scenario: Scenario
    testbed: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0  # traffic phase start (wall clock)
    t_end: float = 0.0  # traffic phase end
    t_healed: float = 0.0  # every fault over, every node running again
    t_settled: float | None = None  # convergence reached (None: not within settle_s)
    startup_s: float = 0.0
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    dms: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Run:
    def __init__(
        self,
        scenario: Scenario,
        testbed: Testbed,
        workdir: Path,
        *,
        say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    ) -> None:
        self.sc = scenario
        self.bed = testbed
        self.workdir = workdir
        self.say = say
        self.data = RunData(scenario, testbed.describe())
        self.nodes: dict[str, NodeProcess] = {}
        self.inboxes: dict[str, Inbox] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.rng = random.Random(scenario.seed)
        self.lock = threading.Lock()
        self.node_locks = {name: threading.Lock() for name in scenario.nodes}
        self.down: set[str] = set()
        self.cpu_done: dict[str, float] = {n: 0.0 for n in scenario.nodes}  # earlier lives
        self.last_sample: dict[str, dict[str, float]] = {}
        self.pool = ThreadPoolExecutor(max_workers=12, thread_name_prefix="testnet")
        self.pending: list[Future[None]] = []
        self._stop_sampling = threading.Event()
        self.members: dict[str, set[str]] = {}
        self.gids: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() - self.data.t0 if self.data.t0 else 0.0

    def mark(self, event: str, **info: Any) -> None:
        entry = {"t": round(self.now(), 3), "kind": event, **info}
        with self.lock:
            self.data.timeline.append(entry)
        self.say(f"[{entry['t']:7.1f}s] {event} {info}")

    def call(self, name: str, method: str, params: dict[str, Any] | None = None) -> Any:
        with self.node_locks[name]:
            return self.nodes[name].call(method, params, timeout=60.0)

    def error(self, what: str, exc: BaseException) -> None:
        text = f"{self.now():.1f}s {what}: {type(exc).__name__}: {exc}"
        with self.lock:
            self.data.errors.append(text)

    # -- phases --------------------------------------------------------------------------------

    def run(self) -> RunData:
        try:
            self.start_nodes()
            self.data.t0 = time.time()
            self.meet_strangers()
            self.build_groups()
            sampler = threading.Thread(target=self.sample_loop, name="sampler", daemon=True)
            sampler.start()
            self.traffic()
            self.recover()
            self.settle()
            self.collect()
            self._stop_sampling.set()
            sampler.join(timeout=30)
            self.stop_all()
        finally:
            self._stop_sampling.set()
            for inbox in self.inboxes.values():
                inbox.close()
            for who in self.nodes.values():
                who.close()
            self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            self.data.arrivals.sort(key=lambda a: a.at)
        return self.data

    def start_nodes(self) -> None:
        started = time.monotonic()
        homes = self.workdir / "homes"
        disk = self.sc.disk_full
        for name in self.sc.nodes:
            kw: dict[str, Any] = {
                "extra_args": self.bed.node_args(name),
                "log_dir": self.workdir / "logs",
            }
            machine = self.bed.machine(name)
            if disk is not None and disk.node == name and isinstance(machine, Host):
                self.nodes[name] = DiskNode(machine, homes / name / "home", disk.size_mb, **kw)
            else:
                self.nodes[name] = NodeProcess(machine, homes / name / "home", **kw)
        seeds = self.sc.seed_nodes
        boot: list[str] = []
        for name in seeds:
            self.nodes[name].bootstrap = list(boot)
            self.nodes[name].start()
            addrs = self.nodes[name].call("node.status")["listen_addrs"]
            boot.append(addrs[0])
            self.say(f"seed {name} at {addrs}")
        rest = [n for n in self.sc.nodes if n not in seeds]
        for i in range(0, len(rest), START_WAVE):
            wave = rest[i : i + START_WAVE]
            for name in wave:
                self.nodes[name].bootstrap = list(boot)
            list(self.pool.map(lambda n: self.nodes[n].start(), wave))
            self.say(f"started {', '.join(wave)} ({time.monotonic() - started:.0f}s)")
        for name, who in self.nodes.items():
            status = who.call("node.status")
            self.status[name] = status
            self.data.nodes[name] = {
                "peer_id": status["peer_id"],
                "account": status["account_key"],
                "listen_addrs": status["listen_addrs"],
                "ip": self.bed.ip(name),
                "behind_nat": self.bed.behind_nat(name),
                "nat": self.sc.nat_of(name),
            }
            self.open_inbox(name)
        self.data.startup_s = time.monotonic() - started
        self.say(f"{len(self.nodes)} nodes up in {self.data.startup_s:.0f}s")

    def open_inbox(self, name: str) -> None:
        client = self.nodes[name].client
        assert client is not None
        self.inboxes[name] = Inbox(name, client, self.data.arrivals, self.lock)

    def meet_strangers(self) -> None:
        """Each pair's ``a`` adds ``b`` by account key only and writes: found through the DHT."""
        for i, pair in enumerate(self.sc.dms):
            b_account = self.status[pair.b]["account_key"]
            entry: dict[str, Any] = {
                "index": i,
                "a": pair.a,
                "b": pair.b,
                "across_nats": self._across_nats(pair.a, pair.b),
                "to_nat": self.bed.behind_nat(pair.b),
                "first_contact_s": None,
                "accepted": False,
            }
            self.data.pairs.append(entry)
            try:
                self.call(pair.a, "contacts.add", {"address": b_account, "name": pair.b})
            except Exception as exc:
                self.error(f"{pair.a} contacts.add {pair.b}", exc)
                continue
            self.send_dm(pair.a, pair.b, first=True)
        deadline = time.time() + FIRST_CONTACT_LIMIT_S
        waiting = list(self.data.pairs)
        while waiting and time.time() < deadline:
            for entry in list(waiting):
                hello = f"dm {entry['a']}>{entry['b']} #0"
                if self._arrived(entry["b"], hello) is not None:
                    self._accept(entry)
                    waiting.remove(entry)
            time.sleep(0.5)
        for entry in waiting:  # never arrived: b adds a anyway, so the rest can flow
            self.mark("first-contact-timeout", a=entry["a"], b=entry["b"])
            self._accept(entry)

    def _accept(self, entry: dict[str, Any]) -> None:
        a_account = self.status[entry["a"]]["account_key"]
        try:
            self.call(entry["b"], "contacts.add", {"address": a_account, "name": entry["a"]})
            entry["accepted"] = True
        except Exception as exc:
            self.error(f"{entry['b']} contacts.add {entry['a']}", exc)

    def _across_nats(self, a: str, b: str) -> bool:
        na, nb = self.sc.nat_of(a), self.sc.nat_of(b)
        return na is not None and nb is not None and na != nb

    def _arrived(self, node: str, text: str) -> float | None:
        with self.lock:
            for arrival in self.data.arrivals:
                if arrival.node == node and arrival.text == text:
                    return arrival.at
        return None

    def build_groups(self) -> None:
        for group in self.sc.groups:
            created = self.call(
                group.owner, "groups.create", {"name": group.name, "kind": group.kind}
            )
            gid = created["group_id"]
            self.gids[group.name] = gid
            self.members[group.name] = {group.owner}
            self.data.groups[group.name] = {
                "group_id": gid,
                "kind": group.kind,
                "owner": group.owner,
                "joined": [],
                "left": [],
                "removed": [],
                "join_failed": [],
            }
            self.mark("group-created", group=group.name, group_kind=group.kind, owner=group.owner)
            futures = [
                self.pool.submit(self.join, group.name, name, group.owner) for name in group.members
            ]
            for f in futures:
                f.result()

    def join(self, group: str, name: str, owner: str) -> None:
        gid = self.gids[group]
        info = self.data.groups[group]
        started = time.time()
        try:
            link = self.call(owner, "groups.invite", {"group": gid})["link"]
            while True:
                try:
                    self.call(name, "groups.join", {"invite": link})
                    break
                except Exception as exc:
                    if time.time() - started > JOIN_LIMIT_S:
                        raise
                    self.error(f"{name} join {group} (retrying)", exc)
                    time.sleep(3)
        except Exception as exc:
            self.error(f"{name} join {group}", exc)
            with self.lock:
                info["join_failed"].append(name)
            return
        with self.lock:
            self.members[group].add(name)
            info["joined"].append({"node": name, "t": round(self.now(), 3)})

    # -- traffic -------------------------------------------------------------------------------

    def send_dm(self, a: str, b: str, *, first: bool = False) -> None:
        if a in self.down:
            return
        with self.lock:
            n = sum(1 for d in self.data.dms if d["from"] == a and d["to"] == b)
            record: dict[str, Any] = {
                "from": a,
                "to": b,
                "text": f"dm {a}>{b} #{n}",
                "first": first,
            }
            self.data.dms.append(record)
        record["t_sent"] = time.time()
        try:
            sent = self.call(a, "dm.send", {"to": b, "text": record["text"]})
            record["message_id"] = sent["message_id"]
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"

    def post(self, group: str) -> None:
        with self.lock:
            alive = sorted(self.members[group] - self.down)
        if not alive:
            return
        author = self.rng.choice(alive)
        with self.lock:
            n = len(self.data.posts)
            record: dict[str, Any] = {
                "group": group,
                "author": author,
                "text": f"post {group} {author} #{n}",
            }
            self.data.posts.append(record)
        record["t_sent"] = time.time()
        try:
            res = self.call(
                author, "groups.post", {"group": self.gids[group], "text": record["text"]}
            )
            record["event_id"] = res["event_id"]
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"

    def schedule(self) -> list[tuple[float, int, str, tuple[Any, ...]]]:
        todo: list[tuple[float, int, str, tuple[Any, ...]]] = []
        seq = 0

        def add(at: float, action: str, *args: Any) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(todo, (at, seq, action, args))

        def poisson(per_min: float, action: str, *args: Any) -> None:
            if per_min <= 0:
                return
            t = self.rng.expovariate(per_min / 60.0)
            while t < self.sc.duration_s:
                add(t, action, *args)
                t += self.rng.expovariate(per_min / 60.0)

        for pair in self.sc.dms:
            poisson(pair.per_min, "dm", pair.a, pair.b)
            poisson(pair.per_min, "dm", pair.b, pair.a)
        for group in self.sc.groups:
            poisson(group.per_min, "post", group.name)
            for change in group.joins:
                add(change.at, "join", group.name, change.node, group.owner)
            for change in group.leaves:
                add(change.at, "leave", group.name, change.node)
            for change in group.removals:
                add(change.at, "remove", group.name, change.node, group.owner)
        for kill in self.sc.kills:
            add(kill.at, "kill", kill.node, kill.signal)
            add(kill.at + kill.down_s, "restart", kill.node)
        if self.sc.disk_full is not None:
            add(self.sc.disk_full.at, "fill", self.sc.disk_full.node)
            add(self.sc.disk_full.at + self.sc.disk_full.duration_s, "free", self.sc.disk_full.node)
        for part in self.sc.partitions:
            add(part.at, "partition", part.nodes)
            add(part.at + part.duration_s, "heal")
        return todo

    def traffic(self) -> None:
        todo = self.schedule()
        self.data.t0 = time.time()  # the timeline's zero
        self.mark("traffic-start", actions=len(todo))
        while todo:
            at, _, action, args = heapq.heappop(todo)
            if at >= self.sc.duration_s:
                continue  # a shortened run (--duration): recover() ends what is still on
            delay = self.data.t0 + at - time.time()
            if delay > 0:
                time.sleep(delay)
            self.act(action, args)
        rest = self.data.t0 + self.sc.duration_s - time.time()
        if rest > 0:
            time.sleep(rest)
        self.data.t_end = time.time()
        self.mark("traffic-end")
        for f in self.pending:
            try:
                f.result(timeout=120)
            except Exception as exc:
                self.error("an action", exc)

    def act(self, action: str, args: tuple[Any, ...]) -> None:
        if action == "dm":
            self.pending.append(self.pool.submit(self.send_dm, *args))
        elif action == "post":
            self.pending.append(self.pool.submit(self.post, *args))
        elif action == "join":
            group, name, owner = args
            self.mark("join", group=group, node=name)
            self.pending.append(self.pool.submit(self.join, group, name, owner))
        elif action == "leave":
            self.pending.append(self.pool.submit(self.leave, *args))
        elif action == "remove":
            self.pending.append(self.pool.submit(self.remove, *args))
        elif action == "kill":
            self.kill(*args)
        elif action == "restart":
            self.pending.append(self.pool.submit(self.restart, *args))
        elif action == "partition":
            side = list(args[0])
            rest = [n for n in self.sc.nodes if n not in side]
            self.bed.partition(side, rest)
            self.mark("partition", nodes=side, emulated="partitions" in self.bed.emulated)
        elif action in ("fill", "free"):
            who = self.nodes[args[0]]
            if not isinstance(who, DiskNode):
                self.mark(f"disk-{action}-not-emulated", node=args[0])
                return
            usage = who.fill() if action == "fill" else who.free()
            self.mark(f"disk-{action}", node=args[0], alive=who.alive(), **usage)
        elif action == "heal":
            self.bed.heal()
            self.mark("heal")

    def leave(self, group: str, name: str) -> None:
        try:
            self.call(name, "groups.leave", {"group": self.gids[group]})
        except Exception as exc:
            self.error(f"{name} leave {group}", exc)
            return
        with self.lock:
            self.members[group].discard(name)
            self.data.groups[group]["left"].append({"node": name, "t": round(self.now(), 3)})
        self.mark("leave", group=group, node=name)

    def remove(self, group: str, name: str, owner: str) -> None:
        account = self.status[name]["account_key"]
        try:
            self.call(owner, "groups.remove", {"group": self.gids[group], "account": account})
        except Exception as exc:
            self.error(f"{owner} remove {name} from {group}", exc)
            return
        with self.lock:
            self.members[group].discard(name)
            self.data.groups[group]["removed"].append(
                {"node": name, "t": round(self.now(), 3), "at": time.time()}
            )
        self.mark("remove", group=group, node=name)

    def kill(self, name: str, sig: str) -> None:
        who = self.nodes[name]
        if name in self.down:
            self.mark("kill-skipped", node=name, reason="still down or restarting")
            return
        self.down.add(name)
        inbox = self.inboxes.pop(name, None)
        with self.node_locks[name]:
            self._retire_cpu(name)
            who.close_client()
            who.send_signal(signal.SIGKILL if sig == "KILL" else signal.SIGTERM)
        if inbox is not None:
            inbox.close()
        code = who.process.wait(timeout=30) if who.process is not None else None
        self.mark("kill", node=name, signal=sig, exit_code=code)

    def restart(self, name: str) -> None:
        who = self.nodes[name]
        try:
            with self.node_locks[name]:
                if name not in self.down:
                    return  # its kill was skipped, or another restart brought it back
                self.mark("restarting", node=name)
                if not who.alive():
                    who.start(wait=False)
                # Loaded machines take long to restart a node (Argon2id, libp2p): wait
                # for its RPC well beyond a first start's limit, else keep it in `down`.
                who.connect(limit=RESTART_LIMIT_S)
                self.open_inbox(name)
                self.down.discard(name)
        except Exception as exc:
            self.error(f"restart {name}", exc)
            self.mark("restart-failed", node=name, running=who.alive())
            return
        self.mark("restart", node=name)

    def _retire_cpu(self, name: str) -> None:
        last = self.last_sample.get(name)
        pid = self.nodes[name].pid
        fresh = sample_process(pid) if pid is not None else None
        use = fresh or last
        if use is not None:
            self.cpu_done[name] += use["cpu_s"]
        self.last_sample.pop(name, None)

    # -- samples -------------------------------------------------------------------------------

    def sample_loop(self) -> None:
        while not self._stop_sampling.is_set():
            self.sample_once()
            self._stop_sampling.wait(SAMPLE_EVERY_S)

    def sample_once(self) -> None:
        t = round(self.now(), 3)
        for name, who in self.nodes.items():
            if name in self.down or not who.alive() or who.pid is None:
                continue
            proc = sample_process(who.pid)
            if proc is None:
                continue
            self.last_sample[name] = proc
            row: dict[str, Any] = {
                "t": t,
                "node": name,
                "pid": who.pid,
                "cpu_total_s": self.cpu_done[name] + proc["cpu_s"],
                **proc,
                **self.bed.proc_net(who),
            }
            try:
                peers = self.call(name, "peers.list")
                row["connected"] = len(peers["connected"])
                stats = self.call(name, "node.statistics")
                net = stats.get("network", {})
                row["unreachable"] = len(net.get("unreachable", []))
                row["dial_failures"] = net.get("dial_failures")
                row["dials"] = net.get("dials")
            except Exception as exc:
                row["rpc_error"] = type(exc).__name__
            with self.lock:
                self.data.samples.append(row)

    # -- the end -------------------------------------------------------------------------------

    def recover(self) -> None:
        """End every fault: heal partitions, restart nodes still down."""
        self.bed.heal()
        for who in self.nodes.values():
            if isinstance(who, DiskNode) and who.alive():
                who.free()
        for name in sorted(self.down):
            self.restart(name)  # started again if it is not running, reconnected if it is
        self.data.t_healed = time.time()
        self.mark("all-healed")

    def converged(self) -> bool:
        unseen = [
            d
            for d in self.data.dms
            if "message_id" in d
            and not d.get("delivered_seen")
            and self._arrived(d["to"], d["text"]) is None
        ]
        # Not announced to us (delivered while the recipient's subscription was down, e.g.
        # right after a restart): ask the recipient's history.
        for to, frm in sorted({(d["to"], d["from"]) for d in unseen}):
            try:
                held = {m["text"] for m in self.history(to, frm) if m["direction"] == "in"}
            except Exception:
                return False
            for d in unseen:
                if (d["to"], d["from"]) == (to, frm) and d["text"] in held:
                    d["delivered_seen"] = True
        if any(not d.get("delivered_seen") for d in unseen):
            return False
        for group, members in self.members.items():
            hashes = set()
            for name in members:
                try:
                    info = self.call(name, "groups.info", {"group": self.gids[group]})
                except Exception:
                    return False
                hashes.add(info["history_hash"])
            if len(hashes) > 1:
                return False
        return True

    def settle(self) -> None:
        deadline = self.data.t_healed + self.sc.settle_s
        while time.time() < deadline:
            if self.converged():
                self.data.t_settled = time.time()
                self.mark("converged", after_heal_s=round(time.time() - self.data.t_healed, 1))
                return
            time.sleep(2.0)
        self.mark("not-converged", settle_s=self.sc.settle_s)

    def collect(self) -> None:
        self.sample_once()
        final: dict[str, Any] = {"dm_state": {}, "dm_inbox": {}, "groups": {}, "paths": {}}
        for pair in self.data.pairs:
            for a, b in ((pair["a"], pair["b"]), (pair["b"], pair["a"])):
                key = f"{a}>{b}"
                try:
                    mine = self.history(a, b)
                    final["dm_state"][key] = {
                        m["message_id"]: m["state"] for m in mine if m["direction"] == "out"
                    }
                    theirs = self.history(b, a)
                    final["dm_inbox"][key] = [m["text"] for m in theirs if m["direction"] == "in"]
                    peers = self.call(a, "peers.list")
                    peer_id = self.data.nodes[b]["peer_id"]
                    paths = {p["peer_id"]: p.get("path", "direct") for p in peers["connected"]}
                    final["paths"][key] = (
                        f"connected, {paths[peer_id]}" if peer_id in paths else "not connected now"
                    )
                except Exception as exc:
                    self.error(f"collect dms {key}", exc)
        for group, gid in self.gids.items():
            per: dict[str, Any] = {}
            everyone = set(self.members[group]) | {
                r["node"] for r in self.data.groups[group]["removed"]
            }
            for name in sorted(everyone):
                try:
                    info = self.call(name, "groups.info", {"group": gid})
                except Exception as exc:
                    per[name] = {"error": f"{type(exc).__name__}: {exc}"}
                else:
                    per[name] = {"history_hash": info["history_hash"], "events": info["events"]}
                try:
                    per[name]["history"] = self.group_history(name, gid)
                except Exception as exc:
                    per[name]["history_error"] = f"{type(exc).__name__}: {exc}"
            final["groups"][group] = {"members": sorted(self.members[group]), "at": per}
        self.data.final = final

    def history(self, a: str, b: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after: int | None = 0
        while after is not None:
            page = self.call(a, "dm.history", {"conversation": b, "after_seq": after, "limit": 200})
            out += page
            after = page[-1]["seq"] if len(page) == 200 else None
        return out

    def group_history(self, name: str, gid: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        before: str | None = None
        while True:
            params: dict[str, Any] = {"group": gid, "limit": 500}
            if before is not None:
                params["before"] = before
            page = self.call(name, "groups.history", params)
            out = [{"event_id": m["event_id"], "text": m["text"]} for m in page] + out
            if len(page) < 500:
                return out
            before = page[0]["event_id"]

    def stop_all(self) -> None:
        """SIGTERM every node: each should exit cleanly (code 0) within the grace period."""
        for name in list(self.inboxes):
            self.inboxes.pop(name).close()
        codes: dict[str, int | None] = {}
        for name, who in self.nodes.items():
            if who.alive():
                self._retire_cpu(name)
                codes[name] = who.stop(signal.SIGTERM, timeout=30)
            elif who.process is not None:
                # Not running, though recover() restarted every node the scenario took
                # down: it died on its own (a crash), which is not a clean exit.
                codes[name] = who.process.returncode
        self.data.final["exit_codes"] = codes
        self.data.final["cpu_s"] = dict(self.cpu_done)
