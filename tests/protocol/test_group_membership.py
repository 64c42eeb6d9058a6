"""Membership and roles: permissions at the causal point, deterministic resolution of
concurrent moderation, invites (use counts, expiry, bound account), epochs and keys."""

from __future__ import annotations

import itertools

import pytest

from p2pchat.errors import WireError
from p2pchat.protocol.group_engine import (
    GroupEngine,
    MemberJoined,
    MemberLeft,
    NewEpochNeeded,
    RoleChanged,
    SenderKeyNeeded,
)
from p2pchat.protocol.group_events import (
    MemberAdd,
    MemberBan,
    MemberJoin,
    MemberLeave,
    MemberRemove,
    RoleChange,
    decode_event,
)
from p2pchat.protocol.group_invite import InviteToken, new_invite
from tests.conftest import NOW_MS, DeterministicRng
from tests.protocol.test_group_kit import account, device, new_group, post, replica

LATER = NOW_MS + 10**9
OWNER = device("owner")


def _group(kind: str = "public", **rules: object) -> tuple[GroupEngine, bytes]:
    engine, genesis = new_group(kind, **rules)
    for name, role in (("ann", "admin"), ("bob", "admin"), ("cyd", "member")):
        engine.author(MemberAdd(account=account(name), role=role), device=OWNER, now=NOW_MS)
    return engine, genesis


def _fork_replica(engine: GroupEngine, genesis: bytes) -> GroupEngine:
    return replica(genesis, [s.data for s in engine.ordered_events()])


def _all_orders(genesis: bytes, base: list[bytes], extra: list[bytes]) -> list[GroupEngine]:
    out = []
    for order in itertools.permutations(extra):
        engine = replica(genesis, base)
        for data in order:
            engine.receive(data, now=LATER)
        out.append(engine)
    return out


def _same(engines: list[GroupEngine]) -> GroupEngine:
    first = engines[0]
    for other in engines[1:]:
        assert other.history_hash() == first.history_hash()
        assert other.state == first.state
        assert other.view == first.view
    return first


def test_mutual_removal_resolves_to_the_earlier_one_everywhere() -> None:
    engine, genesis = _group()
    base = [s.data for s in engine.ordered_events()]
    ann, bob = _fork_replica(engine, genesis), _fork_replica(engine, genesis)
    a = ann.author(MemberRemove(account=account("bob")), device=device("ann"), now=NOW_MS + 1)
    b = bob.author(MemberRemove(account=account("ann")), device=device("bob"), now=NOW_MS + 1)
    result = _same(_all_orders(genesis, base, [a, b]))
    ids = {data: decode_event(data).event_id for data in (a, b)}
    winner = min((a, b), key=lambda d: (decode_event(d).lamport, ids[d]))
    loser = b if winner is a else a
    assert result.is_effective(ids[winner])
    assert not result.is_effective(ids[loser])  # its author was removed earlier in the order
    removed = "bob" if winner is a else "ann"
    assert result.state.members.keys() == {
        account(n) for n in ("owner", "ann", "bob", "cyd") if n != removed
    }


def test_remove_versus_role_change_converges() -> None:
    engine, genesis = _group()
    base = [s.data for s in engine.ordered_events()]
    ann, bob = _fork_replica(engine, genesis), _fork_replica(engine, genesis)
    a = ann.author(MemberRemove(account=account("cyd")), device=device("ann"), now=NOW_MS + 1)
    b = bob.author(
        RoleChange(account=account("cyd"), role="moderator"), device=device("bob"), now=NOW_MS + 1
    )
    result = _same(_all_orders(genesis, base, [a, b]))
    assert result.state.role_of(account("cyd")) in (None, "moderator")


def test_ban_versus_post_converges_and_voids_posts_after_the_ban() -> None:
    engine, genesis = _group()
    base = [s.data for s in engine.ordered_events()]
    ann, cyd = _fork_replica(engine, genesis), _fork_replica(engine, genesis)
    ban = ann.author(MemberBan(account=account("cyd")), device=device("ann"), now=NOW_MS + 1)
    p1 = cyd.author(post("concurrent"), device=device("cyd"), now=NOW_MS + 1)
    cyd.receive(ban, now=LATER)
    p2 = cyd.author(post("after the ban"), device=device("cyd"), now=NOW_MS + 2)
    result = _same(_all_orders(genesis, base, [ban, p1, p2]))
    assert account("cyd") in result.state.banned
    texts = [m.text for m in result.view.messages]
    assert "after the ban" not in texts  # causally after the ban: always void
    # a banned account cannot come back by joining
    join = cyd.author(MemberJoin(), device=device("cyd"), now=NOW_MS + 3)
    result.receive(join, now=LATER)
    assert not result.state.is_member(account("cyd"))


