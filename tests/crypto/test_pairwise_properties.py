"""Random interleavings of a conversation with drops, duplicates, reordering and tampering.

Invariants: every message that is delivered (not dropped) decrypts exactly once, to what
was sent; a second delivery, a replayed initial message and any tampered byte are
refused; a refused message leaves the session byte-for-byte unchanged; skipped-key
storage stays within its bound.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from p2pchat_crypto._double_ratchet import MAX_SKIPPED_KEYS
from p2pchat_crypto.errors import DecodeError, DecryptionError, ReplayError
from p2pchat_crypto.ratchet import Session
from tests.conftest import NOW_MS, DeterministicRng
from tests.crypto.test_pairwise_setup import Pair, make_parties

SIDES = st.sampled_from(["alice", "bob"])


class Conversation(RuleBasedStateMachine):
    messages = Bundle("messages")
    delivered = Bundle("delivered")

    pair: Pair
    sessions: dict[str, Session]
    rng: DeterministicRng
    initial: bytes
    counter: int

    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        self.pair = make_parties(seed)
        self.rng = DeterministicRng(f"conversation-{seed}")
        alice, initial = Session.initiate(
            self.pair.alice, self.pair.bundle, self.rng, now=NOW_MS, plaintext=b"start"
        )
        self.initial = initial.encode()
        bob, text = Session.respond(
            self.pair.bob, self.pair.prekey, self.initial, self.pair.cache, now=NOW_MS
        )
        assert text == b"start"
        self.sessions = {"alice": alice, "bob": bob}
        self.counter = 0

    @rule(target=messages, sender=SIDES, size=st.integers(0, 300))
    def send(self, sender: str, size: int) -> tuple[str, bytes, bytes]:
        self.counter += 1
        plaintext = self.counter.to_bytes(4, "big") * (size // 4 + 1)
        return sender, self.sessions[sender].encrypt(plaintext, self.rng), plaintext

    @rule(target=delivered, message=consumes(messages))
    def deliver(self, message: tuple[str, bytes, bytes]) -> tuple[str, bytes, bytes]:
        sender, wire, plaintext = message
        receiver = "bob" if sender == "alice" else "alice"
        assert self.sessions[receiver].decrypt(wire) == plaintext
        return message

    @rule(message=consumes(messages))
    def drop(self, message: tuple[str, bytes, bytes]) -> None:
        """The network loses it; the conversation must go on regardless."""

    @rule(message=delivered)
    def redeliver(self, message: tuple[str, bytes, bytes]) -> None:
        self._refused(message[0], message[1])

    @rule(message=messages, position=st.integers(0, 10_000), bit=st.integers(0, 7))
    def tamper(self, message: tuple[str, bytes, bytes], position: int, bit: int) -> None:
        sender, wire, _plaintext = message
        index = position % len(wire)
        forged = wire[:index] + bytes([wire[index] ^ (1 << bit)]) + wire[index + 1 :]
        self._refused(sender, forged)

    @precondition(lambda self: hasattr(self, "pair"))
    @rule()
    def replay_initial(self) -> None:
        cache_before = self.pair.cache.to_bytes()
        with pytest.raises(ReplayError):
            Session.respond(
                self.pair.bob, self.pair.prekey, self.initial, self.pair.cache, now=NOW_MS
            )
        assert self.pair.cache.to_bytes() == cache_before

    def _refused(self, sender: str, wire: bytes) -> None:
        receiver = self.sessions["bob" if sender == "alice" else "alice"]
        before = receiver.to_bytes()
        with pytest.raises((DecryptionError, DecodeError)):
            receiver.decrypt(wire)
        assert receiver.to_bytes() == before

    @invariant()
    def skipped_keys_are_bounded(self) -> None:
        for session in getattr(self, "sessions", {}).values():
            assert session.skipped_keys <= MAX_SKIPPED_KEYS


Conversation.TestCase.settings = settings(max_examples=150, stateful_step_count=50)
TestConversation = Conversation.TestCase
