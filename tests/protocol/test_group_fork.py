"""Forks: a device that signs two events at one position is detected, proven, frozen,
and every node that sees the proof converges on the same state."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError
from p2pchat.protocol.group_engine import ForkDetected, GroupEngine
from p2pchat.protocol.group_events import MemberAdd, decode_event, event_id_of, sign_event
from p2pchat.protocol.group_log import ForkProof, GroupError
from p2pchat.protocol.sync_messages import Run
from p2pchat_crypto import cbor
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica

LATER = NOW_MS + 10**9
OWNER = device("owner")


def _forked() -> tuple[GroupEngine, bytes, bytes, bytes, bytes]:
    """A group where ann's device wrote two different events as its seq 2."""
    engine, genesis = new_group()
    engine.author(MemberAdd(account=account("ann"), role="member"), device=OWNER, now=NOW_MS)
    ann1 = replica(genesis, [s.data for s in engine.ordered_events()])
    first = ann1.author(post("ann 1"), device=device("ann"), now=NOW_MS + 1)
    ann2 = replica(genesis, [s.data for s in ann1.ordered_events()])
    left = ann1.author(post("left"), device=device("ann"), now=NOW_MS + 2)
    right = ann2.author(post("right"), device=device("ann"), now=NOW_MS + 2)
    engine.receive(first, now=LATER)
    return engine, genesis, first, left, right


def test_fork_is_detected_proven_and_frozen() -> None:
    engine, _, first, left, right = _forked()
    assert engine.receive(left, now=LATER).effects == ()
    result = engine.receive(right, now=LATER)
    forks = [e for e in result.effects if isinstance(e, ForkDetected)]
    assert len(forks) == 1
    assert (forks[0].device, forks[0].seq) == (device("ann").public_key, 2)
    assert {forks[0].proof.first, forks[0].proof.second} == {left, right}
    # the common prefix stays, both branches are void
    assert engine.is_effective(decode_event(first).event_id)
    assert not engine.is_effective(decode_event(left).event_id)
    assert not engine.is_effective(decode_event(right).event_id)
    assert [m.text for m in engine.view.messages] == ["ann 1"]
    assert engine.log.heads()[device("ann").public_key][0] == 1  # frontier stops before the fork


def test_the_proof_converges_nodes_that_saw_only_one_branch() -> None:
    engine, genesis, _first, left, right = _forked()
    engine.receive(left, now=LATER)
    effects = engine.receive(right, now=LATER).effects
    proof = next(e for e in effects if isinstance(e, ForkDetected)).proof
    only_right = replica(genesis, [s.data for s in engine.ordered_events() if s.data != left])
    assert only_right.is_effective(decode_event(right).event_id)  # it cannot know yet
    result = only_right.receive_fork_proof(ForkProof.from_bytes(proof.to_bytes(), max_size=1 << 20))
    assert [type(e) for e in result.effects] == [ForkDetected]
    assert only_right.history_hash() == engine.history_hash()
    assert only_right.view == engine.view
    assert only_right.receive_fork_proof(proof).effects == ()  # idempotent


def test_invalid_fork_proofs_are_refused() -> None:
    engine, _, first, left, right = _forked()
    at = right.index(decode_event(right).sig) + 3
    tampered = right[:at] + bytes([right[at] ^ 1]) + right[at + 1 :]
    other = engine.author(post("owner"), device=OWNER, now=NOW_MS + 3)
    for a, b in ((left, left), (left, tampered), (left, other), (first, left), (left, b"\xa0")):
        with pytest.raises(GroupError) as info:
            engine.receive_fork_proof(ForkProof(first=a, second=b))
        assert info.value.reason == "bad-fork-proof"
    assert engine.log.frozen == {}


def test_a_forked_device_may_not_write_and_later_events_are_void() -> None:
    engine, genesis, _, left, right = _forked()
    engine.receive(left, now=LATER)
    engine.receive(right, now=LATER)
    with pytest.raises(LocalProtocolError):
        engine.author(post("again"), device=device("ann"), now=NOW_MS + 5)
    ann = replica(genesis, [s.data for s in engine.ordered_events() if s.data != right])
    after = ann.author(post("after the fork"), device=device("ann"), now=NOW_MS + 6)
    engine.receive(after, now=LATER)
    assert not engine.is_effective(decode_event(after).event_id)


def test_a_fork_is_reported_even_when_the_second_event_fails_a_later_check() -> None:
    engine, _, _, left, _ = _forked()
    engine.receive(left, now=LATER)
    held = decode_event(left)
    bad_lamport = sign_event(
        post("other"),
        signing_key=SigningKey(device("ann").signing_seed()),
        account=account("ann"),
        group=engine.group_id,
        seq=held.seq,
        prev=held.prev,
        deps=held.deps,
        lamport=held.lamport + 5,
        now=NOW_MS + 2,
    )
    with pytest.raises(GroupError) as info:
        engine.receive(bad_lamport, now=LATER)
    assert info.value.reason == "bad-lamport"
    assert engine.log.frozen == {device("ann").public_key: held.seq}
    assert not engine.is_effective(held.event_id)
    result = engine.receive_fork_proof(engine.fork_proofs[0])  # the next call reports it
    assert [type(e) for e in result.effects] == [ForkDetected]


def test_no_fork_proof_from_an_event_whose_own_signature_was_never_valid() -> None:
    engine, genesis = new_group()
    key = SigningKey(OWNER.signing_seed())

    def signed(seq: int, prev: bytes, lamport: int, words: str) -> bytes:
        return sign_event(
            post(words),
            signing_key=key,
            account=account("owner"),
            group=engine.group_id,
            seq=seq,
            prev=prev,
            lamport=lamport,
            now=NOW_MS,
        )

    genesis_id = engine.group_id
    second = cbor.decode(signed(2, genesis_id, 2, "garbage sig"), max_size=1 << 20)
    assert isinstance(second, dict)
    second["sig"] = bytes(64)
    garbage = cbor.encode(second)
    third = signed(3, event_id_of(garbage), 3, "vouches for it")
    target = replica(genesis)
    target.apply_run(Run(device=OWNER.public_key, events=(garbage, third)), now=LATER)
    assert target.log.head_of(OWNER.public_key) == (3, event_id_of(third))
    with pytest.raises(GroupError) as info:
        target.receive(signed(2, genesis_id, 2, "honest twin"), now=LATER)
    assert info.value.reason == "forked-device"
    assert target.log.frozen == {}
