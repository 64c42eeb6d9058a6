"""Live backlog messages and rules: live.want / live.batch, the client's screen, and the
engine's backlog entry point (a late joiner's fetched comments)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat.protocol.content import MediaRef
from p2pchat.protocol.envelope import ENVELOPE_KINDS, decode_message, seal
from p2pchat.protocol.group_engine import EngineConfig, GroupEngine, LiveCommentReceived
from p2pchat.protocol.group_events import LiveComment, MemberAdd, decode_event
from p2pchat.protocol.group_live import LiveConfig
from p2pchat.protocol.group_log import GroupError
from p2pchat.protocol.live_messages import (
    LIVE_BATCH_BUDGET,
    MAX_LIVE_BATCH,
    BacklogScreen,
    LiveBatch,
    LiveWant,
    pack_batch,
)
from p2pchat_crypto import cbor
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica

MOVIE = MediaRef(hash=bytes(range(32)), mime="video/mp4", size=10**9)
OTHER = MediaRef(hash=bytes(32), mime="video/mp4", size=10)
OWNER = device("owner")


def _live() -> tuple[GroupEngine, bytes]:
    engine, genesis = new_group("live", join="open")
    engine.author(MemberAdd(account=account("ann"), role="member"), device=OWNER, now=NOW_MS)
    return engine, genesis


def _comment(
    engine: GroupEngine, offset: int, *, ts: int, media: MediaRef = MOVIE, who: str = "owner"
) -> bytes:
    body = LiveComment(media=media, offset=offset, text=f"at {offset}")
    return engine.author_live(body, device=device(who), now=ts)


def _want(start: int = 0, end: int = 60_000, group: bytes = b"", max: int = 512) -> LiveWant:
    return LiveWant(group=group or bytes(32), media=MOVIE.hash, start=start, end=end, max=max)


def test_kinds_are_registered_and_round_trip_in_a_signed_envelope() -> None:
    assert ENVELOPE_KINDS["live.want"] is LiveWant
    assert ENVELOPE_KINDS["live.batch"] is LiveBatch
    engine, _ = _live()
    batch = LiveBatch(group=engine.group_id, events=(_comment(engine, 5, ts=NOW_MS),), more=True)
    key = SigningKey(bytes(32))
    for message in (_want(group=engine.group_id), batch):
        _, opened = decode_message(seal(message, signing_key=key, now=NOW_MS))
        assert opened == message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"from": 10, "to": 10}, "invalid"),  # empty range
        ({"max": 0}, "out-of-range"),
        ({"max": MAX_LIVE_BATCH + 1}, "out-of-range"),
        ({"media": b"short"}, "bad-length"),
    ],
)
def test_a_malformed_want_is_refused(value: dict[str, object], reason: str) -> None:
    raw = {**_want().to_value(), **value}
    with pytest.raises(WireError) as info:
        LiveWant.from_value(raw)
    assert info.value.reason == reason


def test_a_batch_holds_at_most_512_events_and_cannot_be_sent_larger() -> None:
    raw = {"g": bytes(32), "evs": [b"x"] * (MAX_LIVE_BATCH + 1), "more": False}
    with pytest.raises(WireError) as info:
        LiveBatch.from_value(raw)
    assert info.value.reason == "bad-length"
    too_big = LiveBatch(group=bytes(32), events=(b"x",) * (MAX_LIVE_BATCH + 1), more=False)
    key = SigningKey(bytes(32))
    with pytest.raises(LocalProtocolError):
        seal(too_big, signing_key=key, now=NOW_MS)


def test_pack_batch_caps_count_and_size_and_says_more() -> None:
    small = [bytes([i]) * 100 for i in range(10)]
    assert pack_batch(b"g" * 32, small, limit=20) == LiveBatch(
        group=b"g" * 32, events=tuple(small), more=False
    )
    capped = pack_batch(b"g" * 32, small, limit=4)
    assert capped.events == tuple(small[:4])
    assert capped.more
    large = [bytes([i % 256]) * 70_000 for i in range(40)]  # ~2.8 MB of events
    packed = pack_batch(b"g" * 32, large, limit=MAX_LIVE_BATCH)
    assert packed.more
    assert 0 < sum(len(e) for e in packed.events) <= LIVE_BATCH_BUDGET
    assert len(packed.events) == LIVE_BATCH_BUDGET // 70_008


def test_the_screen_drops_what_was_not_asked_for_before_any_signature() -> None:
    engine, _ = _live()
    group = engine.group_id
    good = [_comment(engine, off, ts=NOW_MS + off) for off in (1_000, 2_000)]
    chain_post = engine.author(post("not a comment"), device=OWNER, now=NOW_MS)
    other_media = _comment(engine, 3_000, ts=NOW_MS + 3_000, media=OTHER)
    out_of_range = _comment(engine, 70_000, ts=NOW_MS + 4_000)
    foreign, _ = new_group("live", join="invite")
    foreign_comment = _comment(foreign, 1_500, ts=NOW_MS)
    screen = BacklogScreen(want=_want(group=group), rate_per_s=1, burst=5)
    batch = LiveBatch(
        group=group,
        events=(
            good[0],
            chain_post,
            b"\xa0garbage",
            other_media,
            out_of_range,
            foreign_comment,
            good[1],
            good[0],
        ),
        more=False,
    )
    screened = screen.screen(batch)
    assert screened.events == tuple(good)
    assert screened.refused == 5  # the repeat of good[0] is skipped, not refused
    assert screened.last_offset == 2_000
    with pytest.raises(WireError):
        screen.screen(LiveBatch(group=bytes(32), events=(), more=False))


def test_the_screen_paces_each_author_on_the_comments_own_timestamps() -> None:
    engine, _ = _live()
    burst = [_comment(engine, off, ts=NOW_MS) for off in range(1, 8)]  # 7 at the same ms
    spaced = [_comment(engine, 1_000 * i, ts=NOW_MS + 1_000 * i) for i in range(10, 20)]
    screen = BacklogScreen(want=_want(group=engine.group_id), rate_per_s=1, burst=5)
    first = screen.screen(LiveBatch(group=engine.group_id, events=tuple(burst), more=False))
    assert len(first.events) == 5
    assert first.refused == 2  # the author could post 5 at once
    second = screen.screen(LiveBatch(group=engine.group_id, events=tuple(spaced), more=False))
    assert second.events == tuple(spaced)  # one a second is the author's live pace


def test_next_want_starts_at_the_last_offset_and_never_loops() -> None:
    engine, _ = _live()
    want = _want(group=engine.group_id, start=0, end=10_000)
    screen = BacklogScreen(want=want, rate_per_s=100, burst=100)
    page = screen.screen(
        LiveBatch(group=engine.group_id, events=(_comment(engine, 4_000, ts=NOW_MS),), more=True)
    )
    nxt = screen.next_want(page, more=True)
    assert nxt is not None
    assert (nxt.start, nxt.end) == (4_000, 10_000)
    assert screen.next_want(page, more=False) is None
    stuck = screen.screen(
        LiveBatch(
            group=engine.group_id, events=(_comment(engine, 4_000, ts=NOW_MS + 1),), more=True
        )
    )
    again = screen.next_want(stuck, more=True)
    assert again is not None
    assert again.start == 4_001  # all at `from`: move on by 1 ms


def test_the_engine_takes_a_backlog_beyond_the_live_rate_but_validates_each_comment() -> None:
    engine, genesis = _live()
    viewer = replica(
        genesis,
        [s.data for s in engine.ordered_events()],
        config=EngineConfig(live=LiveConfig(rate_per_s=1, burst=2)),
    )
    comments = [_comment(engine, i * 1_000, ts=NOW_MS + i * 1_000) for i in range(1, 9)]
    now = NOW_MS + 10_000
    effects = [viewer.receive_live_backlog(c, now=now).effects for c in comments]
    assert all(isinstance(e[0], LiveCommentReceived) for e in effects)  # 8 at once, burst 2
    assert [e.offset for e in viewer.live_comments(MOVIE.hash, 0, 10**6, now=now)] == [
        i * 1_000 for i in range(1, 9)
    ]
    assert viewer.receive_live_backlog(comments[0], now=now).effects == ()  # duplicate

    event = decode_event(_comment(engine, 9_500, ts=NOW_MS))
    forged = dict(event.raw)
    forged["b"] = {**forged["b"], "text": "forged"}
    with pytest.raises(GroupError) as info:
        viewer.receive_live_backlog(cbor.encode(forged), now=now)
    assert info.value.reason == "bad-signature"
    with pytest.raises(GroupError):
        viewer.receive_live_backlog(engine.author(post("x"), device=OWNER, now=now), now=now)
    stranger = replica(genesis)
    stranger.author(post("hi"), device=device("zed"), now=NOW_MS)
    with pytest.raises(GroupError) as refused:
        viewer.receive_live_backlog(_comment(stranger, 100, ts=NOW_MS, who="zed"), now=now)
    assert refused.value.reason in ("unknown-device", "not-member")
    assert len(viewer.live_comments(MOVIE.hash, 0, 10**6, now=now)) == 8


def test_the_index_serves_exact_bytes_only_within_the_window() -> None:
    engine, genesis = _live()
    viewer = replica(
        genesis,
        [s.data for s in engine.ordered_events()],
        config=EngineConfig(live=LiveConfig(window_ms=60_000)),
    )
    old = _comment(engine, 1_000, ts=NOW_MS)
    new = _comment(engine, 2_000, ts=NOW_MS + 30_000)
    for data in (old, new):
        viewer.receive(data, now=NOW_MS + 30_000)
    assert viewer.live_events(MOVIE.hash, 0, 10_000, now=NOW_MS + 30_000, limit=10) == [old, new]
    assert viewer.live_events(MOVIE.hash, 0, 10_000, now=NOW_MS + 30_000, limit=1) == [old]
    assert viewer.live_events(MOVIE.hash, 0, 10_000, now=NOW_MS + 60_000, limit=10) == [new]
