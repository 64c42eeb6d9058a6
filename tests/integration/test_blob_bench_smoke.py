"""``bench/blob_bench.py`` end to end, tiny, over two real py-libp2p hosts (the figures
are printed by the bench, only checked to be positive here; its three-holder run is
left to the bench itself, five hosts being too slow for the suite)."""

from __future__ import annotations

import pytest
import trio

from bench import blob_bench

pytestmark = pytest.mark.integration


async def test_a_blob_moves_between_two_libp2p_hosts() -> None:
    with trio.fail_after(120):
        result = await blob_bench.measure(megabytes=2, multi=False, repeat=2)
    assert result.size == 2_000_000
    assert min(result.raw_s, result.seal_s, result.blob_s) > 0
    assert len(result.raw_runs) == len(result.blob_runs) == 2
    assert "of raw" in result.report()
