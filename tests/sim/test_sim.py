"""The network simulator in the normal suite: real nodes, seeded faults, properties after heal.

Each test runs whole simulations synchronously (``trio.run`` with a ``MockClock``
inside :func:`tests.sim.runner.run_seed`), so these are plain functions, not trio
tests. A failure message carries the seed and the command that replays it.

The seeded campaigns (one test per seed) are pure CPU: their runs are started together
on a pool of worker processes, one per available core, and each test asserts on its own
seed's result. Each run is the same as in this process (a fresh ``trio.run`` with its
seeded clock, scheduler and faults); only the wall time is shared out.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import pytest

from .properties import Expectations, violations
from .runner import Result, run_seed
from .scenarios import Scenario, plan
from .world import SimPeer

#: The issue's bar: 50 nodes, 30 % loss, partitions, crashes and churn, 20 seeds.
#: Leaving is exercised separately (test_a_leave_during_a_partition_still_reaches_everyone).
PUBLIC = Scenario(nodes=50, loss=0.3, posts=30, active_s=90.0, leavers=0)
PUBLIC_SEEDS = range(1, 21)
#: End-to-end encrypted: sender keys over pairwise sessions, one member removed mid-run.
#: No crashes here: see test_private_group_survives_crashes_and_restarts.
PRIVATE = Scenario(
    nodes=12, kind="private", loss=0.3, crashes=0, late_joiners=2, posts=40, leavers=0
)
PRIVATE_SEEDS = range(1, 5)


#: The campaign tests whose seeds run on the pool, with their scenarios.
_CAMPAIGNS = {
    "test_public_group_of_50_with_30_percent_loss_converges": PUBLIC,
    "test_private_group_converges_and_the_removed_member_reads_nothing_later": PRIVATE,
}


@pytest.fixture(scope="module")
def campaign_runs(
    request: pytest.FixtureRequest,
) -> Iterator[dict[tuple[str, int], Future[Result]]]:
    """The runs of every selected campaign test, submitted at once to worker processes."""
    wanted: list[tuple[str, int]] = []
    for item in request.session.items:
        if isinstance(item, pytest.Function) and item.module is request.module:
            seed = item.callspec.params.get("seed") if hasattr(item, "callspec") else None
            if item.originalname in _CAMPAIGNS and isinstance(seed, int):
                wanted.append((item.originalname, seed))
    workers = min(len(os.sched_getaffinity(0)), len(wanted))
    if workers < 2:  # nothing to share out: run in this process, when the test asks
        yield {}
        return
    # spawn: a fresh interpreter, not a fork of this one (its threads, trio's globals)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        runs = {key: pool.submit(run_seed, _CAMPAIGNS[key[0]], key[1]) for key in wanted}
        try:
            yield runs
        finally:
            for run in runs.values():
                run.cancel()


def _run(runs: dict[tuple[str, int], Future[Result]], test: str, seed: int) -> Result:
    run = runs.get((test, seed))
    return run.result() if run is not None else run_seed(_CAMPAIGNS[test], seed)


def explain(result: Result) -> str:
    s = result.scenario
    return (
        f"simulation failed: {result.summary()}\n  "
        + "\n  ".join(result.problems[:20])
        + f"\nreplay: python -m tests.sim.campaign --first-seed {result.seed} --seeds 1 "
        f"--nodes {s.nodes} --kind {s.kind} --loss {s.loss} --posts {s.posts} "
        f"--active {s.active_s:g} --crashes {s.crashes} --late {s.late_joiners} "
        f"--leavers {s.leavers} -v"
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", PUBLIC_SEEDS)
def test_public_group_of_50_with_30_percent_loss_converges(
    campaign_runs: dict[tuple[str, int], Future[Result]], seed: int
) -> None:
    result = _run(campaign_runs, "test_public_group_of_50_with_30_percent_loss_converges", seed)
    assert result.ok, explain(result)
    assert result.members == PUBLIC.nodes - PUBLIC.leavers
    assert result.deliveries == result.deliveries_expected == result.posts * result.members
    assert result.duplicates == 0


@pytest.mark.parametrize("seed", PRIVATE_SEEDS)
def test_private_group_converges_and_the_removed_member_reads_nothing_later(
    campaign_runs: dict[tuple[str, int], Future[Result]], seed: int
) -> None:
    result = _run(
        campaign_runs,
        "test_private_group_converges_and_the_removed_member_reads_nothing_later",
        seed,
    )
    assert result.ok, explain(result)
    assert result.members == PRIVATE.nodes - 1 - PRIVATE.leavers  # one was removed
    assert result.after_removal > 0  # the departure property was exercised


def test_private_group_survives_crashes_and_restarts() -> None:
    """Restarted members still accept DMs (sender keys) from members who are not their
    contacts: every session is indexed at start, not only contacts'."""
    scenario = Scenario(nodes=10, kind="private", crashes=3, late_joiners=2)
    result = run_seed(scenario, 7)
    assert result.ok, explain(result)


