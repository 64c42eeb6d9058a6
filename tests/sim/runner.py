"""One simulated run per seed, deterministic end to end.

Determinism has four sources, all fixed here: the plan (``random.Random`` of the seed),
the network's faults (the hub's ``random.Random``), the nodes' key material and timing
jitter (seeded per peer and incarnation), and trio's own scheduler, which shuffles its
run queue with the module-level ``trio._core._run._r``; it is reseeded before each run.
Time is trio's ``MockClock(autojump_threshold=0)``: the run jumps over idle time, so a
run of many mock minutes costs only the CPU its work needs. Python's string hashing is
the last source: set iteration order of ``str``/``bytes`` depends on ``PYTHONHASHSEED``,
so a replay in another process needs the same value (``campaign`` pins it to 0).
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing
from trio._core import _run as trio_run_module

from p2pchat.devices.roster import save_list
from p2pchat.net.memory import LinkFaults, open_memory_hub
from p2pchat.protocol.records import DeviceEntry, DeviceListRecord

from .properties import Expectations, converged, delivery_counts, violations
from .scenarios import Scenario, carry_out, plan
from .verify_memo import shared_verifications
from .world import SimPeer, World

__all__ = ["Result", "run_seed"]

#: How often (mock seconds) convergence is checked after the heal.
_POLL_S = 2.0
#: Mock seconds the run goes on after convergence, so late duplicates would be counted.
_LINGER_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one run measured, and what went wrong (``problems`` empty: it passed)."""

    seed: int
    scenario: Scenario
    problems: tuple[str, ...]
    posts: int
    members: int
    deliveries_expected: int
    deliveries: int
    duplicates: int
    #: Private groups: (departed member, post) pairs where the post's author knew of the
    #: departure: never readable by that member (the count shows the property was tested).
    after_removal: int
    #: Mock seconds from the heal until every property held (None: never, within limit).
    convergence_s: float | None
    mock_s: float
    wall_s: float
    events_applied: int
    digest: str
    trace_lines: int

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def delivery_ratio(self) -> float:
        return self.deliveries / self.deliveries_expected if self.deliveries_expected else 1.0

    def summary(self) -> str:
        converged = "never" if self.convergence_s is None else f"{self.convergence_s:.0f}s"
        rate = self.events_applied / self.wall_s if self.wall_s else 0.0
        return (
            f"seed={self.seed} nodes={self.scenario.nodes} kind={self.scenario.kind} "
            f"loss={self.scenario.loss:.0%} posts={self.posts} members={self.members} "
            f"delivery={self.delivery_ratio:.2%} duplicates={self.duplicates} "
            f"after_departure={self.after_removal} "
            f"converged_after={converged} mock={self.mock_s:.0f}s wall={self.wall_s:.1f}s "
            f"events/s={rate:.0f} digest={self.digest}"
        )


def run_seed(scenario: Scenario, seed: int) -> Result:
    """Run ``scenario`` once with ``seed`` (blocking: starts its own trio loop)."""
    trio_run_module._r.seed(seed)
    clock = trio.testing.MockClock(autojump_threshold=0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="p2pchat-sim-") as home, shared_verifications():
        outcome = trio.run(_main, scenario, seed, Path(home), clock=clock)
    wall = time.perf_counter() - started
    problems = list(outcome.problems)
    if outcome.convergence_s is None:
        problems.insert(0, f"no convergence within {scenario.settle_limit_s:.0f} mock seconds")
    expected, delivered, duplicates = outcome.counts
    return Result(
        seed=seed,
        scenario=scenario,
        problems=tuple(problems),
        posts=len(outcome.expect.posts),
        members=len(outcome.expect.members),
        deliveries_expected=expected,
        deliveries=delivered,
        duplicates=duplicates,
        after_removal=sum(len(e) for e in outcome.expect.after_removal.values()),
        convergence_s=outcome.convergence_s,
        mock_s=outcome.mock_s,
        wall_s=wall,
        events_applied=outcome.events_applied,
        digest=outcome.digest,
        trace_lines=outcome.trace_lines,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    """What the trio side of a run hands back (measured before the nodes stop)."""

    expect: Expectations
    problems: list[str]
    counts: tuple[int, int, int]
    convergence_s: float | None
    mock_s: float
    events_applied: int
    digest: str
    trace_lines: int


async def _peers(scenario: Scenario) -> list[SimPeer]:
    """The run's nodes; with ``scenario.devices`` > 1, accounts of 1..devices nodes, each
    store holding the account's whole device list (as linking leaves it)."""
    peers: list[SimPeer] = []
    account = 0
    while len(peers) < scenario.nodes:
        first = SimPeer.named(f"n{len(peers):04d}")
        group = [first]
        for _ in range(account % scenario.devices):
            if len(peers) + len(group) < scenario.nodes:
                group.append(SimPeer.linked(f"n{len(peers) + len(group):04d}", first))
        if len(group) > 1:
            entries = tuple(
                DeviceEntry(
                    device=p.identity.device.public_key, cert=p.identity.device.certificate.encode()
                )
                for p in group
            )
            for peer in group:
                await save_list(peer.store, DeviceListRecord(devices=entries))
        peers.extend(group)
        account += 1
    return peers


async def _main(scenario: Scenario, seed: int, home: Path) -> _Outcome:
    peers = await _peers(scenario)
    actions = plan(scenario, seed)
    async with open_memory_hub(rng=random.Random(f"hub-{seed}")) as hub:
        hub.set_default_faults(
            LinkFaults(
                loss=scenario.loss,
                latency=scenario.latency,
                jitter=scenario.jitter,
                duplicate=scenario.duplicate,
            )
        )
        async with trio.open_nursery() as nursery:
            world = World(hub=hub, nursery=nursery, home=home, seed=seed)
            expect = await carry_out(world, peers, scenario, actions)
            # Lift every fault but the links' own: heal, and restart whoever is down.
            hub.heal()
            for peer in peers:
                if not peer.up:
                    await world.start(peer)
            healed = trio.current_time()
            world.trace.note("sim", "healed")
            convergence: float | None = None
            while trio.current_time() - healed < scenario.settle_limit_s:
                if converged(peers, expect):
                    convergence = trio.current_time() - healed
                    break
                await trio.sleep(_POLL_S)
            world.trace.note("sim", f"converged {convergence}")
            # Let in-flight work (duplicated or late gossip) land before counting.
            await trio.sleep(_LINGER_S)
            applied = 0
            for peer in peers:
                if peer.node is not None:
                    stats = peer.node._groups.statistics()
                    applied += stats["events"]
                    world.trace.note("sim", f"{peer.name} {stats}")
            world.trace.note("sim", repr(hub.statistics()))
            outcome = _Outcome(
                expect=expect,
                problems=violations(peers, expect),
                counts=delivery_counts(peers, expect),
                convergence_s=convergence,
                mock_s=trio.current_time(),
                events_applied=applied,
                digest=world.trace.digest(),
                trace_lines=world.trace.lines,
            )
            nursery.cancel_scope.cancel()
    return outcome
