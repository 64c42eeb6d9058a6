"""The CI smoke of the testnet: the `smoke` scenario, for real, inside `make test`.

Six real ``p2pchat node run`` processes in their own network namespaces (two behind a NAT
router), 2 % loss on every link, one SIGKILL and restart, one partition that heals; DMs
between strangers and a group, driven through the RPC. The harness runs as a child process
(as ``make testnet`` does) so its namespaces are torn down by its own exit paths; a timeout
here sends it SIGTERM first, which tears them down too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import require_netns
from tests.netns._system import namespaces

pytestmark = [pytest.mark.integration, pytest.mark.netns]

LIMIT_S = 420.0  # the scenario takes ~2 minutes; 2 shared cores can make it much slower


def test_smoke_scenario_delivers_everything_through_a_kill_and_a_partition(
    tmp_path: Path,
) -> None:
    require_netns()
    report = tmp_path / "report"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.testnet", "smoke", "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the world's handler tears the namespaces down
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"the smoke scenario did not finish within {LIMIT_S} s:\n{out[-4000:]}")
    summary = json.loads((report / "report.json").read_text())
    failed = [c for c in summary["checks"] if not c["passed"] and not c["expected_failure"]]
    assert not failed, (failed, out[-4000:])
    assert summary["ok"]
    assert proc.returncode == 0, out[-4000:]
    assert summary["mode"] == "netns"

    kinds = [e["kind"] for e in summary["timeline"]]
    assert {"kill", "restart", "partition", "heal", "converged"} <= set(kinds)
    assert next(e for e in summary["timeline"] if e["kind"] == "kill")["exit_code"] == -9
    names = [c["name"] for c in summary["checks"]]
    # Every DM direction of both pairs (one from behind the NAT) and the group were checked.
    assert sum(1 for n in names if n.startswith("dm ")) == 4
    assert sum(1 for n in names if n.startswith("first contact")) == 2
    assert sum(1 for n in names if n.startswith("group smoke")) == 2
    figures = summary["figures"]
    assert figures["latency_s"]["dm"]["n"] > 0
    assert figures["latency_s"]["group"]["n"] > 0
    assert all(n["rss_mib_max"] > 0 and n["fds_max"] > 0 for n in figures["nodes"].values())
    for picture in ("latency_cdf.png", "rss.png", "fds.png", "delivery.png"):
        assert (report / picture).stat().st_size > 0
    assert "PASSED" in (report / "report.md").read_text()
    # Nothing of the run is left behind: none of its namespaces exist any more.
    prefix = summary["testbed"]["namespace_prefix"]
    assert not [ns for ns in namespaces() if ns.startswith(prefix)]
