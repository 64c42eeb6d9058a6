"""Shared set-up for the pairwise tests (Alice initiates, Bob responds), and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from p2pchat_crypto.identity import Account, Device
from p2pchat_crypto.prekeys import PrekeyBundle, SignedPrekey
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.replay import ReplayCache
from tests.conftest import NOW_MS, DeterministicRng

DAY_MS = 86_400_000
PREKEY_EXPIRES = NOW_MS + 30 * DAY_MS


@dataclass
class Pair:
    rng: DeterministicRng
    alice: Account
    alice_device: Device
    bob: Account
    bob_device: Device
    prekey: SignedPrekey
    bundle: PrekeyBundle
    cache: ReplayCache


def make_parties(seed: object = "pair") -> Pair:
    rng = DeterministicRng(str(seed))
    alice, bob = Account.generate(rng), Account.generate(rng)
    alice_device = Device.generate(alice, rng, now=NOW_MS)
    bob_device = Device.generate(bob, rng, now=NOW_MS, expires=NOW_MS + 365 * DAY_MS)
    prekey = SignedPrekey.generate(rng, prekey_id=7, now=NOW_MS, expires=PREKEY_EXPIRES)
    bundle = PrekeyBundle.create(bob, bob_device.certificate, prekey, sequence=3)
    return Pair(rng, alice, alice_device, bob, bob_device, prekey, bundle, ReplayCache())


def make_sessions(seed: object = "pair") -> tuple[Pair, Session, Session]:
    """A started session: Alice sent one initial message and Bob accepted it."""
    pair = make_parties(seed)
    alice, initial = Session.initiate(
        pair.alice, pair.bundle, pair.rng, now=NOW_MS, device=pair.alice_device, plaintext=b"hi"
    )
    bob, plaintext = Session.respond(
        pair.bob, pair.prekey, initial.encode(), pair.cache, now=NOW_MS
    )
    assert plaintext == b"hi"
    return pair, alice, bob


def test_set_up_gives_matching_sessions() -> None:
    _pair, alice, bob = make_sessions()
    assert alice.session_id == bob.session_id
    assert bob.decrypt(alice.encrypt(b"x", DeterministicRng(1))) == b"x"


def test_set_up_is_deterministic() -> None:
    assert make_sessions("s")[1].to_bytes() == make_sessions("s")[1].to_bytes()
    assert make_sessions("s")[1].to_bytes() != make_sessions("t")[1].to_bytes()
