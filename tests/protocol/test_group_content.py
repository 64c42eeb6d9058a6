"""Content folding: edits, deletes, reactions, polls, group buys, slow mode, sealed
content and live comments, each checked against the event order it depends on."""

from __future__ import annotations

import pytest

from p2pchat.errors import LocalProtocolError, RateLimitedError
from p2pchat.protocol.content import Content, MediaRef
from p2pchat.protocol.group_engine import (
    EngineConfig,
    GroupEngine,
    LiveCommentReceived,
    SealedReceived,
)
from p2pchat.protocol.group_events import (
    Delete,
    Edit,
    GroupBuy,
    GroupBuyJoin,
    InnerEvent,
    LiveComment,
    MemberAdd,
    Poll,
    Reaction,
    Reply,
    RoleChange,
    Sealed,
    ShareCard,
    Vote,
)
from p2pchat.protocol.group_live import LiveConfig
from p2pchat.protocol.group_log import GroupError
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica, text

LATER = NOW_MS + 10**9
OWNER = device("owner")


def _group(kind: str = "public", **rules: object) -> tuple[GroupEngine, bytes]:
    engine, genesis = new_group(kind, **rules)
    for name in ("ann", "bob"):
        engine.author(MemberAdd(account=account(name), role="member"), device=OWNER, now=NOW_MS)
    return engine, genesis


def _as(engine: GroupEngine, genesis: bytes, name: str, body: object, ts: int) -> bytes:
    """``name`` authors ``body`` on its own replica of ``engine``, which then receives it."""
    mine = replica(genesis, [s.data for s in engine.ordered_events()])
    data = mine.author(body, device=device(name), now=ts)  # type: ignore[arg-type]
    engine.receive(data, now=LATER)
    return data


def _id(data: bytes) -> bytes:
    from p2pchat.protocol.group_events import decode_event

    return decode_event(data).event_id


def test_only_the_author_edits_and_the_last_edit_wins() -> None:
    engine, genesis = _group()
    original = _id(_as(engine, genesis, "ann", post("v1"), NOW_MS + 1))
    _as(engine, genesis, "bob", Edit(target=original, content=text("bob was here")), NOW_MS + 2)
    assert engine.view.message(original).text == "v1"  # type: ignore[union-attr]
    _as(engine, genesis, "ann", Edit(target=original, content=text("v2")), NOW_MS + 3)
    _as(engine, genesis, "ann", Edit(target=original, content=text("v3")), NOW_MS + 4)
    message = engine.view.message(original)
    assert message is not None
    assert (message.text, message.edited) == ("v3", True)


def test_delete_by_author_or_moderator_only() -> None:
    engine, genesis = _group()
    first = _id(_as(engine, genesis, "ann", post("one"), NOW_MS + 1))
    second = _id(_as(engine, genesis, "ann", post("two"), NOW_MS + 2))
    _as(engine, genesis, "bob", Delete(target=first), NOW_MS + 3)
    assert not engine.view.message(first).deleted  # type: ignore[union-attr]
    _as(engine, genesis, "ann", Delete(target=first), NOW_MS + 4)
    engine.author(
        RoleChange(account=account("bob"), role="moderator"), device=OWNER, now=NOW_MS + 5
    )
    _as(engine, genesis, "bob", Delete(target=second, reason="spam"), NOW_MS + 6)
    for event_id in (first, second):
        message = engine.view.message(event_id)
        assert message is not None
        assert (message.deleted, message.content, message.text) == (True, None, "")
    # an edit after a delete does not resurrect the message
    _as(engine, genesis, "ann", Edit(target=first, content=text("back")), NOW_MS + 7)
    assert engine.view.message(first).text == ""  # type: ignore[union-attr]


def test_reactions_are_per_account_switches() -> None:
    engine, genesis = _group()
    target = _id(_as(engine, genesis, "ann", post("react to me"), NOW_MS + 1))
    _as(engine, genesis, "bob", Reaction(target=target, emoji="🎉", on=True), NOW_MS + 2)
    _as(engine, genesis, "ann", Reaction(target=target, emoji="🎉", on=True), NOW_MS + 3)
    _as(engine, genesis, "ann", Reaction(target=target, emoji="👍", on=True), NOW_MS + 4)
    _as(engine, genesis, "ann", Reaction(target=target, emoji="👍", on=False), NOW_MS + 5)
    reactions = engine.view.message(target).reactions  # type: ignore[union-attr]
    assert dict(reactions) == {"🎉": frozenset({account("ann"), account("bob")})}


