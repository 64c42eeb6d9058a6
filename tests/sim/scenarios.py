"""What happens in a run: a plan drawn from the seed, then carried out on real nodes.

A public-group run: node 0 creates an open group; the other nodes start, dial a few
bootstrap peers and join over the first seconds (some of them late, as churn); members
post at random times; meanwhile the network is partitioned and healed, and nodes crash
and restart from their stores. Then every fault except the link faults (loss,
duplication, jitter) is lifted, and the run waits (in mock time) until the properties
hold or the time limit passes.

A private-group run adds the end-to-end encryption: members are invited, the owner
removes one member mid-run, and nothing posted after the removal may ever be readable
by the removed member.

The plan is drawn from its own ``random.Random(seed)`` before anything runs, so the
schedule never depends on how the run unfolds; the network's faults draw from the hub's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio

from p2pchat.errors import P2PChatError

from .properties import Expectations
from .world import SimPeer, World

__all__ = ["Action", "Scenario", "plan", "carry_out"]


#: A simulated user tries to join this many times, 10 mock seconds apart.
_JOIN_TRIES = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """The shape of a run (everything but the seed)."""

    nodes: int = 50
    kind: str = "public"
    loss: float = 0.3
    duplicate: float = 0.05
    latency: float = 0.02
    jitter: float = 0.2
    posts: int = 60
    #: Mock seconds during which members post and faults come and go.
    active_s: float = 150.0
    partitions: int = 1
    crashes: int = 3
    #: Nodes that start and join only during the active phase (churn).
    late_joiners: int = 5
    #: Bootstrap connections each node dials when it starts (lossy, like any dial).
    degree: int = 3
    #: Members that leave the group for good during the active phase (churn).
    leavers: int = 2
    #: Private groups: the owner removes one member in the middle of the active phase.
    remove_one: bool = True
    #: Mock seconds allowed for convergence after everything heals.
    settle_limit_s: float = 900.0
    #: Devices per account: account k runs on ``1 + k % devices`` of the nodes (issue 18;
    #: every device of a member is a member's node, posting and reading).
    devices: int = 1

    def __post_init__(self) -> None:
        if self.nodes < 2 or self.kind not in ("public", "private"):
            raise ValueError("a run needs two nodes or more, in a public or private group")
        if self.late_joiners + self.leavers + 1 >= self.nodes - 1 or self.crashes >= self.nodes:
            raise ValueError("too many late joiners, leavers or crashes for the node count")


@dataclass(frozen=True, slots=True)
class Action:
    """One scheduled step: ``at`` mock seconds into the active phase."""

    at: float
    what: str  # start, join, post, partition, heal, crash, restart, remove, leave
    peer: int = -1
    sides: tuple[tuple[int, ...], ...] = ()


def plan(scenario: Scenario, seed: int) -> list[Action]:
    """The whole schedule of a run, drawn from ``seed`` alone."""
    rnd = random.Random(f"plan-{seed}")
    n, active = scenario.nodes, scenario.active_s
    late = set(rnd.sample(range(1, n), scenario.late_joiners))
    actions: list[Action] = []
    for peer in range(1, n):
        if peer in late:
            at = rnd.uniform(active * 0.2, active * 0.7)
            actions.append(Action(at, "start", peer))
            actions.append(Action(at + 0.5, "join", peer))
        else:
            actions.append(Action(rnd.uniform(0, 10), "join", peer))
    for _ in range(scenario.posts):
        actions.append(Action(rnd.uniform(5, active), "post", rnd.randrange(n)))
    window = active / max(1, scenario.partitions)
    for index in range(scenario.partitions):
        start = index * window + rnd.uniform(0.1, 0.4) * window
        order = list(range(n))
        rnd.shuffle(order)
        cut = rnd.randrange(n // 3, n - n // 3 + 1)
        sides = (tuple(sorted(order[:cut])), tuple(sorted(order[cut:])))
        actions.append(Action(start, "partition", sides=sides))
        actions.append(Action(start + rnd.uniform(0.3, 0.5) * window, "heal"))
    crashable = [p for p in range(n) if p not in late]
    for peer in rnd.sample(crashable, scenario.crashes):
        at = rnd.uniform(15, active * 0.8)
        actions.append(Action(at, "crash", peer))
        actions.append(Action(at + rnd.uniform(5, 60), "restart", peer))
    staying = [p for p in range(1, n) if p not in late]
    if scenario.kind == "private" and scenario.remove_one:
        victim = rnd.choice(staying)
        staying.remove(victim)
        actions.append(Action(active * 0.5, "remove", victim))
    for peer in rnd.sample(staying, scenario.leavers):
        actions.append(Action(rnd.uniform(active * 0.3, active * 0.9), "leave", peer))
    actions.sort(key=lambda a: (a.at, a.what, a.peer))
    return actions


async def carry_out(
    world: World, peers: list[SimPeer], scenario: Scenario, actions: list[Action]
) -> Expectations:
    """Create the group, run the plan, and return what the properties must find."""
    owner = peers[0]
    node = await world.start(owner)
    expect = Expectations(owner=owner.account, kind_private=scenario.kind == "private")
    late = {a.peer for a in actions if a.what == "start"}
    for peer in peers[1:]:
        if peers.index(peer) not in late:
            await world.start(peer)
    rnd = random.Random(f"bootstrap-{world.trace.digest()}")
    for index, peer in enumerate(peers):
        if index not in late:
            await _bootstrap(world, peer, peers, scenario.degree, rnd)
    expect.group = await node.create_group("sim", kind=scenario.kind, tags=("sim",))
    expect.members.add(owner.account)
    world.trace.note(owner.name, f"created {expect.group.hex()}")
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for action in actions:
            await trio.sleep_until(start + action.at)
            nursery.start_soon(_act, world, peers, scenario, action, expect, rnd)
    return expect


async def _bootstrap(
    world: World, peer: SimPeer, peers: list[SimPeer], degree: int, rnd: random.Random
) -> None:
    """Dial ``degree`` random running peers, as a node dials its bootstrap list."""
    node = peer.node
    if node is None:
        return
    others = [p for p in peers if p is not peer and p.node is not None]
    for other in rnd.sample(others, min(degree, len(others))):
        try:
            await node.connect(f"/memory/{other.peer_id}/p2p/{other.peer_id}")
        except P2PChatError:
            world.trace.note(peer.name, f"bootstrap dial to {other.name} failed")


async def _act(
    world: World,
    peers: list[SimPeer],
    scenario: Scenario,
    action: Action,
    expect: Expectations,
    rnd: random.Random,
) -> None:
    peer = peers[action.peer] if action.peer >= 0 else None
    world.trace.note("sim", f"{action.what} {peer.name if peer else action.sides}")
    if action.what == "partition":
        world.hub.partition(*[[peers[i].peer_id for i in side] for side in action.sides])
    elif action.what == "heal":
        world.hub.heal()
    elif peer is None:
        raise ValueError(f"{action.what} needs a peer")
    elif action.what == "start":
        await world.start(peer)
        await _bootstrap(world, peer, peers, scenario.degree, rnd)
    elif action.what == "crash":
        await world.crash(peer)
    elif action.what == "restart":
        if not peer.up:
            await world.start(peer)
    elif action.what == "join":
        await _join(world, peer, peers, expect)
    elif action.what == "post":
        await _post(world, peer, expect)
    elif action.what == "remove":
        await _remove(world, peers[0], peer, expect)
    elif action.what == "leave":
        await _leave(world, peer, expect)


async def _join(world: World, peer: SimPeer, peers: list[SimPeer], expect: Expectations) -> None:
    """Join like a user would: retry a few times while it fails (owner unreachable, ...)."""
    for _ in range(_JOIN_TRIES):
        node, owner = peer.node, peers[0].node
        if node is not None and (owner is not None or not expect.kind_private):
            try:
                if owner is not None and expect.kind_private:
                    await node.join_group(await owner.invite(expect.group))
                else:
                    await node.join_group(expect.group.hex())
            except P2PChatError as exc:
                world.trace.note(peer.name, f"join failed: {type(exc).__name__}")
            else:
                expect.members.add(peer.account)
                world.trace.note(peer.name, "joined")
                return
        await trio.sleep(10)
    expect.gave_up.append(peer.name)


async def _post(world: World, peer: SimPeer, expect: Expectations) -> None:
    node = peer.node
    if node is None or peer.account not in expect.members:
        return
    text = f"post {len(expect.posts)} by {peer.name}"
    try:
        event_id = await node.post(expect.group, text)
    except P2PChatError as exc:  # crashed or removed meanwhile
        world.trace.note(peer.name, f"post failed: {type(exc).__name__}")
        return
    expect.posts[event_id] = text
    members = node.group_state(expect.group).members
    expect.recipients[event_id] = frozenset(members)
    for account in [a for a in expect.removed if a not in members]:
        # Its author knew of this departure: it is sealed for a later epoch.
        expect.after_removal.setdefault(account, set()).add(event_id)


async def _leave(world: World, peer: SimPeer, expect: Expectations) -> None:
    """Leave for good (retried while the node is down; skipped if it never joined)."""
    for _ in range(_JOIN_TRIES):
        node = peer.node
        if peer.account not in expect.members:
            return
        if node is not None:
            try:
                await node.leave_group(expect.group)
            except P2PChatError as exc:
                world.trace.note(peer.name, f"leave failed: {type(exc).__name__}")
            else:
                expect.members.discard(peer.account)
                expect.removed.add(peer.account)
                world.trace.note(peer.name, "left")
                return
        await trio.sleep(10)


async def _remove(world: World, owner: SimPeer, victim: SimPeer, expect: Expectations) -> None:
    for _ in range(20):
        node = owner.node
        if node is not None and victim.account in expect.members:
            try:
                await node.remove(expect.group, victim.account, reason="simulated")
            except P2PChatError as exc:
                world.trace.note(owner.name, f"remove failed: {type(exc).__name__}")
            else:
                expect.members.discard(victim.account)
                expect.removed.add(victim.account)
                return
        await trio.sleep(5)
