"""Replicas that hold the same events converge, whatever order the events arrived in.

A hypothesis-chosen seed drives a small "world": four accounts with their own engines
write concurrently (posts, reactions, edits, removals, bans, role changes) and gossip
to each other only now and then, so the log is full of concurrent, conflicting events.
Then several fresh replicas receive the complete event set in different random orders
(parents often after their children, so buffering is exercised) and must agree on the
membership, the materialised view and the ordered-history hash.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.protocol.group_content import Message
from p2pchat.protocol.group_engine import GroupEngine
from p2pchat.protocol.group_events import (
    Delete,
    Edit,
    MemberAdd,
    MemberBan,
    MemberRemove,
    Reaction,
    RoleChange,
)
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, text

NAMES = ("owner", "ann", "bob", "cyd")
LATER = NOW_MS + 10**9


def _world(seed: int, steps: int) -> tuple[bytes, list[bytes]]:
    """Play a random concurrent history; return the genesis and every event authored."""
    rnd = random.Random(seed)
    owner, genesis = new_group()
    everything: list[bytes] = []
    for name, role in (("ann", "admin"), ("bob", "admin"), ("cyd", "member")):
        everything.append(
            owner.author(
                MemberAdd(account=account(name), role=role), device=device("owner"), now=NOW_MS
            )
        )
    engines = {"owner": owner}
    for name in NAMES[1:]:
        engines[name] = GroupEngine.from_genesis(genesis)
        for data in everything:
            engines[name].receive(data, now=NOW_MS)
    clock = NOW_MS
    for _ in range(steps):
        clock += rnd.randrange(1, 5000)
        name = rnd.choice(NAMES)
        engine = engines[name]
        messages = [m for m in engine.view.messages if not m.deleted]
        choice = rnd.randrange(8)
        other = account(rnd.choice(NAMES))
        if choice == 0:
            body: object = MemberRemove(account=other)
        elif choice == 1:
            body = RoleChange(account=other, role=rnd.choice(("admin", "moderator", "member")))
        elif choice == 2:
            body = MemberBan(account=other)
        elif choice == 3 and messages:
            body = Reaction(
                target=rnd.choice(messages).ref.event_id, emoji="+1", on=rnd.random() < 0.7
            )
        elif choice == 4 and messages:
            body = Edit(target=rnd.choice(messages).ref.event_id, content=text(f"edit {clock}"))
        elif choice == 5 and messages:
            body = Delete(target=rnd.choice(messages).ref.event_id)
        elif choice == 6:
            # gossip: a random peer receives everything this engine has
            peer = engines[rnd.choice(NAMES)]
            for stored in engine.ordered_events():
                peer.receive(stored.data, now=LATER)
            continue
        else:
            body = post(f"{name} at {clock}")
        everything.append(engine.author(body, device=device(name), now=clock))  # type: ignore[arg-type]
    return genesis, everything


def _fingerprint(engine: GroupEngine) -> tuple[object, ...]:
    state = engine.state
    view = engine.view
    return (
        engine.history_hash(),
        dict(state.members),
        dict(state.banned),
        state.epoch,
        [(m.ref.event_id, m.text, m.deleted, m.edited, dict(m.reactions)) for m in view.messages],
    )


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32), steps=st.integers(5, 30), orders=st.integers(0, 2**32))
def test_replicas_converge_whatever_the_delivery_order(seed: int, steps: int, orders: int) -> None:
    genesis, events = _world(seed, steps)
    rnd = random.Random(orders)
    fingerprints = []
    for _ in range(3):
        shuffled = events[:]
        rnd.shuffle(shuffled)
        engine = GroupEngine.from_genesis(genesis)
        for data in shuffled:
            engine.receive(data, now=LATER)
        assert engine.statistics()["pending"] == 0
        assert len(engine.ordered_events()) == len(events) + 1
        fingerprints.append(_fingerprint(engine))
    # and a replica rebuilt from stored bytes (trusted path) agrees too
    rebuilt = GroupEngine.load([genesis, *events])
    fingerprints.append(_fingerprint(rebuilt))
    assert all(f == fingerprints[0] for f in fingerprints)


def test_the_world_really_has_conflicts() -> None:
    """Guard against a vacuous convergence test: some histories void some events."""
    voided = 0
    for seed in range(5):
        genesis, events = _world(seed, 30)
        engine = GroupEngine.load([genesis, *events])
        voided += sum(not engine.is_effective(s.event_id) for s in engine.ordered_events())
    assert voided > 0


def test_late_events_rewind_to_a_checkpoint_and_agree_with_a_full_replay() -> None:
    """Over 1,000 events with concurrent writers, delivered with local reordering: the
    incremental fold (rewinding to checkpoints) must match a replay from scratch."""
    rnd = random.Random(7)
    owner, genesis = new_group()
    history = [
        owner.author(
            MemberAdd(account=account(n), role="member"), device=device("owner"), now=NOW_MS
        )
        for n in ("ann", "bob")
    ]
    writers = {name: GroupEngine.from_genesis(genesis) for name in ("ann", "bob")}
    writers["owner"] = owner
    cursors = dict.fromkeys(writers, 0)
    messages: list[Message] = []
    for step in range(1100):
        name = rnd.choice(tuple(writers))
        engine = writers[name]
        if rnd.random() < 0.3:  # catch up on everything written so far
            for data in history[cursors[name] :]:
                engine.receive(data, now=LATER)
            cursors[name] = len(history)
        if step % 10 == 0:
            messages = [m for m in engine.view.messages if m.ref.account == account(name)]
        roll = rnd.random()
        if messages and roll < 0.2:
            body: object = Reaction(target=rnd.choice(messages).ref.event_id, emoji="x", on=True)
        elif messages and roll < 0.4:
            body = Edit(target=rnd.choice(messages).ref.event_id, content=text(f"edit {step}"))
        elif messages and roll < 0.45:
            body = Delete(target=rnd.choice(messages).ref.event_id)
        else:
            body = post(f"{name} {step}")
        history.append(engine.author(body, device=device(name), now=NOW_MS + step))  # type: ignore[arg-type]
    jittered = sorted(range(len(history)), key=lambda i: i + rnd.randrange(60))
    replica = GroupEngine.from_genesis(genesis)
    for count, i in enumerate(jittered):
        replica.receive(history[i], now=LATER)
        if count % 25 == 0:
            replica.history_hash()  # fold now, so later arrivals must rewind
    # a stranger's event with no ancestors sorts near the very start: a full replay
    stranger = GroupEngine.from_genesis(genesis)
    replica.receive(stranger.author(post("hi"), device=device("zed"), now=NOW_MS), now=LATER)
    reference = GroupEngine.load([s.data for s in replica.ordered_events()])
    assert _fingerprint(replica) == _fingerprint(reference)
    assert replica.state == reference.state