def test_poll_tally_one_vote_per_account_until_the_deadline() -> None:
    engine, genesis = _group()
    deadline = NOW_MS + 1000
    poll = _id(
        _as(
            engine,
            genesis,
            "ann",
            Poll(question="pizza?", options=("yes", "no", "maybe"), multi=False, deadline=deadline),
            NOW_MS + 1,
        )
    )
    _as(engine, genesis, "ann", Vote(poll=poll, choices=(0,)), NOW_MS + 2)
    _as(engine, genesis, "bob", Vote(poll=poll, choices=(1,)), NOW_MS + 3)
    _as(engine, genesis, "bob", Vote(poll=poll, choices=(2,)), NOW_MS + 4)  # replaces bob's vote
    _as(engine, genesis, "bob", Vote(poll=poll, choices=(0, 1)), NOW_MS + 5)  # not multi: void
    _as(engine, genesis, "bob", Vote(poll=poll, choices=(7,)), NOW_MS + 6)  # no such option
    _as(engine, genesis, "ann", Vote(poll=poll, choices=(1,)), deadline + 1)  # too late
    tally = engine.view.polls[poll]
    assert (tally.counts, tally.voters) == ((1, 0, 1), 2)
    _as(engine, genesis, "ann", Vote(poll=poll, choices=()), deadline)  # retract, just in time
    assert engine.view.polls[poll].counts == (0, 0, 1)


def test_multi_choice_poll() -> None:
    engine, genesis = _group()
    poll = _id(
        _as(
            engine,
            genesis,
            "ann",
            Poll(question="days?", options=("sat", "sun"), multi=True, deadline=LATER),
            NOW_MS + 1,
        )
    )
    _as(engine, genesis, "ann", Vote(poll=poll, choices=(0, 1)), NOW_MS + 2)
    _as(engine, genesis, "bob", Vote(poll=poll, choices=(1,)), NOW_MS + 3)
    assert engine.view.polls[poll].counts == (1, 2)


def test_group_buy_quota_deadline_and_withdrawal() -> None:
    engine, genesis = _group()
    deadline = NOW_MS + 1000
    buy = _id(
        _as(
            engine,
            genesis,
            "ann",
            GroupBuy(title="keyboards", options=("red", "blue"), quota=5, deadline=deadline),
            NOW_MS + 1,
        )
    )
    _as(engine, genesis, "ann", GroupBuyJoin(buy=buy, option=0, quantity=2), NOW_MS + 2)
    _as(engine, genesis, "bob", GroupBuyJoin(buy=buy, option=1, quantity=4), NOW_MS + 3)
    state = engine.view.buys[buy]
    assert (state.units, state.total, state.reached, state.status(NOW_MS)) == (
        (2, 4),
        6,
        True,
        "reached",
    )
    _as(
        engine, genesis, "bob", GroupBuyJoin(buy=buy, option=1, quantity=0), NOW_MS + 4
    )  # withdraws
    _as(
        engine, genesis, "bob", GroupBuyJoin(buy=buy, option=1, quantity=9), deadline + 1
    )  # too late
    _as(
        engine, genesis, "bob", GroupBuyJoin(buy=buy, option=5, quantity=9), NOW_MS + 5
    )  # no variant
    state = engine.view.buys[buy]
    assert (state.units, dict(state.participants)) == ((2, 0), {account("ann"): (0, 2)})
    assert (state.status(deadline), state.status(deadline + 1)) == ("open", "failed")


def test_slow_mode_and_post_role() -> None:
    engine, genesis = _group(slow=60)
    a1 = _id(_as(engine, genesis, "ann", post("first"), NOW_MS + 1))
    a2 = _id(_as(engine, genesis, "ann", post("too soon"), NOW_MS + 30_000))
    a3 = _id(_as(engine, genesis, "ann", post("ok again"), NOW_MS + 61_000))
    assert [engine.is_effective(i) for i in (a1, a2, a3)] == [True, False, True]
    engine.author(RoleChange(account=account("bob"), role="viewer"), device=OWNER, now=NOW_MS + 2)
    viewer_post = _id(_as(engine, genesis, "bob", post("viewers read"), NOW_MS + 100_000))
    assert not engine.is_effective(viewer_post)


