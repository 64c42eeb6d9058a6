"""The testnet's declarative scenario file (TOML, read with the standard library's tomllib).

::

    name = "smoke"
    duration_s = 60        # the traffic phase, after every node started and met
    settle_s = 60          # after the last fault healed: how long convergence may take
    seed = 1               # the random choices (who posts when, loss draws are the kernel's)

    [network]
    public = 4             # public hosts p1..p4 (198.51.100.0/24); the first `seeds` seed
    seeds = 1
    loss = 0.02            # random loss on every link, each direction
    nats = [{name = "ra", hosts = 2}]   # router ra (203.0.113.0/24), hosts ra1, ra2 behind it

    [[dm]]                 # a pair of strangers: `a` finds `b` through the DHT, writes first
    a = "p3"
    b = "ra1"
    per_min = 6            # each way, once they are contacts

    [[group]]
    name = "town"
    kind = "public"        # public | private | live
    owner = "p1"
    members = "all"        # or a list of node names (the owner is always in)
    per_min = 12           # posts per minute across the members, by a random member
    joins = [{node = "p4", at = 20}]    # later joiners (seconds into the traffic phase)
    leaves = [{node = "p3", at = 30}]
    removals = [{node = "p2", at = 40}] # removed by the owner

    [churn]                # node `every_s` a node (never a seed or the disk node) is
    every_s = 60           # killed with `signal` and restarted `down_s` later
    down_s = 15
    signal = "KILL"        # or "TERM"
    first_at = 30
    [[kill]]               # ... and/or explicit ones
    node = "p4"
    at = 30
    down_s = 10
    signal = "KILL"

    [[partition]]          # a fraction of the nodes (or a list) cut off, then healed
    at = 20
    duration_s = 20
    fraction = 0.33        # or nodes = ["p3", "ra1"]

    [disk_full]            # one node's home on a small tmpfs of its own mount namespace,
    node = "p4"            # filled at `at`, freed `duration_s` later
    size_mb = 64
    at = 30
    duration_s = 30
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DiskFull",
    "DmPair",
    "Group",
    "Kill",
    "Nat",
    "Partition",
    "Scenario",
    "ScenarioError",
    "load",
    "SCENARIOS",
]

SCENARIOS = Path(__file__).parent / "scenarios"
_SIGNALS = ("KILL", "TERM")
_KINDS = ("public", "private", "live")


class ScenarioError(ValueError):
    """The scenario file is not valid; the message names the field."""


@dataclass(frozen=True)
class Nat:
    name: str
    hosts: int


@dataclass(frozen=True)
class DmPair:
    a: str
    b: str
    per_min: float


@dataclass(frozen=True)
class Change:
    node: str
    at: float


@dataclass(frozen=True)
class Group:
    name: str
    kind: str
    owner: str
    members: tuple[str, ...]
    per_min: float
    joins: tuple[Change, ...] = ()
    leaves: tuple[Change, ...] = ()
    removals: tuple[Change, ...] = ()


@dataclass(frozen=True)
class Kill:
    node: str
    at: float
    down_s: float
    signal: str


@dataclass(frozen=True)
class Partition:
    at: float
    duration_s: float
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class DiskFull:
    node: str
    size_mb: int
    at: float
    duration_s: float


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    settle_s: float
    seed: int
    public: int
    seeds: int
    loss: float
    nats: tuple[Nat, ...]
    dms: tuple[DmPair, ...]
    groups: tuple[Group, ...]
    kills: tuple[Kill, ...]
    partitions: tuple[Partition, ...]
    disk_full: DiskFull | None
    source: str = field(default="", compare=False)

    @property
    def nodes(self) -> list[str]:
        """Every node name: public ones (seeds first), then each NAT's hosts."""
        names = [f"p{i}" for i in range(1, self.public + 1)]
        for nat in self.nats:
            names += [f"{nat.name}{i}" for i in range(1, nat.hosts + 1)]
        return names

    @property
    def seed_nodes(self) -> list[str]:
        return [f"p{i}" for i in range(1, self.seeds + 1)]

    def nat_of(self, node: str) -> str | None:
        for nat in self.nats:
            if node in {f"{nat.name}{i}" for i in range(1, nat.hosts + 1)}:
                return nat.name
        return None


