"""``python -m tests.testnet``: run a testnet scenario and write its report (see --help)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.netns import available, iptables_available
from tests.testnet.checks import check_all, figures
from tests.testnet.report import write_report
from tests.testnet.runner import Run
from tests.testnet.scenario import SCENARIOS, ScenarioError, load
from tests.testnet.testbed import LoopbackTestbed, NetnsTestbed, Testbed

DEFAULT_REPORTS = Path(__file__).resolve().parents[2] / "testnet-reports"


def main(argv: list[str] | None = None) -> int:
    scenarios = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.toml")))
    parser = argparse.ArgumentParser(
        prog="python -m tests.testnet",
        description=(
            "Run many real `p2pchat node run` processes, each in its own network namespace "
            "(NAT routers, per-link loss, partitions that heal), drive them through their RPC "
            "with a scenario (DMs between strangers, groups, churn), check delivery and write "
            "a report (JSON, Markdown, pictures). Needs root for namespaces; --loopback runs "
            "everything on 127.0.0.1 instead, emulating nothing."
        ),
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        default="default",
        help=f"a scenario file, or one of: {scenarios} (default: default)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help=f"report directory (default: {DEFAULT_REPORTS}/<scenario>-<time>)",
    )
    parser.add_argument(
        "--loopback",
        action="store_true",
        help="no namespaces: all nodes on 127.0.0.1 (no NAT, loss or partitions; labelled)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="override the traffic phase, seconds"
    )
    parser.add_argument("--keep", action="store_true", help="keep the nodes' homes and logs")
    args = parser.parse_args(argv)

    try:
        scenario = load(args.scenario)
    except ScenarioError as exc:
        parser.error(str(exc))
    if args.duration is not None:
        from dataclasses import replace

        scenario = replace(scenario, duration_s=args.duration)
    report = args.report or DEFAULT_REPORTS / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.loopback:
        ok, reason = available()
        ok2, reason2 = iptables_available()
        if not (ok and ok2):
            print(
                f"network namespaces unusable ({reason or reason2}); run as root, or pass "
                "--loopback for the labelled 127.0.0.1-only mode",
                file=sys.stderr,
            )
            return 2
    work = Path(tempfile.mkdtemp(prefix="p2ptn-"))
    print(f"testnet {scenario.name}: work dir {work}, report {report}", file=sys.stderr)
    try:
        testbed: Testbed = LoopbackTestbed(scenario) if args.loopback else NetnsTestbed(scenario)
        with testbed:
            data = Run(scenario, testbed, work).run()
        checks = check_all(data)
        figs = figures(data)
        summary = write_report(data, checks, figs, report)
        logs = report / "logs"
        shutil.copytree(work / "logs", logs, dirs_exist_ok=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print((report / "report.md").read_text())
    print(json.dumps({"ok": summary["ok"], "report": str(report)}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
