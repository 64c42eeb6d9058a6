"""Validation of single events: everything forged or malformed is refused, typed, and
leaves the engine exactly as it was; out-of-order events wait in a bounded buffer."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, ProtocolError, RateLimitedError, WireError
from p2pchat.protocol.group_engine import EngineConfig, GroupEngine
from p2pchat.protocol.group_events import MemberAdd, Sealed, decode_event, sign_event
from p2pchat.protocol.group_log import MAX_TS_SKEW_MS, GroupError, LogLimits
from p2pchat.protocol.limits import PeerLimiter
from p2pchat_crypto.identity import Device
from tests.conftest import NOW_MS
from tests.protocol.test_group_kit import account, device, new_group, post, replica

LATER = NOW_MS + 10**6


def forge(
    engine: GroupEngine,
    dev: Device,
    *,
    body: object = None,
    seq: int | None = None,
    prev: bytes | str | None = "auto",
    deps: tuple[bytes, ...] | None = None,
    lamport: int | None = None,
    cert: bytes | str | None = "auto",
    group: bytes | None = None,
    account_key: bytes | None = None,
    ts: int = NOW_MS + 1,
) -> bytes:
    """Sign an event with chosen (possibly wrong) fields."""
    head = engine.log.head_of(dev.public_key)
    if seq is None:
        seq = 1 if head is None else head[0] + 1
    if prev == "auto":
        prev = None if head is None else head[1]
    if deps is None:
        deps = tuple(
            t.event_id for t in engine.log.tips() if t.event.author_device != dev.public_key
        )
    if lamport is None:
        named = [*deps, *([prev] if isinstance(prev, bytes) else [])]
        parents = [engine.log.get(p).event.lamport for p in named]  # type: ignore[union-attr]
        lamport = 1 + max(parents, default=0)
    if cert == "auto":
        cert = dev.certificate.encode() if seq == 1 else None
    return sign_event(
        body or post("forged"),  # type: ignore[arg-type]
        signing_key=SigningKey(dev.signing_seed()),
        account=account_key or dev.certificate.account_key,
        group=group or engine.group_id,
        seq=seq,
        prev=prev,  # type: ignore[arg-type]
        deps=deps,
        lamport=lamport,
        now=ts,
        cert=cert,  # type: ignore[arg-type]
    )


def flip_signature(data: bytes) -> bytes:
    """The same event with one bit of its signature flipped."""
    at = data.index(decode_event(data).sig) + 10
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


@pytest.fixture
def group() -> tuple[GroupEngine, bytes]:
    engine, genesis = new_group()
    engine.author(
        MemberAdd(account=account("alice"), role="member"), device=device("owner"), now=NOW_MS
    )
    return engine, genesis


def test_genesis_id_is_its_hash_and_a_replica_checks_it(group: tuple[GroupEngine, bytes]) -> None:
    engine, genesis = group
    other = GroupEngine.from_genesis(genesis, group_id=engine.group_id)
    assert other.group_id == engine.group_id
    with pytest.raises(GroupError) as info:
        GroupEngine.from_genesis(genesis, group_id=bytes(32))
    assert info.value.reason == "wrong-group"
    with pytest.raises(GroupError) as info:
        GroupEngine.from_genesis(flip_signature(genesis))
    assert info.value.reason == "bad-signature"


def test_a_member_event_is_accepted_and_shown(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    data = forge(engine, device("alice"))
    result = engine.receive(data, now=LATER)
    assert [s.data for s in result.accepted] == [data]
    assert [m.text for m in engine.view.messages] == ["forged"]


def _fingerprint(engine: GroupEngine) -> tuple[object, ...]:
    return (
        engine.history_hash(),
        len(engine.ordered_events()),
        engine.log.heads(),
        engine.statistics(),
    )


def _refused(engine: GroupEngine, data: bytes, reason: str, *, now: int = LATER) -> None:
    before = _fingerprint(engine)
    with pytest.raises(ProtocolError) as info:
        engine.receive(data, now=now)
    assert getattr(info.value, "reason", None) == reason
    assert _fingerprint(engine) == before


def test_bad_signature_is_refused(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    _refused(engine, flip_signature(forge(engine, device("alice"))), "bad-signature")


def test_tampered_body_is_refused(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    data = forge(engine, device("alice"))
    _refused(engine, data.replace(b"forged", b"f0rged"), "bad-signature")


def test_wrong_group_is_refused(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    _refused(engine, forge(engine, device("alice"), group=bytes(32)), "wrong-group")


def test_first_event_needs_a_certificate(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    _refused(engine, forge(engine, device("alice"), cert=None), "missing-cert")


def test_certificate_of_another_device_or_account_is_refused(
    group: tuple[GroupEngine, bytes],
) -> None:
    engine, _ = group
    alice, mallory = device("alice"), device("mallory")
    # mallory's device claims alice's account, with mallory's own certificate
    data = forge(
        engine,
        mallory,
        account_key=alice.certificate.account_key,
        cert=mallory.certificate.encode(),
    )
    _refused(engine, data, "bad-cert")
    # a certificate with a broken account signature
    cert = dataclasses.replace(alice.certificate, signature=bytes(64))
    _refused(engine, forge(engine, alice, cert=cert.encode()), "bad-cert")


def test_device_cannot_switch_account(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    alice = device("alice")
    engine.receive(forge(engine, alice), now=LATER)
    _refused(engine, forge(engine, alice, account_key=account("owner")), "account-mismatch")


def test_lamport_rule_is_enforced(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    _refused(engine, forge(engine, device("alice"), lamport=7), "bad-lamport")


def test_deps_may_not_name_the_authors_own_chain(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    alice = device("alice")
    first = engine.receive(forge(engine, alice), now=LATER).accepted[0]
    data = forge(engine, alice, deps=(first.event_id,))
    _refused(engine, data, "bad-deps")


def test_prev_must_be_the_devices_previous_event(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    alice = device("alice")
    engine.receive(forge(engine, alice), now=LATER)
    owner_head = engine.log.head_of(device("owner").public_key)
    assert owner_head is not None
    _refused(engine, forge(engine, alice, prev=owner_head[1]), "broken-chain")


def test_events_from_the_future_are_refused_until_their_time(
    group: tuple[GroupEngine, bytes],
) -> None:
    engine, _ = group
    ts = LATER + MAX_TS_SKEW_MS + 1
    data = forge(engine, device("alice"), ts=ts)
    _refused(engine, data, "from-future")
    assert engine.receive(data, now=ts).accepted


def test_timestamps_may_not_regress_far_behind_parents(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    alice = device("alice")
    engine.receive(forge(engine, alice, ts=LATER), now=LATER)
    _refused(engine, forge(engine, alice, ts=LATER - MAX_TS_SKEW_MS - 1), "ts-regress")


def test_private_groups_refuse_clear_content() -> None:
    engine, _ = new_group("private")
    data = forge(engine, device("owner"))
    _refused(engine, data, "must-be-sealed")
    with pytest.raises(LocalProtocolError):
        engine.author(post("clear"), device=device("owner"), now=NOW_MS)


def test_public_groups_refuse_sealed_events(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    _refused(engine, forge(engine, device("alice"), body=Sealed(ciphertext=b"x")), "bad-kind")


def test_malformed_bytes_raise_wire_errors(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    with pytest.raises(WireError):
        engine.receive(b"\xa0", now=LATER)
    with pytest.raises(WireError):
        engine.receive(b"garbage", now=LATER)


def test_non_members_events_are_stored_but_void(group: tuple[GroupEngine, bytes]) -> None:
    engine, _ = group
    result = engine.receive(forge(engine, device("stranger")), now=LATER)
    assert len(result.accepted) == 1
    assert not engine.is_effective(result.accepted[0].event_id)
    assert engine.view.messages == ()


def test_out_of_order_events_wait_for_their_parents() -> None:
    author, genesis = new_group()
    chain = [author.author(post(f"m{i}"), device=device("owner"), now=NOW_MS + i) for i in range(5)]
    engine = replica(genesis)
    for data in reversed(chain[1:]):
        result = engine.receive(data, now=LATER)
        assert (result.accepted, result.buffered) == ((), 1)
    result = engine.receive(chain[0], now=LATER)
    assert [s.data for s in result.accepted] == chain
    assert engine.statistics()["pending"] == 0
    assert engine.history_hash() == author.history_hash()


def test_the_buffer_is_bounded() -> None:
    author, genesis = new_group()
    chain = [author.author(post(f"m{i}"), device=device("owner"), now=NOW_MS + i) for i in range(6)]
    engine = GroupEngine.from_genesis(genesis, config=EngineConfig(log=LogLimits(max_pending=3)))
    for data in chain[1:4]:
        engine.receive(data, now=LATER)
    with pytest.raises(GroupError) as info:
        engine.receive(chain[4], now=LATER)
    assert info.value.reason == "buffer-full"
    assert engine.statistics()["pending"] == 3
    engine.receive(chain[0], now=LATER)  # drains the buffer
    assert engine.statistics() == {
        "events": 5,
        "pending": 0,
        "forked_devices": 0,
        "live_comments": 0,
    }


def test_an_invalid_buffered_event_is_dropped_when_its_parent_arrives() -> None:
    author, genesis = new_group()
    first = author.author(post("a"), device=device("owner"), now=NOW_MS)
    bad = forge(author, device("owner"), lamport=50)  # prev = first, wrong Lamport time
    engine = replica(genesis)
    assert engine.receive(bad, now=LATER).buffered == 1
    result = engine.receive(first, now=LATER)
    assert [s.data for s in result.accepted] == [first]
    assert engine.statistics()["pending"] == 0


def test_rate_limiter_runs_before_signature_checks(
    group: tuple[GroupEngine, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, genesis = group
    limiter = PeerLimiter(rate=0.001, burst=1)
    engine = GroupEngine.from_genesis(genesis, limiter=limiter)
    verified: list[object] = []
    from p2pchat.protocol import group_events

    original = group_events.GroupEvent.verify

    def counting_verify(self: group_events.GroupEvent) -> None:
        verified.append(self)
        original(self)

    monkeypatch.setattr(group_events.GroupEvent, "verify", counting_verify)
    data = forge(engine, device("alice"))
    engine.receive(data, now=LATER, source="peer-1")
    assert len(verified) == 1
    with pytest.raises(RateLimitedError):
        engine.receive(forge(engine, device("bob")), now=LATER, source="peer-1")
    assert len(verified) == 1


def test_load_rebuilds_the_same_state(group: tuple[GroupEngine, bytes]) -> None:
    engine, _genesis = group
    engine.receive(forge(engine, device("alice")), now=LATER)
    stored = [s.data for s in engine.ordered_events()]
    for trusted in (True, False):
        loaded = GroupEngine.load(stored, trusted=trusted, now=LATER)
        assert loaded.history_hash() == engine.history_hash()
        assert loaded.state == engine.state
        assert loaded.view == engine.view
    with pytest.raises(LocalProtocolError):
        GroupEngine.load(stored, trusted=False)


def test_author_builds_deps_and_lamport_from_what_it_holds(
    group: tuple[GroupEngine, bytes],
) -> None:
    engine, genesis = group
    alice_engine = replica(genesis, [s.data for s in engine.ordered_events()])
    a = alice_engine.author(post("from alice"), device=device("alice"), now=NOW_MS + 5)
    engine.receive(a, now=LATER)
    o = engine.author(post("reply"), device=device("owner"), now=NOW_MS + 6)
    event = engine.log.get(engine.ordered_events()[-1].event_id).event  # type: ignore[union-attr]
    alice_event = engine.log.get(alice_engine.ordered_events()[-1].event_id).event  # type: ignore[union-attr]
    assert event.deps == (alice_event.event_id,)
    assert event.lamport == alice_event.lamport + 1
    assert engine.event_bytes(event.event_id) == o


_FUZZ_ENGINE, _FUZZ_GENESIS = new_group()
_FUZZ_ENGINE.author(
    MemberAdd(account=account("alice"), role="member"), device=device("owner"), now=NOW_MS
)
_FUZZ_EVENT = forge(_FUZZ_ENGINE, device("alice"))


@settings(max_examples=300)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_FUZZ_EVENT) - 1), st.integers(1, 255)), min_size=1, max_size=4
    ),
    cut=st.integers(0, 3),
)
def test_mutated_events_are_refused_with_a_typed_error_and_change_nothing(
    edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_FUZZ_EVENT)
    for at, flip in edits:
        data[at] ^= flip
    mutated = bytes(data[: len(data) - cut])
    assume(mutated != _FUZZ_EVENT)
    engine = replica(_FUZZ_GENESIS, [s.data for s in _FUZZ_ENGINE.ordered_events()])
    before = _fingerprint(engine)
    with pytest.raises(ProtocolError):
        engine.receive(mutated, now=LATER)
    assert _fingerprint(engine) == before