def test_share_cards_replies_and_app_types_fall_back_to_text() -> None:
    engine, genesis = _group()
    card = _id(
        _as(
            engine,
            genesis,
            "ann",
            ShareCard(title="Nice boots", url="https://shop.example/boots"),
            NOW_MS + 1,
        )
    )
    custom = Content(type="com.example/recipe", body={"steps": 3}, text="Pancakes (3 steps)")
    reply = _id(_as(engine, genesis, "bob", Reply(target=card, content=custom), NOW_MS + 2))
    view = engine.view
    assert view.message(card).text == "Nice boots"  # type: ignore[union-attr]
    message = view.message(reply)
    assert message is not None
    assert message.content is not None
    assert (message.reply_to, message.text, message.content.known) == (
        card,
        "Pancakes (3 steps)",
        False,
    )


def test_references_to_unknown_events_are_void() -> None:
    engine, genesis = _group()
    data = _as(engine, genesis, "ann", Reaction(target=bytes(32), emoji="x", on=True), NOW_MS + 1)
    assert not engine.is_effective(_id(data))


def test_sealed_events_show_once_decrypted() -> None:
    engine, genesis = new_group("private")
    inner = InnerEvent(kind="post", body=post("secret").to_value())
    sealed = engine.author(
        Sealed(ciphertext=b"opaque"), device=OWNER, now=NOW_MS + 1, plaintext=inner
    )
    assert [m.text for m in engine.view.messages] == ["secret"]
    other = replica(genesis)
    result = other.receive(sealed, now=LATER)
    assert result.effects == (SealedReceived(_id(sealed)),)
    assert [(m.sealed, m.text) for m in other.view.messages] == [(True, "")]
    other.provide_plaintext(_id(sealed), inner)
    assert other.view == engine.view
    assert other.history_hash() == engine.history_hash()
    with pytest.raises(LocalProtocolError):
        other.provide_plaintext(bytes(32), inner)


def _live_group(**config: object) -> tuple[GroupEngine, bytes, GroupEngine]:
    engine, genesis = new_group("live", join="open")
    viewer = GroupEngine.from_genesis(genesis, config=EngineConfig(live=LiveConfig(**config)))  # type: ignore[arg-type]
    for stored in engine.ordered_events():
        viewer.receive(stored.data, now=LATER)
    return engine, genesis, viewer


MOVIE = MediaRef(hash=bytes(range(32)), mime="video/mp4", size=10**9)


def test_live_comments_are_windowed_queryable_and_not_in_the_log() -> None:
    engine, _, viewer = _live_group(window_ms=60_000, rate_per_s=100, burst=100)
    sent = [
        engine.author_live(
            LiveComment(media=MOVIE, offset=offset, text=f"at {offset}"),
            device=OWNER,
            now=NOW_MS + i,
        )
        for i, offset in enumerate((5_000, 1_000, 9_000, 3_000))
    ]
    events_before = len(viewer.ordered_events())
    for data in sent:
        result = viewer.receive(data, now=NOW_MS + 10)
        assert isinstance(result.effects[0], LiveCommentReceived)
        assert result.accepted == ()
    assert len(viewer.ordered_events()) == events_before  # not log entries
    assert engine.frontier() == viewer.frontier()
    window = viewer.live_comments(MOVIE.hash, 2_000, 9_000, now=NOW_MS + 20)
    late = viewer.live_comments(MOVIE.hash, 0, 10**9, now=NOW_MS + 60_002)  # three have expired
    assert [e.text for e in late] == ["at 3000"]
    assert [e.text for e in window] == ["at 3000", "at 5000"]
    assert viewer.live_comments(bytes(32), 0, 10**9, now=NOW_MS + 20) == []
    assert viewer.live_comments(MOVIE.hash, 0, 10**9, now=NOW_MS + 60_003) == []  # window passed
    assert viewer.statistics()["live_comments"] == 0
    # a chain event at the position a comment named is not a fork
    viewer.receive(engine.author(post("chat"), device=OWNER, now=NOW_MS + 30), now=LATER)
    assert viewer.statistics()["forked_devices"] == 0


def test_live_comments_are_rate_limited_per_device_before_verification() -> None:
    engine, _, viewer = _live_group(rate_per_s=0.001, burst=2)
    comments = [
        engine.author_live(
            LiveComment(media=MOVIE, offset=i, text="spam"), device=OWNER, now=NOW_MS
        )
        for i in range(3)
    ]
    viewer.receive(comments[0], now=NOW_MS)
    viewer.receive(comments[1], now=NOW_MS)
    with pytest.raises(RateLimitedError):
        viewer.receive(comments[2], now=NOW_MS)


