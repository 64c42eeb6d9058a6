"""The cursor log behind resumable subscriptions, and the token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.rpc.events import EventLog, TokenBucket


def _log(n: int, capacity: int) -> EventLog:
    log = EventLog(capacity=capacity)
    for i in range(n):
        log.append({"type": "even" if i % 2 == 0 else "odd", "i": i})
    return log


def test_cursors_increase_from_one() -> None:
    log = EventLog(capacity=3)
    assert (log.last_cursor, log.oldest_cursor) == (0, 1)
    assert [log.append({"type": "t"}).cursor for _ in range(5)] == [1, 2, 3, 4, 5]
    assert (log.last_cursor, log.oldest_cursor, len(log)) == (5, 3, 3)


def test_resume_inside_the_buffer_has_no_gap() -> None:
    log = _log(10, capacity=5)  # keeps cursors 6..10
    replay = log.since(5)
    assert not replay.gap
    assert [e.cursor for e in replay.events] == [6, 7, 8, 9, 10]
    assert log.since(10).events == []
    assert not log.since(10).gap


def test_resume_before_the_buffer_reports_a_gap() -> None:
    log = _log(10, capacity=5)
    replay = log.since(4)  # cursor 5 was evicted
    assert replay.gap
    assert [e.cursor for e in replay.events] == [6, 7, 8, 9, 10]


def test_cursor_from_the_future_is_a_gap_with_full_replay() -> None:
    log = _log(3, capacity=5)
    replay = log.since(100)
    assert replay.gap
    assert [e.cursor for e in replay.events] == [1, 2, 3]


def test_filter_and_live_only() -> None:
    log = _log(6, capacity=10)
    assert [e.cursor for e in log.since(0, frozenset({"odd"})).events] == [2, 4, 6]
    live = log.since(None)
    assert (live.gap, live.events, live.last_cursor) == (False, [], 6)


@pytest.mark.parametrize("event", [{}, {"type": ""}, {"type": 3}])
def test_events_need_a_type(event: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="type"):
        EventLog(capacity=1).append(event)
    with pytest.raises(ValueError, match="capacity"):
        EventLog(capacity=0)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.4) is False  # 0.8 tokens
    assert bucket.take(100.5) is True  # 1.0 token
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # capped at burst
    assert bucket.take(50.0) is False  # a clock going backwards adds nothing


@given(
    st.integers(1, 8),
    st.lists(st.sampled_from(["a", "b"]), max_size=30),
    st.integers(0, 40),
    st.sets(st.sampled_from(["a", "b"]), min_size=1) | st.none(),
)
def test_replay_is_exactly_the_kept_events_after_the_cursor(
    capacity: int, kinds: list[str], after: int, types: set[str] | None
) -> None:
    log = EventLog(capacity=capacity)
    cursors = [log.append({"type": k}).cursor for k in kinds]
    replay = log.since(after, None if types is None else frozenset(types))
    kept = cursors[-capacity:] if cursors else []
    wanted = [
        c
        for c in kept
        if (c > after or after > len(kinds)) and (types is None or kinds[c - 1] in types)
    ]
    assert [e.cursor for e in replay.events] == wanted
    evicted_after = any(c > after for c in cursors[: len(cursors) - len(kept)])
    assert replay.gap == (evicted_after or after > len(kinds))
