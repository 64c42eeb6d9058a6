"""Simulation campaigns: ``make sim`` or ``python -m tests.sim.campaign --help``.

Runs one scenario over many seeds and prints, per seed and in total: delivery, app-level
duplicates, convergence time after the heal (mock seconds) and replicated events per
wall-clock second. A failing seed is printed with its problems and the command that
replays it; the exit status is 1 if any seed failed.

Replays are exact within a process and across processes that share ``PYTHONHASHSEED``
(set iteration order of ``str``/``bytes`` follows it): this module re-executes itself
with ``PYTHONHASHSEED=0`` when it is not already pinned.

Examples::

    python -m tests.sim.campaign                          # 50 nodes, 30 % loss, 20 seeds
    python -m tests.sim.campaign --nodes 1000 --seeds 3 --posts 200
    python -m tests.sim.campaign --kind private --nodes 20 --crashes 0 --seeds 50
    python -m tests.sim.campaign --first-seed 17 --seeds 1 -v   # replay one seed
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence

from .runner import Result, run_seed
from .scenarios import Scenario

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> tuple[Scenario, range, bool]:
    """The scenario, the seeds and the verbosity named by the command line."""
    defaults = Scenario()
    parser = argparse.ArgumentParser(
        prog="python -m tests.sim.campaign", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--nodes", type=int, default=defaults.nodes, help="simulated nodes (N)")
    add("--seeds", type=int, default=20, help="how many seeds to run")
    add("--first-seed", type=int, default=1, help="the first seed (then +1 per run)")
    add("--kind", choices=("public", "private"), default=defaults.kind)
    add("--loss", type=float, default=defaults.loss, help="per-link loss, 0..1")
    add("--duplicate", type=float, default=defaults.duplicate, help="gossip duplication")
    add("--latency", type=float, default=defaults.latency, help="link latency, seconds")
    add("--jitter", type=float, default=defaults.jitter, help="extra random delay (reorders)")
    add("--posts", type=int, default=defaults.posts)
    add("--active", type=float, default=defaults.active_s, help="mock seconds of activity")
    add("--partitions", type=int, default=defaults.partitions)
    add("--crashes", type=int, default=defaults.crashes, help="crash/restart episodes")
    add("--late", type=int, default=defaults.late_joiners, help="late joiners (churn)")
    add("--leavers", type=int, default=defaults.leavers, help="members leaving (churn)")
    add("--degree", type=int, default=defaults.degree, help="bootstrap dials per node")
    add("--settle", type=float, default=defaults.settle_limit_s, help="mock seconds to converge")
    add("-v", "--verbose", action="store_true", help="print every problem of failing seeds")
    args = parser.parse_args(argv)
    try:
        scenario = Scenario(
            nodes=args.nodes,
            kind=args.kind,
            loss=args.loss,
            duplicate=args.duplicate,
            latency=args.latency,
            jitter=args.jitter,
            posts=args.posts,
            active_s=args.active,
            partitions=args.partitions,
            crashes=args.crashes,
            late_joiners=args.late,
            leavers=args.leavers,
            degree=args.degree,
            settle_limit_s=args.settle,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return scenario, range(args.first_seed, args.first_seed + args.seeds), args.verbose


def _replay_command(result: Result) -> str:
    s = result.scenario
    return (
        f"python -m tests.sim.campaign --first-seed {result.seed} --seeds 1 --nodes {s.nodes} "
        f"--kind {s.kind} --loss {s.loss:g} --duplicate {s.duplicate:g} "
        f"--latency {s.latency:g} --jitter {s.jitter:g} --posts {s.posts} "
        f"--active {s.active_s:g} --partitions {s.partitions} --crashes {s.crashes} "
        f"--late {s.late_joiners} --leavers {s.leavers} --degree {s.degree} "
        f"--settle {s.settle_limit_s:g} -v"
    )


def _report(results: list[Result]) -> str:
    failed = [r for r in results if not r.ok]
    times = [r.convergence_s for r in results if r.convergence_s is not None]
    expected = sum(r.deliveries_expected for r in results)
    delivered = sum(r.deliveries for r in results)
    wall = sum(r.wall_s for r in results)
    lines = [
        f"seeds: {len(results)}, failed: {len(failed)}"
        + (f" ({', '.join(str(r.seed) for r in failed)})" if failed else ""),
        f"delivery: {delivered}/{expected} ({delivered / expected if expected else 1:.4%}), "
        f"duplicates: {sum(r.duplicates for r in results)}",
    ]
    if times:
        lines.append(
            f"convergence after heal (mock s): median {statistics.median(times):.0f}, "
            f"max {max(times):.0f}"
        )
    lines.append(
        f"wall: {wall:.1f}s, replicated events/s: "
        f"{sum(r.events_applied for r in results) / wall if wall else 0:.0f}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    scenario, seeds, verbose = parse_args(argv)
    results = []
    for seed in seeds:
        result = run_seed(scenario, seed)
        results.append(result)
        print(("ok   " if result.ok else "FAIL ") + result.summary(), flush=True)
        if not result.ok:
            for problem in result.problems if verbose else result.problems[:5]:
                print(f"     {problem}")
            print(f"     replay: {_replay_command(result)}", flush=True)
    print(_report(results))
    return 0 if all(r.ok for r in results) else 1


def _pin_hash_seed() -> None:
    """Re-exec with ``PYTHONHASHSEED=0`` so that a printed seed replays in any process."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "tests.sim.campaign", *sys.argv[1:]])


if __name__ == "__main__":
    _pin_hash_seed()
    sys.exit(main())
