"""``bench/dm_bench.py`` end to end, tiny: its figures are printed, never asserted beyond
being positive (timing belongs in the bench, not in tests)."""

from __future__ import annotations

import pytest
import trio

from bench import dm_bench
from bench.net_bench import measure_framed_baseline

pytestmark = pytest.mark.integration


async def test_dm_measurements_are_positive() -> None:
    with trio.fail_after(120):
        throughputs, latency = await dm_bench.measure_dm(messages=5, round_trips=3)
        raw = await measure_framed_baseline(
            messages=20, round_trips=5, sizes=(throughputs[0].frame_bytes,)
        )
    assert [t.mode for t in throughputs] == list(dm_bench.MODES)
    for throughput in throughputs:
        assert throughput.messages == 5
        assert throughput.messages_per_second > 0
        assert throughput.frame_bytes > 0
    assert latency.samples == 3
    assert 0 < latency.p50_ms <= latency.p99_ms
    report = dm_bench.report(throughputs, latency, raw, dm_bench.IdleRss(1, 1, 1))
    for mode in dm_bench.MODES:
        assert f"{mode} msg/s" in report


async def test_idle_rss_is_read_from_live_processes() -> None:
    with trio.fail_after(120):
        rss = await dm_bench.measure_idle_rss()
    assert rss.import_only_kib > 0
    assert rss.node_peak_kib >= rss.node_kib > 0


async def test_first_dm_to_a_stranger_is_timed() -> None:
    with trio.fail_after(120):
        first = await dm_bench.measure_first_dm(nodes=3, pairs=1)
    assert len(first.first_ms) == len(first.second_ms) == 1
    assert first.first_ms[0] > 0
    assert first.second_ms[0] > 0
    assert "first DM to a stranger" in dm_bench.report_first_dm(first)
