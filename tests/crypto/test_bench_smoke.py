"""The crypto benchmark runs end to end with tiny counts (rates only: no timing thresholds)."""

from __future__ import annotations

import pytest

from bench import crypto_bench


def test_every_row_has_positive_rates() -> None:
    rows = crypto_bench.run(count=3, repeats=1)
    expected = {
        (f"{kind} {operation}", size)
        for kind in ("group", *(("pairwise",) if crypto_bench.pairwise_available() else ()))
        for operation in ("encrypt", "decrypt")
        for size in crypto_bench.SIZES
    }
    assert {(row.operation, row.size) for row in rows} == expected
    for row in rows:
        assert row.session_rate > 0
        assert row.raw_rate > 0
        assert row.ratio == pytest.approx(row.session_rate / row.raw_rate)


def test_main_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert crypto_bench.main(["--quick", "--count", "2", "--no-pairwise"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["operation", "size", "session", "msg/s", "raw", "msg/s", "ratio"]
    assert sum(line.startswith("group ") for line in lines) == 2 * len(crypto_bench.SIZES)
    assert "pairwise" not in out.split("\n\n")[0]
