"""Property tests: several senders, a lossy, duplicating, reordering and tampering network.

The state machine keeps a model of each inbound session (next index, skipped indices) and
predicts the exact outcome of every delivery; the session must agree, must never return a
message twice, and must be byte-for-byte unchanged (pickle) after any failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from p2pchat_crypto.errors import (
    CryptoError,
    DecodeError,
    DuplicateMessageError,
    GapTooLargeError,
    SignatureError,
    UnknownSessionError,
)
from p2pchat_crypto.group import GroupLimits, GroupSession, InboundGroupSession
from tests.conftest import DeterministicRng

GROUP = b"\x42" * 16
SENDERS = [bytes([n]) * 32 for n in (0xA0, 0xB0, 0xC0)]
LIMITS = GroupLimits(max_skip=5, max_skipped_keys=3)


@dataclass(frozen=True)
class Sent:
    sender: int
    index: int
    plaintext: bytes
    data: bytes


@dataclass
class Model:
    """What the spec says an inbound session holds, in terms of indices only."""

    next_index: int = 0
    skipped: list[int] = field(default_factory=list)
    decrypted: set[int] = field(default_factory=set)

    def expect(self, index: int) -> type[CryptoError] | None:
        if index < self.next_index:
            return None if index in self.skipped else DuplicateMessageError
        if index - self.next_index > LIMITS.max_skip:
            return GapTooLargeError
        return None

    def accept(self, index: int) -> None:
        if index < self.next_index:
            self.skipped.remove(index)
        else:
            self.skipped.extend(range(self.next_index, index))
            del self.skipped[: max(0, len(self.skipped) - LIMITS.max_skipped_keys)]
            self.next_index = index + 1
        self.decrypted.add(index)


class GroupNetwork(RuleBasedStateMachine):
    messages = Bundle("messages")

    @initialize(seed=st.integers(0, 2**32))
    def setup(self, seed: int) -> None:
        rng = DeterministicRng(seed)
        self.outbound = [GroupSession.create(GROUP, 1, s, rng) for s in SENDERS]
        self.inbound = [
            InboundGroupSession.from_distribution(o.distribution_message(), limits=LIMITS)
            for o in self.outbound
        ]
        self.models = [Model() for _ in SENDERS]

    @rule(
        target=messages,
        sender=st.integers(0, len(SENDERS) - 1),
        plaintexts=st.lists(st.binary(max_size=80), min_size=1, max_size=5),
    )
    def send(self, sender: int, plaintexts: list[bytes]) -> MultipleResults[Sent]:
        """A burst from one sender, so that gaps, skipped keys and eviction happen often."""
        session = self.outbound[sender]
        burst = []
        for plaintext in plaintexts:
            index = session.message_index
            burst.append(Sent(sender, index, plaintext, session.encrypt(plaintext)))
        return multiple(*burst)

    @rule(message=messages)
    def deliver(self, message: Sent) -> None:
        """Deliver (again, possibly: that is a replay) in any order; never-delivered = dropped."""
        self._deliver(message)

    @rule(message=consumes(messages))
    def deliver_once(self, message: Sent) -> None:
        self._deliver(message)

    def _deliver(self, message: Sent) -> None:
        inbound, model = self.inbound[message.sender], self.models[message.sender]
        expected = model.expect(message.index)
        before = inbound.to_bytes()
        if expected is None:
            plaintext, index = inbound.decrypt(message.data)
            assert (plaintext, index) == (message.plaintext, message.index)
            assert index not in model.decrypted
            model.accept(index)
            assert inbound.to_bytes() != before
        else:
            with pytest.raises(expected) as info:
                inbound.decrypt(message.data)
            assert type(info.value) is expected
            assert inbound.to_bytes() == before

    @rule(message=messages, data=st.data())
    def tamper(self, message: Sent, data: st.DataObject) -> None:
        position = data.draw(st.integers(0, len(message.data) - 1), label="position")
        mask = data.draw(st.integers(1, 255), label="mask")
        forged = bytearray(message.data)
        forged[position] ^= mask
        inbound = self.inbound[message.sender]
        before = inbound.to_bytes()
        try:
            inbound.decrypt(bytes(forged))
        except (DecodeError, SignatureError, UnknownSessionError):
            pass  # header/shape damage is caught before any key is touched
        else:
            raise AssertionError("a tampered message decrypted")
        assert inbound.to_bytes() == before

    @rule(message=messages, target_sender=st.integers(0, len(SENDERS) - 1))
    def misroute(self, message: Sent, target_sender: int) -> None:
        if target_sender == message.sender:
            return
        inbound = self.inbound[target_sender]
        before = inbound.to_bytes()
        try:
            inbound.decrypt(message.data)
        except UnknownSessionError:
            pass
        else:
            raise AssertionError("a session decrypted another sender's message")
        assert inbound.to_bytes() == before

    @rule(sender=st.integers(0, len(SENDERS) - 1))
    def reload_from_pickle(self, sender: int) -> None:
        pickle = self.inbound[sender].to_bytes()
        self.inbound[sender] = InboundGroupSession.from_bytes(pickle, limits=LIMITS)
        assert self.inbound[sender].to_bytes() == pickle

    @invariant()
    def skipped_keys_are_bounded_and_match_the_model(self) -> None:
        for inbound, model in zip(self.inbound, self.models, strict=True):
            assert inbound.skipped_count == len(model.skipped) <= LIMITS.max_skipped_keys
            assert inbound.next_index == model.next_index


TestGroupNetwork = GroupNetwork.TestCase
TestGroupNetwork.settings = settings(max_examples=60, stateful_step_count=40)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32),
    counts=st.lists(st.integers(0, 12), min_size=1, max_size=3),
    data=st.data(),
)
def test_every_delivered_message_decrypts_exactly_once(
    seed: int, counts: list[int], data: st.DataObject
) -> None:
    """Within the limits, loss, duplication and any order never cost a message."""
    rng = DeterministicRng(seed)
    senders = [GroupSession.create(GROUP, 1, SENDERS[i], rng) for i in range(len(counts))]
    inbound = [InboundGroupSession.from_distribution(s.distribution_message()) for s in senders]
    sent = [
        (i, n, senders[i].encrypt(f"{i}/{n}".encode()))
        for i, count in enumerate(counts)
        for n in range(count)
    ]
    kept = data.draw(st.lists(st.sampled_from(sent), unique=True) if sent else st.just([]))
    traffic = data.draw(
        st.permutations(kept + data.draw(st.lists(st.sampled_from(kept)) if kept else st.just([])))
    )
    delivered: set[tuple[int, int]] = set()
    for sender, index, message in traffic:
        if (sender, index) in delivered:
            with pytest.raises(DuplicateMessageError):
                inbound[sender].decrypt(message)
            continue
        plaintext, got = inbound[sender].decrypt(message)
        assert (plaintext, got) == (f"{sender}/{index}".encode(), index)
        delivered.add((sender, index))
    assert delivered == {(sender, index) for sender, index, _ in kept}
