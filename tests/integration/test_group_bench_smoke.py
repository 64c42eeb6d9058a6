"""``bench/group_bench.py --quick`` runs end to end on real libp2p hosts (its figures are
printed, not asserted: timing belongs to the bench)."""

from __future__ import annotations

import pytest
import trio

from bench import group_bench

pytestmark = pytest.mark.integration


async def test_group_bench_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(90):
        rows = await group_bench.main(quick=True)
    out = capsys.readouterr().out
    names = [row.name for row in rows]
    assert names == [
        "latency p50, 4 nodes",
        "latency p99, 4 nodes",
        "burst of 40, delivered",
        "sustained, delivered to all",
        "catch-up, bytes/s",
    ]
    for name in names:
        assert name in out
    # Sync makes group delivery complete, whatever gossip dropped.
    burst = rows[2]
    assert burst.group == 100.0
    assert all(row.raw > 0 and row.group > 0 for row in rows)
