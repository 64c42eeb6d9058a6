"""The security claims of protocol-spec/crypto-group.md, each tested from the attacker's side.

* a member removed at an epoch change cannot read the next epoch;
* a newcomer cannot read what was sent before it received the distribution;
* a thief of the current inbound state cannot read messages already decrypted
  (forward secrecy of the chain), not even with every key derivable from that state.
"""

from __future__ import annotations

import pytest

from p2pchat_crypto import group_wire as wire
from p2pchat_crypto.errors import AuthenticationError, DecryptionError
from p2pchat_crypto.group import (
    INBOUND_PICKLE_KIND,
    GroupKeyring,
    GroupSession,
    InboundGroupSession,
)
from p2pchat_crypto.sealed import unpack
from tests.conftest import DeterministicRng

GROUP = b"\x42" * 16
ALICE, BOB, CAROL = (bytes([n]) * 32 for n in (0xA0, 0xB0, 0xC0))


class Member:
    """One device as the node would drive it: a keyring and its current outbound key."""

    def __init__(self, device_key: bytes, rng: DeterministicRng) -> None:
        self.device_key = device_key
        self.rng = rng
        self.keyring = GroupKeyring(grace_ms=0)

    def start_epoch(self, epoch: int, now: int) -> bytes:
        self.keyring.retire_epochs_before(GROUP, epoch, now=now)
        session = GroupSession.create(GROUP, epoch, self.device_key, self.rng)
        self.keyring.set_outbound(session)
        self.keyring.add_inbound(
            InboundGroupSession.from_distribution(session.distribution_message())
        )
        return session.distribution_message()

    def receive_distribution(self, distribution: bytes, sender: bytes) -> None:
        self.keyring.add_inbound(
            InboundGroupSession.from_distribution(distribution, expected_sender=sender)
        )

    def send(self, plaintext: bytes) -> bytes:
        session = self.keyring.outbound(GROUP)
        assert session is not None
        return session.encrypt(plaintext)


def _epoch_change(members: list[Member], epoch: int, now: int) -> None:
    """Every current member starts a fresh sender key and sends it to every other one."""
    distributions = {m.device_key: m.start_epoch(epoch, now) for m in members}
    for receiver in members:
        for sender, dist in distributions.items():
            if sender != receiver.device_key:
                receiver.receive_distribution(dist, sender)


def test_removed_member_cannot_read_the_next_epoch(rng: DeterministicRng, now: int) -> None:
    alice, bob, carol = (Member(k, rng) for k in (ALICE, BOB, CAROL))
    _epoch_change([alice, bob, carol], 1, now)
    before = alice.send(b"carol may read this")
    assert carol.keyring.decrypt(before).plaintext == b"carol may read this"

    _epoch_change([alice, bob], 2, now + 1)  # carol is removed
    from_alice = alice.send(b"carol must not read this")
    from_bob = bob.send(b"nor this")
    assert bob.keyring.decrypt(from_alice).plaintext == b"carol must not read this"
    assert alice.keyring.decrypt(from_bob).plaintext == b"nor this"
    for message in (from_alice, from_bob):
        with pytest.raises(DecryptionError):
            carol.keyring.decrypt(message)
        # Not even with every key carol's epoch-1 state can derive: epoch 2 keys are fresh.
        for sender in (ALICE, BOB):
            old_state = carol.keyring.inbound(GROUP, 1, sender)
            assert old_state is not None
            chain_key, seeds = _stolen(old_state)
            _assert_unreachable_from(chain_key, message, steps=20)
            assert not seeds


def _stolen(state: InboundGroupSession) -> tuple[bytes, list[bytes]]:
    """What a thief reads out of a pickled inbound state: chain key and skipped-key seeds."""
    _, body = unpack(state.to_bytes(), INBOUND_PICKLE_KIND)
    return body[6], [seed for _, seed in body[7]]


def test_newcomer_cannot_read_earlier_messages(rng: DeterministicRng, now: int) -> None:
    alice, bob = Member(ALICE, rng), Member(BOB, rng)
    _epoch_change([alice, bob], 1, now)
    history = [alice.send(f"old {i}".encode()) for i in range(5)]

    dave = Member(b"\xd0" * 32, rng)
    _epoch_change([alice, bob, dave], 2, now + 1)
    welcome = alice.send(b"welcome dave")
    assert dave.keyring.decrypt(welcome).plaintext == b"welcome dave"
    for message in history:
        with pytest.raises(DecryptionError):
            dave.keyring.decrypt(message)


def test_newcomer_within_an_epoch_reads_only_from_the_distributed_index(
    rng: DeterministicRng,
) -> None:
    alice = GroupSession.create(GROUP, 1, ALICE, rng)
    history = [alice.encrypt(f"old {i}".encode()) for i in range(5)]
    newcomer = InboundGroupSession.from_distribution(alice.distribution_message())
    chain_key = wire.decode_distribution(alice.distribution_message()).chain_key
    for message in history:
        with pytest.raises(DecryptionError):
            newcomer.decrypt(message)
        _assert_unreachable_from(chain_key, message, steps=20)
    assert newcomer.decrypt(alice.encrypt(b"new")).plaintext == b"new"


def _assert_unreachable_from(chain_key: bytes, message: bytes, *, steps: int) -> None:
    """No key derivable forward from ``chain_key`` (``steps`` deep) opens ``message``."""
    parsed = wire.decode_message(message)
    header = wire.message_header(parsed.group_id, parsed.epoch, parsed.sender, parsed.index)
    for _ in range(steps):
        seed, chain_key = wire.chain_step(chain_key)
        with pytest.raises(AuthenticationError):
            wire.open_body(seed, header, parsed.ciphertext)


def test_stolen_inbound_state_cannot_read_earlier_messages(rng: DeterministicRng) -> None:
    alice = GroupSession.create(GROUP, 1, ALICE, rng)
    bob = InboundGroupSession.from_distribution(alice.distribution_message())
    sent = [alice.encrypt(f"secret {i}".encode()) for i in range(8)]
    for index in (0, 1, 2, 5, 6):  # 3 and 4 stay skipped: their keys are still held
        bob.decrypt(sent[index])

    stolen = InboundGroupSession.from_bytes(bob.to_bytes())
    for index in (0, 1, 2, 5, 6):
        with pytest.raises(DecryptionError):
            stolen.decrypt(sent[index])
    chain_key, held_seeds = _stolen(stolen)
    assert len(held_seeds) == 2
    for index in (0, 1, 2, 5, 6):
        _assert_unreachable_from(chain_key, sent[index], steps=20)
        parsed = wire.decode_message(sent[index])
        header = wire.message_header(GROUP, 1, ALICE, index)
        for seed in held_seeds:
            with pytest.raises(AuthenticationError):
                wire.open_body(seed, header, parsed.ciphertext)
    # What the thief does get is stated in the spec: the still-skipped and future messages.
    assert stolen.decrypt(sent[3]).plaintext == b"secret 3"
    assert stolen.decrypt(sent[7]).plaintext == b"secret 7"