def load(path: Path | str) -> Scenario:
    """Read and check a scenario file (a bare name means ``scenarios/<name>.toml``)."""
    file = Path(path)
    if not file.suffix and not file.exists():
        file = SCENARIOS / f"{path}.toml"
    try:
        raw = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{file}: {exc}") from None
    return parse(raw, source=str(file))


def parse(raw: dict[str, Any], *, source: str = "<dict>") -> Scenario:
    known = {"name", "duration_s", "settle_s", "seed", "network", "dm", "group", "churn"}
    known |= {"kill", "partition", "disk_full"}
    _no_extra(raw, known, "scenario")
    net = _table(raw, "network")
    _no_extra(net, {"public", "seeds", "loss", "nats"}, "network")
    public = _int(net, "public", "network", lo=1, hi=200)
    seeds = _int(net, "seeds", "network", lo=1, hi=min(2, public), default=1)
    loss = _num(net, "loss", "network", lo=0.0, hi=0.5, default=0.0)
    nats = []
    for i, entry in enumerate(net.get("nats", [])):
        where = f"network.nats[{i}]"
        _no_extra(entry, {"name", "hosts"}, where)
        name = _str(entry, "name", where)
        if not name.isalpha() or not name.islower() or len(name) > 8 or name.startswith("p"):
            raise ScenarioError(f"{where}.name: 1-8 lowercase letters, not starting with 'p'")
        nats.append(Nat(name, _int(entry, "hosts", where, lo=1, hi=200)))
    if len({n.name for n in nats}) != len(nats):
        raise ScenarioError("network.nats: names must differ")
    scenario = Scenario(
        name=_str(raw, "name", "scenario"),
        duration_s=_num(raw, "duration_s", "scenario", lo=1, hi=24 * 3600),
        settle_s=_num(raw, "settle_s", "scenario", lo=1, hi=3600, default=60),
        seed=_int(raw, "seed", "scenario", lo=0, hi=2**31, default=1),
        public=public,
        seeds=seeds,
        loss=loss,
        nats=tuple(nats),
        dms=(),
        groups=(),
        kills=(),
        partitions=(),
        disk_full=None,
        source=source,
    )
    names = set(scenario.nodes)

    def node_name(value: Any, where: str) -> str:
        if value not in names:
            raise ScenarioError(f"{where}: unknown node {value!r} (nodes: p1.., <nat>1..)")
        return str(value)

    dms = []
    for i, entry in enumerate(raw.get("dm", [])):
        where = f"dm[{i}]"
        _no_extra(entry, {"a", "b", "per_min"}, where)
        a, b = node_name(entry.get("a"), f"{where}.a"), node_name(entry.get("b"), f"{where}.b")
        if a == b:
            raise ScenarioError(f"{where}: a node does not write to itself")
        dms.append(DmPair(a, b, _num(entry, "per_min", where, lo=0, hi=600, default=2)))

    groups = []
    for i, entry in enumerate(raw.get("group", [])):
        where = f"group[{i}]"
        _no_extra(
            entry,
            {"name", "kind", "owner", "members", "per_min", "joins", "leaves", "removals"},
            where,
        )
        kind = _str(entry, "kind", where, default="public")
        if kind not in _KINDS:
            raise ScenarioError(f"{where}.kind: one of {', '.join(_KINDS)}")
        owner = node_name(entry.get("owner"), f"{where}.owner")
        members_raw = entry.get("members", "all")
        if members_raw == "all":
            members = [n for n in scenario.nodes if n != owner]
        elif isinstance(members_raw, list):
            members = [node_name(m, f"{where}.members") for m in members_raw if m != owner]
        else:
            raise ScenarioError(f"{where}.members: 'all' or a list of node names")

        def changes(
            key: str, where: str = where, entry: dict[str, Any] = entry
        ) -> tuple[Change, ...]:
            out = []
            for j, change in enumerate(entry.get(key, [])):
                spot = f"{where}.{key}[{j}]"
                _no_extra(change, {"node", "at"}, spot)
                at = _num(change, "at", spot, lo=0, hi=scenario.duration_s)
                out.append(Change(node_name(change.get("node"), f"{spot}.node"), at))
            return tuple(out)

        group = Group(
            name=_str(entry, "name", where),
            kind=kind,
            owner=owner,
            members=tuple(members),
            per_min=_num(entry, "per_min", where, lo=0, hi=600, default=6),
            joins=changes("joins"),
            leaves=changes("leaves"),
            removals=changes("removals"),
        )
        if any(c.node == owner for c in group.leaves + group.removals):
            raise ScenarioError(f"{where}: the owner neither leaves nor is removed")
        groups.append(group)

    disk = None
    if "disk_full" in raw:
        entry = _table(raw, "disk_full")
        _no_extra(entry, {"node", "size_mb", "at", "duration_s"}, "disk_full")
        disk = DiskFull(
            node=node_name(entry.get("node"), "disk_full.node"),
            size_mb=_int(entry, "size_mb", "disk_full", lo=16, hi=1024, default=64),
            at=_num(entry, "at", "disk_full", lo=0, hi=scenario.duration_s),
            duration_s=_num(entry, "duration_s", "disk_full", lo=1, hi=24 * 3600, default=60),
        )
        if disk.node in scenario.seed_nodes:
            raise ScenarioError("disk_full.node: not a seed")

    protected = set(scenario.seed_nodes) | ({disk.node} if disk else set())
    kills = []
    for i, entry in enumerate(raw.get("kill", [])):
        where = f"kill[{i}]"
        _no_extra(entry, {"node", "at", "down_s", "signal"}, where)
        kill = Kill(
            node=node_name(entry.get("node"), f"{where}.node"),
            at=_num(entry, "at", where, lo=0, hi=scenario.duration_s),
            down_s=_num(entry, "down_s", where, lo=0, hi=3600, default=10),
            signal=_signal(entry, where),
        )
        if kill.node in protected:
            raise ScenarioError(f"{where}.node: seeds and the disk-full node are not churned")
        kills.append(kill)
    if "churn" in raw:
        churn = _table(raw, "churn")
        _no_extra(churn, {"every_s", "down_s", "signal", "first_at"}, "churn")
        every = _num(churn, "every_s", "churn", lo=5, hi=3600)
        down = _num(churn, "down_s", "churn", lo=0, hi=3600, default=15)
        sig = _signal(churn, "churn")
        at = _num(churn, "first_at", "churn", lo=0, hi=scenario.duration_s, default=every)
        pick = random.Random(scenario.seed)
        candidates = [n for n in scenario.nodes if n not in protected]
        while at + down < scenario.duration_s and candidates:
            kills.append(Kill(pick.choice(candidates), at, down, sig))
            at += every
    kills.sort(key=lambda k: k.at)

    partitions = []
    for i, entry in enumerate(raw.get("partition", [])):
        where = f"partition[{i}]"
        _no_extra(entry, {"at", "duration_s", "fraction", "nodes"}, where)
        at = _num(entry, "at", where, lo=0, hi=scenario.duration_s)
        duration = _num(entry, "duration_s", where, lo=1, hi=scenario.duration_s)
        if "nodes" in entry:
            side = tuple(node_name(n, f"{where}.nodes") for n in entry["nodes"])
        else:
            fraction = _num(entry, "fraction", where, lo=0.01, hi=0.5, default=0.33)
            count = max(1, round(fraction * len(scenario.nodes)))
            # Never the first seed: the cut-off side then has to find its way back to it.
            pool = [n for n in scenario.nodes if n != scenario.seed_nodes[0]]
            side = tuple(sorted(random.Random(scenario.seed + i).sample(pool, count)))
        partitions.append(Partition(at, duration, side))

    return Scenario(
        **{
            **scenario.__dict__,
            "dms": tuple(dms),
            "groups": tuple(groups),
            "kills": tuple(kills),
            "partitions": tuple(partitions),
            "disk_full": disk,
        }
    )


def _no_extra(table: Any, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table")
    extra = sorted(set(table) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(extra)}")


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ScenarioError(f"[{key}]: a table is required")
    return value


def _str(table: dict[str, Any], key: str, where: str, *, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}.{key}: a non-empty string is required")
    return value


def _num(
    table: dict[str, Any],
    key: str,
    where: str,
    *,
    lo: float,
    hi: float,
    default: float | None = None,
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ScenarioError(f"{where}.{key}: a number in [{lo}, {hi}] is required")
    return float(value)


def _int(
    table: dict[str, Any], key: str, where: str, *, lo: int, hi: int, default: int | None = None
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ScenarioError(f"{where}.{key}: an integer in [{lo}, {hi}] is required")
    return value


def _signal(table: dict[str, Any], where: str) -> str:
    value = _str(table, "signal", where, default="KILL")
    if value not in _SIGNALS:
        raise ScenarioError(f"{where}.signal: one of {', '.join(_SIGNALS)}")
    return value
