"""Held events without their bytes (issue 12): once the node has stored an event, the
log keeps it decoded but not its exact bytes; sync serving and fork proofs ask the node
for them (``SyncStep.fetch`` / ``ForkEvidenceNeeded``), and events accepted but not yet
stored are served from memory."""

from __future__ import annotations

import pytest

from p2pchat.errors import LocalProtocolError
from p2pchat.protocol.group_effects import ForkDetected, ForkEvidenceNeeded
from p2pchat.protocol.group_engine import EngineConfig, GroupEngine
from p2pchat.protocol.group_events import MemberAdd, decode_event
from p2pchat.protocol.group_log import GroupError, LogLimits
from p2pchat.protocol.group_sync import SyncLimits, SyncSession
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica

LATER = NOW_MS + 10**9
OWNER = device("owner")
NAMES = ("ann", "bob", "cat")
# Small budgets, so a want is cut into several runs and batches (and stops early).
LIMITS = SyncLimits(max_batch_bytes=4096, max_run_events=7, max_events=40)


def _history() -> tuple[bytes, list[bytes]]:
    """Three members posting in turn (interleaved chains): the genesis, and every
    event's bytes in the total order."""
    engine, genesis = new_group()
    for name in NAMES:
        engine.author(MemberAdd(account=account(name), role="member"), device=OWNER, now=NOW_MS)
    members = {n: replica(genesis, [s.data for s in engine.ordered_events()]) for n in NAMES}
    for i in range(60):
        name = NAMES[i % 3]
        data = members[name].author(post(f"{name} {i}"), device=device(name), now=NOW_MS + i)
        for other in (*members.values(), engine):
            if other is not members[name]:
                other.receive(data, now=LATER)
    return genesis, [s.data for s in engine.ordered_events()]


def _serve(
    server: GroupEngine, client: GroupEngine, store: dict[bytes, bytes]
) -> tuple[list[bytes], list[bytes]]:
    """``server`` answers ``client``'s want; returns the frames it sent (encoded) and
    the ids it fetched from ``store``."""
    theirs, ours = SyncSession(client), SyncSession(server, limits=LIMITS)
    to_client = list(ours.receive(theirs.start().send[0], now=LATER).send)
    to_server = [m for message in to_client for m in theirs.receive(message, now=LATER).send]
    frames: list[bytes] = []
    fetched: list[bytes] = []
    for message in to_server:
        step = ours.receive(message, now=LATER)
        sent = list(step.send)
        if step.fetch:
            fetched += step.fetch
            sent += ours.provide({i: store[i] for i in step.fetch if i in store}).send
        frames += [m.to_bytes() for m in sent]
    return frames, fetched


def test_serving_from_the_store_sends_exactly_the_frames_served_from_memory() -> None:
    genesis, events = _history()
    store = {decode_event(data).event_id: data for data in events}
    in_memory = GroupEngine.load(events)
    from_store = GroupEngine.load(events, in_store=True)
    assert in_memory.log.unstored_count == len(events)
    assert from_store.log.unstored_count == 1  # the genesis only
    for held in (0, 4, 40):  # a late joiner, and members missing part of the history
        client = replica(genesis, events[1:held])
        want, fetched_none = _serve(in_memory, client, store)
        assert fetched_none == []
        got, fetched = _serve(from_store, client, store)
        assert got == want
        missing = len(events) - max(held, 1)  # the client holds the genesis
        assert len(fetched) == min(missing, LIMITS.max_events)
        # Half stored, half not yet: still the same frames; only the stored are fetched.
        half = GroupEngine.load(events)
        half.mark_stored(store.keys() - set(list(store)[::2]))
        got, fetched = _serve(half, client, store)
        assert got == want
        assert fetched
        assert all(half.event_bytes(i) is None for i in fetched)


