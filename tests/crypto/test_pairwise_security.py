"""Security properties as tests: forward secrecy and post-compromise security.

An attacker who steals a session's state (its pickle) at some moment:

* cannot decrypt messages that the victim had already decrypted (forward secrecy);
* can follow the current chains (positive control: the theft is real), but
* after both parties complete a DH ratchet step with fresh keys, can decrypt neither
  direction any more (post-compromise security, "healing").
"""

from __future__ import annotations

import pytest

from p2pchat_crypto.errors import DecryptionError
from p2pchat_crypto.ratchet import Session
from tests.crypto.test_pairwise_setup import make_sessions


def test_forward_secrecy_a_stolen_state_cannot_read_earlier_messages() -> None:
    pair, alice, bob = make_sessions("fs")
    alice.decrypt(bob.encrypt(b"ack", pair.rng))
    earlier = []
    for round_ in range(2):
        sent = [alice.encrypt(b"a%d-%d" % (round_, i), pair.rng) for i in range(3)]
        for message in sent:
            bob.decrypt(message)
        earlier += sent
        reply = bob.encrypt(b"b%d" % round_, pair.rng)
        alice.decrypt(reply)
        earlier.append(reply)
    stolen_bob = Session.from_bytes(bob.to_bytes())
    stolen_alice = Session.from_bytes(alice.to_bytes())
    for message in earlier:
        for stolen in (stolen_bob, stolen_alice):
            with pytest.raises(DecryptionError):
                stolen.decrypt(message)
    # Positive control: the stolen state does hold live keys for the current chain.
    assert stolen_bob.decrypt(alice.encrypt(b"now", pair.rng)) == b"now"


def test_post_compromise_security_after_both_parties_ratchet() -> None:
    pair, alice, bob = make_sessions("pcs")
    alice.decrypt(bob.encrypt(b"ack", pair.rng))
    bob.decrypt(alice.encrypt(b"m1", pair.rng))
    # The attacker copies both states (but never sees the randomness used afterwards).
    stolen_alice, stolen_bob = alice.to_bytes(), bob.to_bytes()

    # Only Bob ratchets: the attacker, holding Alice's ratchet secret, still reads it.
    before = bob.encrypt(b"still readable", pair.rng)
    assert Session.from_bytes(stolen_alice).decrypt(before) == b"still readable"
    assert alice.decrypt(before) == b"still readable"

    # Now Alice ratchets too: both sides have fresh keys and the session heals.
    healed_a = alice.encrypt(b"healed a", pair.rng)
    assert bob.decrypt(healed_a) == b"healed a"
    healed_b = bob.encrypt(b"healed b", pair.rng)
    assert alice.decrypt(healed_b) == b"healed b"
    with pytest.raises(DecryptionError):
        Session.from_bytes(stolen_bob).decrypt(healed_a)
    with pytest.raises(DecryptionError):
        Session.from_bytes(stolen_alice).decrypt(healed_b)
    follower = Session.from_bytes(stolen_alice)
    follower.decrypt(before)  # even an attacker who followed every step it could
    with pytest.raises(DecryptionError):
        follower.decrypt(healed_b)
