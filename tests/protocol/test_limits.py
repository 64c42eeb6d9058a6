from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.protocol.limits import PeerLimiter, TokenBucket, backoff_ms


def test_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=10, burst=5, now=0)
    assert [bucket.take(0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(100)  # 100 ms at 10/s refills one token
    assert not bucket.take(100)
    assert sum(bucket.take(t) for t in range(200, 10_200, 10)) == 100  # 10 s at 10/s


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=200))
def test_bucket_never_exceeds_rate_times_time_plus_burst(gaps: list[int]) -> None:
    bucket = TokenBucket.full(rate=20, burst=3, now=0)
    now, allowed = 0, 0
    for gap in gaps:
        now += gap
        allowed += bucket.take(now)
    assert allowed <= 3 + now * 20 / 1000 + 1e-9


def test_flooding_peer_is_graylisted_and_others_are_unaffected() -> None:
    limiter = PeerLimiter(rate=1, burst=2, strikes=5, graylist_ms=1000)
    results = [limiter.allow("flood", 0) for _ in range(20)]
    assert results[:2] == [True, True]
    assert not any(results[2:])
    assert limiter.is_graylisted("flood", 0)
    assert limiter.allow("honest", 0)
    assert not limiter.allow("flood", 999)
    assert limiter.allow("flood", 1000 + 5000)  # graylist over and tokens refilled


def test_limiter_memory_is_bounded() -> None:
    limiter = PeerLimiter(rate=1, burst=1, max_peers=3)
    for i in range(10):
        limiter.allow(f"p{i}", 0)
    assert len(limiter._buckets) == 3


def test_backoff_doubles_caps_and_jitters() -> None:
    assert [backoff_ms(n, initial=100, maximum=1000, jitter=1.0) for n in (1, 2, 3, 4, 5)] == [
        100,
        200,
        400,
        800,
        1000,
    ]
    assert backoff_ms(2, initial=100, maximum=1000, jitter=1.2) == 240
    assert backoff_ms(10_000, initial=100, maximum=1000, jitter=1.0) == 1000
    with pytest.raises(ValueError, match="1-based"):
        backoff_ms(0, initial=1, maximum=1, jitter=1)


def test_author_ceiling_grants_a_prefix_refunds_and_remembers_who_is_behind() -> None:
    from p2pchat.protocol.limits import AuthorCeiling

    ceiling = AuthorCeiling(rate=10, burst=5, max_authors=2, behind_ms=1000)
    assert not ceiling.is_behind(b"a", 0)
    assert ceiling.grant(b"a", 0, 8) == 5  # a prefix of the run
    assert ceiling.is_behind(b"a", 0)
    assert ceiling.grant(b"a", 0, 1) == 0
    assert ceiling.grant(b"a", 100, 3) == 1  # 10/s: one more after 100 ms
    ceiling.refund(b"a", 2)  # a forged run's grant comes back
    assert ceiling.grant(b"a", 100, 2) == 2
    assert ceiling.is_behind(b"a", 999)
    assert not ceiling.is_behind(b"a", 1100)  # no deferral for behind_ms
    assert ceiling.grant(b"b", 0, 5) == 5  # authors have their own budgets
    assert ceiling.grant(b"c", 0, 1) == 1  # bounded: "a" is forgotten, not "b"
    assert ceiling.grant(b"a", 100, 5) == 5