def test_a_leave_during_a_partition_still_reaches_everyone() -> None:
    """A leaver that cannot hand its leave over stays *departing* (answering sync,
    retrying) until a member has it: the leave is never lost."""
    scenario = Scenario(nodes=12, posts=20, active_s=80.0, crashes=2, late_joiners=2)
    result = run_seed(scenario, 7)
    assert result.ok, explain(result)


def test_accounts_of_one_to_three_devices_all_post_and_read() -> None:
    """Issue 18: an account is the member; each of its devices (1-3 per account here)
    joins, posts and gets every post exactly once, under loss, crashes and churn."""
    scenario = Scenario(
        nodes=12, posts=24, active_s=80.0, crashes=2, late_joiners=2, leavers=0, devices=3
    )
    result = run_seed(scenario, 11)
    assert result.ok, explain(result)
    assert result.members == 6  # accounts of 1, 2, 3, 1, 2, 3 devices
    assert result.deliveries == result.deliveries_expected > result.posts * result.members
    assert result.duplicates == 0


def test_a_seed_replays_exactly() -> None:
    scenario = Scenario(nodes=12, posts=20, active_s=80.0, crashes=2, late_joiners=2, leavers=0)
    first, second = run_seed(scenario, 7), run_seed(scenario, 7)
    assert first.ok, explain(first)
    assert first.trace_lines > 300  # a real run, not an empty one
    assert (first.digest, first.trace_lines, first.convergence_s, first.mock_s) == (
        second.digest,
        second.trace_lines,
        second.convergence_s,
        second.mock_s,
    )
    other = run_seed(scenario, 8)
    assert other.digest != first.digest  # the digest does depend on the seed


def test_the_plan_depends_on_the_seed_alone() -> None:
    assert plan(PUBLIC, 3) == plan(PUBLIC, 3)
    assert plan(PUBLIC, 3) != plan(PUBLIC, 4)
    actions = plan(PUBLIC, 3)
    kinds = {a.what for a in actions}
    assert {"join", "post", "partition", "heal", "crash", "restart", "start"} <= kinds
    assert "leave" in {a.what for a in plan(Scenario(), 3)}
    assert [a.at for a in actions] == sorted(a.at for a in actions)


def test_the_properties_report_missing_and_duplicated_deliveries() -> None:
    """The checker itself can fail: lost, duplicated and leaked posts are reported."""
    alice, bob = SimPeer.named("checker-a"), SimPeer.named("checker-b")
    expect = Expectations(owner=alice.account, group=bytes(32), kind_private=True)
    expect.members = {alice.account}
    expect.removed = {bob.account}
    expect.posts = {b"p1" * 16: "one", b"p2" * 16: "two"}
    expect.recipients = {event: frozenset({alice.account}) for event in expect.posts}
    expect.after_removal = {bob.account: {b"p2" * 16}}
    alice.deliveries[b"p1" * 16] = 2
    bob.texts[b"p2" * 16] = "two"
    problems = violations([alice, bob], expect)
    assert any("checker-a is not running" in p for p in problems)
    assert any(f"post {(b'p1' * 16).hex()[:12]} reached the app 2x" in p for p in problems)
    assert any(f"post {(b'p2' * 16).hex()[:12]} never reached the app" in p for p in problems)
    assert any("removed checker-b read 1 posts of a later epoch" in p for p in problems)