def test_an_event_missing_from_the_store_ends_its_run_and_says_more() -> None:
    genesis, events = _history()
    store = {decode_event(data).event_id: data for data in events}
    engine = GroupEngine.load(events, in_store=True)
    lost = decode_event(events[10]).event_id
    frames, _ = _serve(engine, replica(genesis), {k: v for k, v in store.items() if k != lost})
    sent = b"".join(frames)
    assert events[9] in sent
    assert events[10] not in sent
    with pytest.raises(LocalProtocolError, match="no fetch"):
        SyncSession(engine).provide({})


def test_a_fresh_event_not_yet_stored_is_served_from_memory() -> None:
    genesis, events = _history()
    store = {decode_event(data).event_id: data for data in events}
    engine = GroupEngine.load(events, in_store=True)
    bob = replica(genesis, events[1:])
    fresh = bob.author(post("fresh"), device=device("bob"), now=LATER)
    fresh_id = decode_event(fresh).event_id
    (accepted,) = engine.receive(fresh, now=LATER).accepted
    assert accepted.data == fresh  # what the node stores and relays
    assert engine.event_bytes(fresh_id) == fresh
    client = replica(genesis, events[1:])
    frames, fetched = _serve(engine, client, store)  # the store does not have it yet
    assert fetched == []
    assert any(fresh in frame for frame in frames)
    engine.mark_stored([fresh_id])  # the node stored it: its bytes leave memory
    assert engine.event_bytes(fresh_id) is None
    assert engine.log.unstored_count == 1
    store[fresh_id] = fresh
    frames, fetched = _serve(engine, client, store)
    assert fetched == [fresh_id]
    assert any(fresh in frame for frame in frames)


def test_a_fork_against_a_stored_event_is_proven_with_its_bytes_from_the_store() -> None:
    genesis, events = _history()
    ann1 = replica(genesis, events[1:])
    ann2 = replica(genesis, events[1:])
    left = ann1.author(post("left"), device=device("ann"), now=LATER)
    right = ann2.author(post("right"), device=device("ann"), now=LATER)
    left_id = decode_event(left).event_id
    stored = GroupEngine.load([*events, left], in_store=True)  # left: old, not in memory
    in_memory = GroupEngine.load([*events, left])
    effects = stored.receive(right, now=LATER).effects
    assert ForkEvidenceNeeded(left_id) in effects
    assert not any(isinstance(e, ForkDetected) for e in effects)
    with pytest.raises(GroupError, match="forked-device"):
        stored.provide_fork_bytes(left_id, right)  # not the held event's bytes
    result = stored.provide_fork_bytes(left_id, left)
    (fork,) = [e for e in result.effects if isinstance(e, ForkDetected)]
    assert (fork.device, fork.proof.first, fork.proof.second) == (
        device("ann").public_key,
        left,
        right,
    )
    assert stored.provide_fork_bytes(left_id, left).effects == ()  # once
    # The same state as a node that had the bytes in memory and proved it at once.
    (fork_now,) = [
        e for e in in_memory.receive(right, now=LATER).effects if isinstance(e, ForkDetected)
    ]
    assert fork_now.proof == fork.proof
    assert stored.history_hash() == in_memory.history_hash()
    assert stored.log.frozen == in_memory.log.frozen


def test_a_load_a_page_at_a_time_is_the_load_of_them_all() -> None:
    _, events = _history()
    loading = GroupEngine.loading()
    assert all(loading.add(events[i : i + 7]) for i in range(0, len(events), 7))
    paged = loading.finish()
    whole = GroupEngine.load(events)
    assert paged.frontier() == whole.frontier()
    assert paged.history_hash() == whole.history_hash()
    assert paged.log.unstored_count == 1  # the bytes were not kept
    # Not a causal order (a child before its parent, past the buffer): say so.
    tight = GroupEngine.loading(config=EngineConfig(log=LogLimits(max_pending=2)))
    assert not tight.add([events[0], *events[:0:-1]])