def test_live_comments_need_a_live_group_and_a_member() -> None:
    engine, _genesis = new_group("public")
    with pytest.raises(LocalProtocolError):
        engine.author_live(LiveComment(media=MOVIE, offset=0, text="x"), device=OWNER, now=NOW_MS)
    live, _, viewer = _live_group()
    stranger = GroupEngine.from_genesis(_genesis_of(live))
    stranger.author(post("hello"), device=device("zed"), now=NOW_MS)  # zed never joined
    viewer.receive(stranger.ordered_events()[-1].data, now=LATER)
    comment = stranger.author_live(
        LiveComment(media=MOVIE, offset=0, text="hi"), device=device("zed"), now=NOW_MS
    )
    with pytest.raises(GroupError) as info:
        viewer.receive(comment, now=NOW_MS)
    assert info.value.reason == "not-member"


def _genesis_of(engine: GroupEngine) -> bytes:
    data = engine.event_bytes(engine.group_id)
    assert data is not None
    return data


def test_fold_clones_are_independent_of_later_changes() -> None:
    """The engine rewinds to cloned checkpoints: a clone must not see later mutations."""
    from p2pchat.protocol.group_content import ContentFold, EventRef
    from p2pchat.protocol.group_invite import new_invite
    from p2pchat.protocol.group_state import MembershipFold
    from tests.conftest import DeterministicRng
    from tests.protocol.test_group_kit import descriptor

    fold = ContentFold(slow_ms=0, post_role="member")
    ref = EventRef(b"p" * 32, account("ann"), device("ann").public_key, NOW_MS)
    poll = Poll(question="q", options=("a", "b"), multi=False, deadline=LATER)
    fold.apply(ref, "post", post("original"), "member")
    fold.apply(EventRef(b"q" * 32, ref.account, ref.device, NOW_MS), "poll", poll, "member")
    snapshot = fold.clone()
    before = snapshot.view()
    other = EventRef(b"r" * 32, account("bob"), device("bob").public_key, NOW_MS + 1)
    fold.apply(other, "react", Reaction(target=ref.event_id, emoji="x", on=True), "member")
    fold.apply(ref, "edit", Edit(target=ref.event_id, content=text("changed")), "member")
    fold.apply(other, "vote", Vote(poll=b"q" * 32, choices=(1,)), "member")
    fold.apply(other, "delete", Delete(target=ref.event_id), "moderator")
    assert snapshot.view() == before
    assert fold.view() != before

    members = MembershipFold.start(descriptor(), account("owner"))
    invite, token = new_invite(
        DeterministicRng("c"),
        group=bytes(32),
        inviter=account("owner"),
        role="member",
        expires=LATER,
    )
    from p2pchat.protocol.codec import Struct
    from p2pchat.protocol.group_events import GroupEvent, MemberJoin

    def event(kind: str, who: str, body: Struct) -> GroupEvent:
        return GroupEvent(
            group=bytes(32),
            author_device=device(who).public_key,
            author_account=account(who),
            seq=2,
            prev=bytes(32),
            deps=(),
            lamport=2,
            ts=NOW_MS,
            kind=kind,
            body={},
            sig=bytes(64),
            parsed=body,
        )

    members.apply(event("member.invite", "owner", invite), invite)
    copy = members.clone()
    assert members.apply(
        event("member.join", "ann", MemberJoin(secret=token.secret)),
        MemberJoin(secret=token.secret),
    )
    assert copy.snapshot() != members.snapshot()
    assert copy.invites[invite.invite].uses_left == 1
    assert members.invites[invite.invite].uses_left == 0


def test_one_message_lookup_agrees_with_the_whole_view() -> None:
    """``engine.message`` (no view rebuild: the node calls it for every event it
    announces) shows exactly what the materialised view shows."""
    engine, genesis = _group()
    first = _id(_as(engine, genesis, "ann", post("one"), NOW_MS + 1))
    second = _id(_as(engine, genesis, "bob", post("two"), NOW_MS + 2))
    _as(engine, genesis, "ann", Edit(target=first, content=text("one, edited")), NOW_MS + 3)
    _as(engine, genesis, "bob", Reaction(target=first, emoji="🎉", on=True), NOW_MS + 4)
    _as(engine, genesis, "bob", Delete(target=second), NOW_MS + 5)
    view = engine.view
    assert len(view.messages) == 2
    for shown in view.messages:
        assert engine.message(shown.ref.event_id) == shown
    assert engine.message(b"\x00" * 32) is None
