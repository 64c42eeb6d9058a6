"""GroupKeyring: routing by (group, epoch, sender), epoch retirement after a grace period."""

from __future__ import annotations

import pytest

from p2pchat_crypto.errors import (
    DuplicateMessageError,
    PickleError,
    StaleError,
    UnknownSessionError,
    VerificationError,
)
from p2pchat_crypto.group import GroupKeyring, GroupSession, InboundGroupSession
from p2pchat_crypto.sealed import pack
from tests.conftest import DeterministicRng

GROUP = b"\x42" * 16
OTHER_GROUP = b"\x43" * 16
ALICE = b"\xa0" * 32
BOB = b"\xb0" * 32
GRACE = 60_000


def _inbound(session: GroupSession) -> InboundGroupSession:
    return InboundGroupSession.from_distribution(session.distribution_message())


def test_routes_messages_to_the_right_sender_key(rng: DeterministicRng) -> None:
    keyring = GroupKeyring()
    senders = {
        (g, e, s): GroupSession.create(g, e, s, rng)
        for g in (GROUP, OTHER_GROUP)
        for e in (1, 2)
        for s in (ALICE, BOB)
    }
    for session in senders.values():
        assert keyring.add_inbound(_inbound(session))
    for (g, e, s), session in senders.items():
        received = keyring.decrypt(session.encrypt(b"to " + g[:1] + bytes([e]) + s[:1]))
        assert received.plaintext == b"to " + g[:1] + bytes([e]) + s[:1]
        assert received.header.session_id == (g, e, s)
        assert received.header.index == 0
        assert received.plaintext not in repr(received).encode()
    unknown = GroupSession.create(GROUP, 3, ALICE, rng)
    with pytest.raises(UnknownSessionError):
        keyring.decrypt(unknown.encrypt(b"epoch 3"))


def test_first_distribution_wins(rng: DeterministicRng) -> None:
    keyring = GroupKeyring()
    alice = GroupSession.create(GROUP, 1, ALICE, rng)
    early = _inbound(alice)
    first = alice.encrypt(b"first")
    assert keyring.add_inbound(early)
    assert keyring.decrypt(first).plaintext == b"first"
    # A later copy of the same key (say, re-sent) must not reset replay protection.
    assert not keyring.add_inbound(_inbound(alice))
    assert keyring.inbound(GROUP, 1, ALICE) is early
    with pytest.raises(DuplicateMessageError):
        keyring.decrypt(first)
    impostor = GroupSession.create(GROUP, 1, ALICE, rng)
    with pytest.raises(VerificationError):
        keyring.add_inbound(_inbound(impostor))


def test_outbound_only_moves_to_newer_epochs(rng: DeterministicRng) -> None:
    keyring = GroupKeyring()
    one = GroupSession.create(GROUP, 1, ALICE, rng)
    keyring.set_outbound(one)
    assert keyring.outbound(GROUP) is one
    with pytest.raises(ValueError, match="newer epoch"):
        keyring.set_outbound(GroupSession.create(GROUP, 1, ALICE, rng))
    two = GroupSession.create(GROUP, 2, ALICE, rng)
    keyring.set_outbound(two)
    assert keyring.outbound(GROUP) is two
    assert keyring.outbound(OTHER_GROUP) is None


def test_retired_epochs_decrypt_until_the_grace_period_ends(
    rng: DeterministicRng, now: int
) -> None:
    keyring = GroupKeyring(grace_ms=GRACE)
    bob_1 = GroupSession.create(GROUP, 1, BOB, rng)
    bob_2 = GroupSession.create(GROUP, 2, BOB, rng)
    alice_1 = GroupSession.create(GROUP, 1, ALICE, rng)
    keyring.set_outbound(alice_1)
    keyring.add_inbound(_inbound(bob_1))
    keyring.add_inbound(_inbound(bob_2))
    keyring.add_inbound(_inbound(GroupSession.create(OTHER_GROUP, 1, BOB, rng)))
    in_flight = bob_1.encrypt(b"sent just before the change")

    keyring.retire_epochs_before(GROUP, 2, now=now)
    assert keyring.outbound(GROUP) is None  # we never send with epoch 1 again
    assert keyring.expire(now=now + GRACE - 1) == 0
    assert keyring.decrypt(in_flight).plaintext == b"sent just before the change"
    assert keyring.expire(now=now + GRACE) == 1
    with pytest.raises(UnknownSessionError):
        keyring.decrypt(bob_1.encrypt(b"too late"))
    assert keyring.decrypt(bob_2.encrypt(b"current")).plaintext == b"current"
    assert keyring.inbound(OTHER_GROUP, 1, BOB) is not None
    with pytest.raises(StaleError):
        keyring.add_inbound(_inbound(GroupSession.create(GROUP, 1, ALICE, rng)))


