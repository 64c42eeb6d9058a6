"""``bench/history_bench.py`` runs end to end with a small history (its figures are
printed, not asserted: timing and memory belong to the bench)."""

from __future__ import annotations

import pytest
import trio

from bench import history_bench

pytestmark = pytest.mark.integration


async def test_history_bench_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(120):
        figures = await history_bench.main(events=300)
    out = capsys.readouterr().out
    assert "300 stored posts" in out
    for name in (
        "start, seconds",
        "start, CPU seconds",
        "RSS once started, MB",
        "RSS per stored event, KB",
    ):
        assert name in out
    assert figures.events == 300
    for figure in (figures.empty_start_s, figures.full_start_s):
        assert figure > 0
    for figure in (figures.empty_rss_mb, figures.full_rss_mb):
        assert figure > 0


def test_history_bench_flood_small_run() -> None:
    # Every post is received and held (the measuring process asserts it); figures only.
    figures = history_bench.flood(40)
    assert figures["posts"] == 40
    assert figures["cpu_s"] > 0
