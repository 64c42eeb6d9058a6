"""``bench/rpc_bench.py --quick`` runs end to end (its figures are printed, not asserted)."""

from __future__ import annotations

import pytest
import trio

from bench import rpc_bench


async def test_bench_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(60):
        await rpc_bench.main(quick=True)
    out = capsys.readouterr().out
    assert "events, publish -> socket -> subscription" in out
    assert "rpc.ping round trip" in out