def test_retiring_twice_keeps_the_earliest_deadline(rng: DeterministicRng, now: int) -> None:
    keyring = GroupKeyring(grace_ms=GRACE)
    keyring.add_inbound(_inbound(GroupSession.create(GROUP, 1, BOB, rng)))
    keyring.retire_epochs_before(GROUP, 2, now=now)
    keyring.retire_epochs_before(GROUP, 2, now=now + 10_000)
    assert keyring.statistics()["retiring"] == 1
    assert keyring.expire(now=now + GRACE) == 1


def test_successive_epochs_expire_one_by_one(rng: DeterministicRng, now: int) -> None:
    keyring = GroupKeyring(grace_ms=GRACE)
    for epoch in (1, 2, 3):
        keyring.add_inbound(_inbound(GroupSession.create(GROUP, epoch, BOB, rng)))
    keyring.retire_epochs_before(GROUP, 2, now=now)
    keyring.retire_epochs_before(GROUP, 3, now=now + 1000)
    assert keyring.expire(now=now + GRACE) == 1
    assert keyring.inbound(GROUP, 1, BOB) is None
    assert keyring.inbound(GROUP, 2, BOB) is not None
    assert keyring.expire(now=now + GRACE + 1000) == 1
    assert keyring.inbound(GROUP, 2, BOB) is None
    assert keyring.inbound(GROUP, 3, BOB) is not None
    assert keyring.statistics() == {"outbound": 0, "inbound": 1, "retiring": 0}


def test_forget_now_and_forget_group(rng: DeterministicRng) -> None:
    keyring = GroupKeyring()
    keyring.set_outbound(GroupSession.create(GROUP, 1, ALICE, rng))
    keyring.add_inbound(_inbound(GroupSession.create(GROUP, 1, BOB, rng)))
    keyring.add_inbound(_inbound(GroupSession.create(GROUP, 2, BOB, rng)))
    assert keyring.forget_epochs_before(GROUP, 2) == 2
    assert keyring.forget_epochs_before(GROUP, 2) == 0
    with pytest.raises(ValueError, match="forgotten"):
        keyring.set_outbound(GroupSession.create(GROUP, 1, ALICE, rng))
    keyring.forget_group(GROUP)
    assert keyring.statistics() == {"outbound": 0, "inbound": 0, "retiring": 0}
    # Leaving a group also forgets its floor: a later rejoin starts from scratch.
    assert keyring.add_inbound(_inbound(GroupSession.create(GROUP, 1, BOB, rng)))


def test_pickle_round_trip_keeps_every_rule(rng: DeterministicRng, now: int) -> None:
    keyring = GroupKeyring(grace_ms=GRACE)
    alice = GroupSession.create(GROUP, 3, ALICE, rng)
    bob_1 = GroupSession.create(GROUP, 1, BOB, rng)
    bob_2 = GroupSession.create(GROUP, 2, BOB, rng)
    keyring.set_outbound(alice)
    keyring.add_inbound(_inbound(bob_1))
    keyring.add_inbound(_inbound(bob_2))
    seen = bob_2.encrypt(b"seen")
    keyring.decrypt(seen)
    keyring.forget_epochs_before(GROUP, 1)
    keyring.retire_epochs_before(GROUP, 2, now=now)

    copy = GroupKeyring.from_bytes(keyring.to_bytes(), grace_ms=GRACE)
    assert copy.to_bytes() == keyring.to_bytes()
    outbound = copy.outbound(GROUP)
    assert outbound is not None
    assert outbound.to_bytes() == alice.to_bytes()
    with pytest.raises(DuplicateMessageError):
        copy.decrypt(seen)
    assert copy.expire(now=now + GRACE) == 1
    key = rng(32)
    sealed = keyring.to_sealed(key, rng)
    assert GroupKeyring.from_sealed(sealed, key).to_bytes() == keyring.to_bytes()
    with pytest.raises(PickleError):
        GroupKeyring.from_sealed(sealed, rng(32))
    assert repr(keyring) == "GroupKeyring(outbound=1, inbound=2, retiring=1)"


@pytest.mark.parametrize(
    "body",
    [
        [[], [], []],
        [[b"not a pickle"], [], [], []],
        [["text"], [], [], []],
        [[], [], [[GROUP, 1]], []],
        [[], [], [], [[GROUP, -1]]],
        [[], [], [], [[b"", 1]]],
        [[], [], [], "x"],
    ],
)
def test_malformed_keyring_pickles(body: object) -> None:
    with pytest.raises(PickleError):
        GroupKeyring.from_bytes(pack("p2pchat/group-keyring", 1, body))  # type: ignore[arg-type]


def test_duplicate_sessions_in_a_keyring_pickle(rng: DeterministicRng) -> None:
    outbound = GroupSession.create(GROUP, 1, ALICE, rng).to_bytes()
    inbound = _inbound(GroupSession.create(GROUP, 1, BOB, rng)).to_bytes()
    for body in ([[outbound, outbound], [], [], []], [[], [inbound, inbound], [], []]):
        with pytest.raises(PickleError, match="two"):
            GroupKeyring.from_bytes(pack("p2pchat/group-keyring", 1, body))