def test_roles_limit_what_moderation_can_do() -> None:
    engine, genesis = _group()
    cyd = _fork_replica(engine, genesis)
    data = cyd.author(MemberRemove(account=account("ann")), device=device("cyd"), now=NOW_MS + 1)
    engine.receive(data, now=LATER)
    assert engine.state.is_member(account("ann"))  # a member cannot remove an admin
    ann = _fork_replica(engine, genesis)
    promote = ann.author(
        RoleChange(account=account("cyd"), role="owner"), device=device("ann"), now=NOW_MS + 2
    )
    demote_owner = ann.author(
        MemberRemove(account=account("owner")), device=device("ann"), now=NOW_MS + 3
    )
    for data in (promote, demote_owner):
        engine.receive(data, now=LATER)
    assert engine.state.role_of(account("cyd")) == "member"
    assert engine.state.role_of(account("owner")) == "owner"
    # an admin may make a member a moderator; a moderator may remove a member
    engine.author(
        RoleChange(account=account("cyd"), role="moderator"), device=OWNER, now=NOW_MS + 4
    )
    assert engine.state.role_of(account("cyd")) == "moderator"
    steps_down = _fork_replica(engine, genesis).author(
        RoleChange(account=account("ann"), role="member"), device=device("ann"), now=NOW_MS + 5
    )
    result = engine.receive(steps_down, now=LATER)
    assert RoleChanged(account("ann"), "member") in result.effects


def test_leave_removes_and_reports() -> None:
    engine, genesis = _group()
    cyd = _fork_replica(engine, genesis)
    result = engine.receive(
        cyd.author(MemberLeave(), device=device("cyd"), now=NOW_MS + 1), now=LATER
    )
    assert MemberLeft(account("cyd"), banned=False) in result.effects
    assert engine.state.epoch == 1


def test_invite_use_counts_are_enforced_in_log_order() -> None:
    engine, genesis = _group()
    body, token = new_invite(
        DeterministicRng("inv"),
        group=engine.group_id,
        inviter=account("owner"),
        role="member",
        expires=NOW_MS + 10**8,
        uses=2,
    )
    engine.author(body, device=OWNER, now=NOW_MS + 1)
    base = [s.data for s in engine.ordered_events()]
    joins = [
        _fork_replica(engine, genesis).author(
            MemberJoin(secret=token.secret), device=device(n), now=NOW_MS + 2
        )
        for n in ("j1", "j2", "j3")
    ]
    result = _same(_all_orders(genesis, base, joins))
    joined = [n for n in ("j1", "j2", "j3") if result.state.is_member(account(n))]
    assert len(joined) == 2


def test_invite_expiry_and_bound_account() -> None:
    engine, genesis = _group()
    rng = DeterministicRng("inv2")
    expiring, token1 = new_invite(
        rng, group=engine.group_id, inviter=account("owner"), role="member", expires=NOW_MS + 100
    )
    bound, token2 = new_invite(
        rng,
        group=engine.group_id,
        inviter=account("owner"),
        role="moderator",
        expires=NOW_MS + 10**8,
        account=account("dee"),
    )
    engine.author(expiring, device=OWNER, now=NOW_MS + 1)
    engine.author(bound, device=OWNER, now=NOW_MS + 1)
    late = _fork_replica(engine, genesis).author(
        MemberJoin(secret=token1.secret), device=device("eve"), now=NOW_MS + 200
    )
    thief = _fork_replica(engine, genesis).author(
        MemberJoin(secret=token2.secret), device=device("fay"), now=NOW_MS + 2
    )
    dee = _fork_replica(engine, genesis).author(
        MemberJoin(secret=token2.secret), device=device("dee"), now=NOW_MS + 3
    )
    wrong = _fork_replica(engine, genesis).author(
        MemberJoin(secret=bytes(32)), device=device("gus"), now=NOW_MS + 3
    )
    for data in (late, thief, dee, wrong):
        engine.receive(data, now=LATER)
    assert not engine.state.is_member(account("eve"))
    assert not engine.state.is_member(account("fay"))
    assert not engine.state.is_member(account("gus"))
    assert engine.state.role_of(account("dee")) == "moderator"


