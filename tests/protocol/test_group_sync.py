"""Anti-entropy sync: two sessions exchange real encoded messages until both are done.

Measured properties: replicas converge; the bytes exchanged grow with what is missing
plus the number of authors, not with the history; a catch-up verifies one signature
per run, not per event; illegal messages fail the session."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import WireError
from p2pchat.protocol import group_events
from p2pchat.protocol.codec import Struct
from p2pchat.protocol.group_engine import ForkDetected, GroupEngine
from p2pchat.protocol.group_events import MemberAdd
from p2pchat.protocol.group_log import GroupError
from p2pchat.protocol.group_sync import SyncLimits, SyncSession, SyncState
from p2pchat.protocol.sync_messages import SYNC_KINDS, Run, SyncBatch, SyncEnd, SyncWant, WantRange
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica

LATER = NOW_MS + 10**9
OWNER = device("owner")
_BY_KIND = {cls.KIND: cls for cls in SYNC_KINDS}  # type: ignore[attr-defined]


def _wire(message: Struct) -> tuple[Struct, int]:
    """Encode and decode a message as the node would; return it and its size."""
    data = message.to_bytes()
    return type(message).from_bytes(data, max_size=1 << 20), len(data)


def exchange(
    a: GroupEngine, b: GroupEngine, *, limits: SyncLimits | None = None
) -> tuple[int, list[object]]:
    """Run one exchange to completion; return the bytes sent both ways and the effects."""
    left, right = SyncSession(a, limits=limits), SyncSession(b, limits=limits)
    queue: list[tuple[SyncSession, Struct]] = [(right, m) for m in left.start().send]
    total = 0
    effects: list[object] = []
    while queue:
        target, message = queue.pop(0)
        decoded, size = _wire(message)
        total += size
        step = target.receive(decoded, now=LATER)
        effects += step.result.effects
        other = left if target is right else right
        queue += [(other, m) for m in step.send]
    assert left.done
    assert right.done
    return total, effects


def _group_with_members(names: tuple[str, ...]) -> tuple[GroupEngine, bytes]:
    engine, genesis = new_group()
    for name in names:
        engine.author(MemberAdd(account=account(name), role="member"), device=OWNER, now=NOW_MS)
    return engine, genesis


def _same(a: GroupEngine, b: GroupEngine) -> None:
    assert a.frontier() == b.frontier()
    assert a.history_hash() == b.history_hash()
    assert a.view == b.view


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 60))
def test_random_divergence_converges_with_bytes_bounded_by_what_is_missing(
    seed: int, steps: int
) -> None:
    names = ("ann", "bob", "cyd")
    base, genesis = _group_with_members(names)
    common = [s.data for s in base.ordered_events()]
    a, b = replica(genesis, common), replica(genesis, common)
    rnd = random.Random(seed)
    writers = {"owner": a, "ann": a, "bob": b, "cyd": b}  # one replica per device: no forks
    for i in range(steps):
        name = rnd.choice(tuple(writers))
        writers[name].author(post(f"p{i}"), device=device(name), now=NOW_MS + i)
        if rnd.random() < 0.2:  # some gossip, so later events depend on the other side
            source, target = (a, b) if writers[name] is a else (b, a)
            for stored in source.ordered_events():
                target.receive(stored.data, now=LATER)
    missing_a = {s.event_id for s in b.ordered_events()} - {s.event_id for s in a.ordered_events()}
    missing_b = {s.event_id for s in a.ordered_events()} - {s.event_id for s in b.ordered_events()}
    missing_bytes = sum(len(a.event_bytes(i) or b"") for i in missing_b) + sum(
        len(b.event_bytes(i) or b"") for i in missing_a
    )
    total, _ = exchange(a, b)
    _same(a, b)
    authors = len(a.frontier().heads)
    # frontiers, wants and framing: a bounded cost per author device, plus the events
    assert total <= missing_bytes + 250 * authors + 600


def test_ten_thousand_common_events_and_five_missing_cost_a_few_kilobytes() -> None:
    names = ("ann", "bob", "cyd")
    engine, _genesis = _group_with_members(names)
    writers = [OWNER, *(device(n) for n in names)]
    for i in range(10_000 - len(engine.ordered_events())):
        engine.author(post(f"message {i}"), device=writers[i % 4], now=NOW_MS + i)
    history = [s.data for s in engine.ordered_events()]
    assert len(history) == 10_000
    a = GroupEngine.load(history)
    b = GroupEngine.load(history)
    for i in range(3):
        a.author(post(f"only a {i}"), device=device("ann"), now=LATER + i)
    for i in range(2):
        b.author(post(f"only b {i}"), device=device("bob"), now=LATER + i)
    total, _ = exchange(a, b)
    _same(a, b)
    assert len(a.ordered_events()) == 10_005
    assert total < 4096, total  # the history alone is over a megabyte
    assert sum(map(len, history)) > 1_000_000


def test_catch_up_verifies_one_signature_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, genesis = _group_with_members(("ann", "bob"))
    writers = [OWNER, device("ann"), device("bob")]
    for i in range(600):
        engine.author(post(f"m{i}"), device=writers[i % 3], now=NOW_MS + i)
    late = replica(genesis)
    verified: list[object] = []
    original = group_events.GroupEvent.verify

    def counting_verify(self: group_events.GroupEvent) -> None:
        verified.append(self)
        original(self)

    monkeypatch.setattr(group_events.GroupEvent, "verify", counting_verify)
    limits = SyncLimits(max_run_events=128)
    exchange(engine, late, limits=limits)
    _same(engine, late)
    events = len(engine.ordered_events()) - 1
    runs = sum(-(-n // 128) for n in (201, 201, 201))  # per-device chains, 128 per run
    assert len(verified) <= runs + 3  # plus nothing per event
    assert len(verified) * 20 < events


def test_a_stopped_early_exchange_says_so_and_the_next_one_finishes() -> None:
    engine, genesis = _group_with_members(("ann",))
    for i in range(50):
        engine.author(post(f"m{i}"), device=OWNER, now=NOW_MS + i)
    late = replica(genesis)
    limits = SyncLimits(max_events=20)
    left, right = SyncSession(late, limits=limits), SyncSession(engine, limits=limits)
    pending = [(right, m) for m in left.start().send]
    while pending:
        target, message = pending.pop(0)
        other = left if target is right else right
        pending += [(other, m) for m in target.receive(message, now=LATER).send]
    assert left.peer_has_more
    assert len(late.ordered_events()) == 21
    while late.frontier() != engine.frontier():
        exchange(late, engine, limits=limits)
    _same(late, engine)


def test_sync_reveals_a_fork() -> None:
    engine, genesis = _group_with_members(("ann",))
    ann1 = replica(genesis, [s.data for s in engine.ordered_events()])
    ann2 = replica(genesis, [s.data for s in engine.ordered_events()])
    ann1.author(post("left"), device=device("ann"), now=NOW_MS + 1)
    ann2.author(post("right"), device=device("ann"), now=NOW_MS + 1)
    ann1.author(post("left 2"), device=device("ann"), now=NOW_MS + 2)
    _, effects = exchange(ann1, ann2)
    forks = [e for e in effects if isinstance(e, ForkDetected)]
    assert len(forks) == 1
    assert ann2.log.frozen == {device("ann").public_key: 1}  # ann had no event before
    # the node gossips the proof; the side that served the run converges with it
    ann1.receive_fork_proof(forks[0].proof)
    assert ann1.history_hash() == ann2.history_hash()
    assert ann1.view == ann2.view


def _started(engine: GroupEngine) -> SyncSession:
    session = SyncSession(engine)
    session.start()
    return session


def test_illegal_messages_fail_the_session() -> None:
    engine, genesis = _group_with_members(())
    group = engine.group_id
    want = SyncWant(group=group, ranges=(WantRange(device=OWNER.public_key, first=1, last=1),))
    batch = SyncBatch.from_value({"g": group, "runs": [{"d": OWNER.public_key, "evs": [genesis]}]})
    for first in (want, batch, SyncEnd(group=group, more=False)):
        session = _started(engine)
        with pytest.raises(GroupError) as info:
            session.receive(first, now=LATER)
        assert info.value.reason == "unexpected-message"
        assert session.state is SyncState.FAILED
    session = _started(engine)
    with pytest.raises(GroupError):
        session.receive(replica(new_group("live")[1]).frontier(), now=LATER)  # another group
    # after a complete exchange, anything more is refused
    other = replica(genesis)
    left, right = SyncSession(engine), SyncSession(other)
    for message in left.start().send:
        for reply in right.receive(message, now=LATER).send:
            left.receive(reply, now=LATER)
    assert left.done
    with pytest.raises(GroupError):
        left.receive(SyncEnd(group=group, more=False), now=LATER)
    with pytest.raises(GroupError):
        left.start()


def test_unrequested_wants_are_refused() -> None:
    engine, genesis = _group_with_members(("ann",))
    same = replica(genesis, [s.data for s in engine.ordered_events()])
    session = _started(engine)
    step = session.receive(same.frontier(), now=LATER)
    assert [type(m) for m in step.send] == [SyncEnd]  # nothing to want, nothing wanted
    want = SyncWant(
        group=engine.group_id, ranges=(WantRange(device=OWNER.public_key, first=1, last=2),)
    )
    with pytest.raises(GroupError):
        session.receive(want, now=LATER)


def _chain(count: int) -> tuple[GroupEngine, bytes, list[bytes]]:
    engine, genesis = _group_with_members(())
    events = [engine.author(post(f"m{i}"), device=OWNER, now=NOW_MS + i) for i in range(count)]
    return engine, genesis, events


def test_runs_with_a_broken_link_or_a_bad_last_signature_change_nothing() -> None:
    engine, genesis, events = _chain(6)
    first = [s.data for s in engine.ordered_events()][:1]  # genesis only
    dev = OWNER.public_key
    target = replica(genesis, first)
    before = (target.history_hash(), target.frontier())
    skipping = Run(device=dev, events=(events[0], events[2]))
    last = events[3]
    at = last.index(group_events.decode_event(last).sig) + 7
    forged_last = last[:at] + bytes([last[at] ^ 1]) + last[at + 1 :]
    bad_signature = Run(device=dev, events=(events[0], events[1], events[2], forged_last))
    for run, reason in ((skipping, "broken-chain"), (bad_signature, "bad-signature")):
        with pytest.raises((GroupError, WireError)) as info:
            target.apply_run(run, now=LATER)
        assert getattr(info.value, "reason", None) == reason
        assert (target.history_hash(), target.frontier()) == before
    for count in (1, 2):
        wrong_device = Run(device=device("ann").public_key, events=tuple(events[:count]))
        with pytest.raises((GroupError, WireError)) as info:
            target.apply_run(wrong_device, now=LATER)
        assert getattr(info.value, "reason", None) == "broken-chain"
    assert target.apply_run(Run(device=dev, events=tuple(events)), now=LATER).accepted
    assert target.history_hash() == engine.history_hash()


_MESSAGES = st.sampled_from(["frontier", "frontier-other", "want", "batch", "end", "end-more"])


@settings(max_examples=100)
@given(script=st.lists(_MESSAGES, max_size=8), start=st.booleans())
def test_any_message_sequence_ends_in_a_defined_state(script: list[str], start: bool) -> None:
    engine, genesis, events = _chain(3)
    peer = replica(genesis, [s.data for s in engine.ordered_events()][:2])
    other_group = replica(new_group("live")[1])
    group = engine.group_id
    pool: dict[str, Struct] = {
        "frontier": peer.frontier(),
        "frontier-other": other_group.frontier(),
        "want": SyncWant(
            group=group, ranges=(WantRange(device=OWNER.public_key, first=1, last=3),)
        ),
        "batch": SyncBatch(group=group, runs=(Run(device=OWNER.public_key, events=tuple(events)),)),
        "end": SyncEnd(group=group, more=False),
        "end-more": SyncEnd(group=group, more=True),
    }
    session = SyncSession(engine)
    if start:
        session.start()
    for name in script:
        state = session.state
        reasons: list[str] = []
        try:
            session.receive(pool[name], now=LATER)
        except GroupError as exc:
            reasons.append(exc.reason)
        if reasons:
            assert reasons == ["unexpected-message"]
            assert session.state is SyncState.FAILED
        else:
            assert state is not SyncState.FAILED
            assert session.state in (SyncState.EXCHANGING, SyncState.DONE)
