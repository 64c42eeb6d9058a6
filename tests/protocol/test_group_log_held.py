"""What a group log holds per accepted event (issue 12: memory that grows less with
history): a slim event (no decoded map, body or signature) whose group, author keys,
``prev`` and ``deps`` are the objects the log already holds, one per key or event id,
not one copy per event that names them; and per-device chains whose heads, runs and
lookups by sequence number stay those of the events themselves."""

from __future__ import annotations

import pytest

from p2pchat.errors import LocalProtocolError
from p2pchat.protocol.group_engine import EngineConfig, GroupEngine
from p2pchat.protocol.group_events import MemberAdd, decode_event
from p2pchat.protocol.group_log import LogLimits, order_key
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica

OWNER, ANN, BOB = device("owner"), device("ann"), device("bob")


def _history() -> tuple[bytes, list[bytes]]:
    """Three devices writing in turns, each naming the others' newest events in deps."""
    engine, genesis = new_group()
    events = [
        engine.author(MemberAdd(account=account(n), role="member"), device=OWNER, now=NOW_MS)
        for n in ("ann", "bob")
    ]
    for i in range(12):
        for dev in (ANN, BOB, OWNER):
            events.append(engine.author(post(f"{i}"), device=dev, now=NOW_MS + i))
    return genesis, events


def _check_held(engine: GroupEngine, count: int) -> None:
    log = engine.log
    held = engine.ordered_events()
    assert len(held) == count
    keys: dict[bytes, bytes] = {}
    for stored in held:
        event = stored.event
        assert not event.raw
        assert not event.body
        assert event.sig == b""
        assert event.parsed is not None
        if event.group is not None:
            assert event.group is log.group_id
        for key in (event.author_device, event.author_account):
            assert keys.setdefault(key, key) is key  # one object per key in the whole log
        if event.prev is not None:
            parent = log.get(event.prev)
            assert parent is not None
            assert event.prev is parent.event.event_id
        for dep in event.deps:
            named = log.get(dep)
            assert named is not None
            assert dep is named.event.event_id
        # What is held is what was signed: the bytes decode to the same fields.
        full = decode_event(stored.data)
        assert (full.author_device, full.seq, full.prev, full.deps, full.lamport) == (
            event.author_device,
            event.seq,
            event.prev,
            event.deps,
            event.lamport,
        )
    assert len(keys) == 6  # three devices, three accounts
    # Per-device chains: heads, runs and lookups by sequence number.
    for dev in (OWNER, ANN, BOB):
        chain = sorted(
            (s for s in held if s.event.author_device == dev.public_key), key=lambda s: s.event.seq
        )
        top = chain[-1].event
        assert log.head_of(dev.public_key) == (top.seq, top.event_id)
        assert log.heads()[dev.public_key] == (top.seq, top.event_id)
        ids = [s.event_id for s in chain]
        assert [s.event_id for s in log.chain(dev.public_key, 1, top.seq + 5)] == ids
        assert log.chain(dev.public_key, 0, 3) == []
        assert [s.event_id for s in log.chain(dev.public_key, 2, 3)] == ids[1:3]
        assert [log.id_at(dev.public_key, s.event.seq) for s in chain] == [
            s.event_id for s in chain
        ]
        assert log.id_at(dev.public_key, 0) is None
        assert log.id_at(dev.public_key, top.seq + 1) is None


def test_a_loaded_log_holds_each_key_and_id_once_and_events_slim() -> None:
    genesis, events = _history()
    _check_held(GroupEngine.load([*reversed(events), genesis]), len(events) + 1)


def test_a_log_fed_by_the_network_holds_the_same_way() -> None:
    genesis, events = _history()
    engine = replica(genesis, events)
    _check_held(engine, len(events) + 1)
    assert engine.history_hash() == GroupEngine.load([genesis, *events]).history_hash()


def test_store_order_shuffled_order_and_the_sorted_fallback_load_the_same() -> None:
    """A node's stores hold events in acceptance order, loaded one by one; any other
    order loads the same, buffered while its parents are missing, or sorted first when
    that would overflow the log's buffer."""
    genesis, events = _history()
    stored = [genesis, *events]
    shuffled = [*events[20:], *events[:20]]
    shuffled.insert(7, genesis)
    tight = EngineConfig(log=LogLimits(max_pending=2))
    loads = [
        GroupEngine.load(stored),
        GroupEngine.load(shuffled),
        GroupEngine.load([*reversed(events), genesis], config=tight),  # early: too many
        GroupEngine.load([genesis, *reversed(events)], config=tight),  # buffer full
    ]
    want = [s.event_id for s in loads[0].ordered_events()]
    for engine in loads:
        assert [s.event_id for s in engine.ordered_events()] == want
        assert engine.history_hash() == loads[0].history_hash()
        assert engine.log.heads() == loads[0].log.heads()
        assert engine.log.pending_count == 0
        assert engine.state == loads[0].state
    with pytest.raises(LocalProtocolError):
        GroupEngine.load(events)
    with pytest.raises(LocalProtocolError):
        GroupEngine.load([genesis, *events, genesis])


def test_concurrent_events_are_held_in_the_total_order() -> None:
    """The log's order holds the events themselves (no key per event): events that sort
    before held ones (two authors writing without seeing each other) are inserted in
    place, so the order is that of wire.md §8 and positions are found in it."""
    engine, genesis = new_group()
    adds = [
        engine.author(MemberAdd(account=account(n), role="member"), device=OWNER, now=NOW_MS)
        for n in ("ann", "bob")
    ]
    apart = [replica(genesis, adds), replica(genesis, adds)]
    ann = [apart[0].author(post(f"a{i}"), device=ANN, now=NOW_MS + i) for i in range(8)]
    bob = [apart[1].author(post(f"b{i}"), device=BOB, now=NOW_MS + i) for i in range(8)]
    merged = GroupEngine.load([genesis, *adds, *bob, *ann])  # ann's interleave bob's
    held = merged.ordered_events()
    keys = [order_key(s.event) for s in held]
    assert keys == sorted(keys)
    assert len(held) == 1 + len(adds) + len(ann) + len(bob)
    assert [merged.position(s.event_id) for s in held] == list(range(len(held)))
    assert merged.position(b"\x00" * 32) is None
    assert merged.history_hash() == GroupEngine.load([genesis, *adds, *ann, *bob]).history_hash()
    # Every event here is effective (both authors are members); one not held is not.
    assert all(merged.is_effective(s.event_id) for s in held)
    assert not merged.is_effective(b"\x00" * 32)