def test_invites_die_with_their_inviters_rights() -> None:
    engine, genesis = _group()
    ann = _fork_replica(engine, genesis)
    body, token = new_invite(
        DeterministicRng("x"),
        group=engine.group_id,
        inviter=account("ann"),
        role="member",
        expires=NOW_MS + 10**8,
    )
    engine.receive(ann.author(body, device=device("ann"), now=NOW_MS + 1), now=LATER)
    engine.author(MemberRemove(account=account("ann")), device=OWNER, now=NOW_MS + 2)
    join = _fork_replica(engine, genesis).author(
        MemberJoin(secret=token.secret), device=device("hal"), now=NOW_MS + 3
    )
    engine.receive(join, now=LATER)
    assert not engine.state.is_member(account("hal"))


def test_open_approval_and_member_cap() -> None:
    engine, genesis = new_group(join="open", max_members=2)
    first = _fork_replica(engine, genesis).author(
        MemberJoin(), device=device("ivy"), now=NOW_MS + 1
    )
    result = engine.receive(first, now=LATER)
    assert MemberJoined(account("ivy"), "member") in result.effects
    second = _fork_replica(engine, genesis).author(
        MemberJoin(), device=device("jon"), now=NOW_MS + 2
    )
    engine.receive(second, now=LATER)
    assert not engine.state.is_member(account("jon"))  # the cap is 2
    approval, genesis2 = new_group(join="approval")
    asks = _fork_replica(approval, genesis2).author(
        MemberJoin(), device=device("kim"), now=NOW_MS + 1
    )
    approval.receive(asks, now=LATER)
    assert account("kim") in approval.state.pending
    assert not approval.state.is_member(account("kim"))
    approval.author(MemberAdd(account=account("kim"), role="member"), device=OWNER, now=NOW_MS + 2)
    assert approval.state.is_member(account("kim"))
    assert not approval.state.pending


def test_private_groups_ask_for_new_epochs_and_key_distribution() -> None:
    engine, genesis = new_group("private")
    alice = device("alice")
    added = engine.author(
        MemberAdd(account=account("alice"), role="member"), device=OWNER, now=NOW_MS
    )
    alice_engine = replica(genesis, [added], local_device=alice.public_key)
    announce = alice_engine.author(
        MemberJoin(), device=alice, now=NOW_MS + 1
    )  # a device announces itself
    result = engine.receive(announce, now=LATER)
    assert SenderKeyNeeded(0, (alice.public_key,)) in result.effects
    bob = device("bob")
    engine.author(MemberAdd(account=account("bob"), role="member"), device=OWNER, now=NOW_MS + 2)
    engine.receive(
        replica(genesis, [s.data for s in engine.ordered_events()]).author(
            MemberJoin(), device=bob, now=NOW_MS + 3
        ),
        now=LATER,
    )
    for stored in engine.ordered_events():
        alice_engine.receive(stored.data, now=LATER)
    remove = engine.author(MemberRemove(account=account("bob")), device=OWNER, now=NOW_MS + 4)
    result = alice_engine.receive(remove, now=LATER)
    assert alice_engine.state.epoch == 1
    # bob's device is out: only the owner's device gets alice's fresh sender key
    assert [e for e in result.effects if isinstance(e, NewEpochNeeded)] == [
        NewEpochNeeded(1, (OWNER.public_key,))
    ]
    assert MemberLeft(account("bob"), banned=False) in result.effects


def test_invite_tokens_round_trip_and_hide_the_secret() -> None:
    _, token = new_invite(
        DeterministicRng("t"),
        group=bytes(range(32)),
        inviter=bytes(32),
        role="member",
        expires=NOW_MS,
        peers=("12D3KooWpeer",),
        name="fans",
    )
    text = token.to_text()
    assert text.startswith("p2pchat-invite:")
    assert InviteToken.from_text(text) == token
    assert token.secret.hex() not in repr(token)
    assert repr(token.secret) not in repr(token)
    for bad in ("p2pchat-invite:!!!", "http://x", text + "A", text[:-3]):
        with pytest.raises(WireError):
            InviteToken.from_text(bad)
