"""The author ceiling holds whichever way a flood arrives (issue 12, fix 2).

A member's live flood is accepted at no more than the ceiling (burst + rate x time) by
gossip *and* by sync: the first copies a member sees may come in a sync exchange (one
that started before the flood's first gossip message arrived), and a sync must not take
in one go what gossip would have paced. History (events authored before the ceiling's
recent window) still comes by sync at the sync limits alone, so a joiner or a node back
from a long absence is not slowed.
"""

from __future__ import annotations

from p2pchat.protocol.group_engine import EngineConfig, GroupEngine
from p2pchat.protocol.group_events import MemberJoin
from p2pchat.protocol.sync_messages import Run, SyncBatch
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import device, new_group, post

RATE, BURST, POSTS = 10.0, 40, 400
CEILING = EngineConfig(author_rate=RATE, author_burst=BURST)
#: The ceiling's recent window (``AuthorCeiling``'s default ``behind_ms``).
WINDOW_MS = 600_000


def _flood(start: int) -> tuple[bytes, list[bytes]]:
    """An open group's genesis; a member's join and ``POSTS`` posts authored from ``start``."""
    _, genesis = new_group(join="open")
    author = GroupEngine.from_genesis(genesis, config=EngineConfig(author_rate=1e9))
    flooder = device("flooder")
    events = [author.author(MemberJoin(), device=flooder, now=start)]
    events += [
        author.author(post(f"flood {i}"), device=flooder, now=start + i) for i in range(POSTS)
    ]
    return genesis, events


def _by_sync(engine: GroupEngine, events: list[bytes], now: int) -> tuple[int, int]:
    """``events`` as one run of a sync batch (``catch_up``); accepted and deferred."""
    run = Run(device=device("flooder").public_key, events=tuple(events))
    result, errors = engine.apply_runs(
        SyncBatch(group=engine.group_id, runs=(run,)), now=now, catch_up=True
    )
    assert errors == []
    return len(result.accepted), result.deferred


def test_a_live_flood_first_seen_by_sync_is_paced_like_gossip() -> None:
    genesis, events = _flood(NOW_MS)
    member = GroupEngine.from_genesis(genesis, config=CEILING)
    now = NOW_MS + POSTS  # just authored: nothing of it was seen by gossip yet
    accepted, deferred = _by_sync(member, events, now)
    assert accepted == BURST
    assert deferred == len(events) - BURST
    # The rest comes in later syncs, at the rate: after one second, ten more.
    accepted, deferred = _by_sync(member, events, now + 1000)
    assert accepted == RATE
    # Gossip now finds the author behind, as before.
    assert member.receive(events[-1], now=now + 1000).deferred == 1


def test_history_by_sync_is_bounded_by_the_sync_limits_alone() -> None:
    genesis, events = _flood(NOW_MS)
    joiner = GroupEngine.from_genesis(genesis, config=CEILING)
    accepted, deferred = _by_sync(joiner, events, NOW_MS + POSTS + WINDOW_MS)
    assert (accepted, deferred) == (len(events), 0)


def test_a_run_of_history_then_live_events_takes_the_history_and_paces_the_rest() -> None:
    genesis, events = _flood(NOW_MS)
    member = GroupEngine.from_genesis(genesis, config=CEILING)
    now = NOW_MS + 299 + WINDOW_MS  # posts 300 and later are within the window
    accepted, deferred = _by_sync(member, events, now)
    assert accepted == 301 + BURST  # the join and posts 0..299, then a burst
    assert deferred == len(events) - accepted


def test_gossip_is_paced_whatever_the_events_age() -> None:
    genesis, events = _flood(NOW_MS)
    member = GroupEngine.from_genesis(genesis, config=CEILING)
    later = NOW_MS + 10 * WINDOW_MS
    results = [member.receive(data, now=later) for data in events]
    assert sum(len(r.accepted) for r in results) == BURST
    assert sum(r.deferred for r in results) == len(events) - BURST


def test_a_joiner_takes_a_recent_burst_by_sync_and_still_paces_gossip() -> None:
    # The invite a joiner needs may follow its inviter's burst of posts: while joining,
    # a sync brings history however recent (tests/integration: the late joiner).
    genesis, events = _flood(NOW_MS)
    now = NOW_MS + POSTS
    joiner = GroupEngine.from_genesis(genesis, config=CEILING)
    joiner.expect_history(now)
    assert _by_sync(joiner, events, now) == (len(events), 0)
    # Its window over, the same engine paces live traffic again.
    _, later = _flood(now + WINDOW_MS)
    member = GroupEngine.from_genesis(genesis, config=CEILING)
    member.expect_history(now)
    accepted, deferred = _by_sync(member, later, now + WINDOW_MS + POSTS)
    assert (accepted, deferred) == (BURST, len(later) - BURST)
