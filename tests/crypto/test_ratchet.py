"""Pairwise sessions: conversations, ordering, failures that change nothing, pickles."""

from __future__ import annotations

import pytest

from p2pchat_crypto import cbor
from p2pchat_crypto._double_ratchet import MAX_SKIP, MAX_SKIPPED_KEYS, PAD_BLOCK
from p2pchat_crypto.errors import (
    AuthenticationError,
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    ExpiredError,
    GapTooLargeError,
    PickleError,
    ReplayError,
    SignatureError,
    UnknownSessionError,
)
from p2pchat_crypto.identity import Account, Device
from p2pchat_crypto.prekeys import SignedPrekey
from p2pchat_crypto.ratchet import Session, is_initial_message
from p2pchat_crypto.replay import ReplayCache
from p2pchat_crypto.sealed import seal, unseal
from p2pchat_crypto.x3dh import InitialMessage
from tests.conftest import NOW_MS, DeterministicRng
from tests.crypto.test_pairwise_setup import PREKEY_EXPIRES, make_parties, make_sessions


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x40]) + data[index + 1 :]


def _unchanged_after_failure(session: Session, message: bytes, error: type[Exception]) -> None:
    before = session.to_bytes()
    with pytest.raises(error):
        session.decrypt(message)
    assert session.to_bytes() == before


def test_a_conversation_in_both_directions() -> None:
    pair, alice, bob = make_sessions()
    for round_ in range(4):
        for i in range(round_ + 1):
            text = f"a{round_}.{i}".encode()
            assert bob.decrypt(alice.encrypt(text, pair.rng)) == text
        for i in range(2):
            text = f"b{round_}.{i}".encode()
            assert alice.decrypt(bob.encrypt(text, pair.rng)) == text
    assert alice.skipped_keys == bob.skipped_keys == 0


def test_initiator_sends_initial_messages_until_it_hears_back() -> None:
    pair, alice, bob = make_sessions()
    acknowledged_at_start = alice.is_acknowledged
    early = alice.encrypt(b"early", pair.rng)
    assert is_initial_message(early)
    assert InitialMessage.decode(early).session_id == bob.session_id
    assert bob.decrypt(early) == b"early"
    assert alice.decrypt(bob.encrypt(b"ack", pair.rng)) == b"ack"
    assert (acknowledged_at_start, alice.is_acknowledged) == (False, True)
    late = alice.encrypt(b"late", pair.rng)
    assert not is_initial_message(late)
    assert bob.decrypt(late) == b"late"


def test_responder_first_reply_performs_a_dh_ratchet_step() -> None:
    """Bob's prekey secret is his first ratchet key; his first send replaces it."""
    pair, _alice, bob = make_sessions()
    secret = pair.prekey.secret_key()
    assert secret in bob.to_bytes()
    bob.encrypt(b"reply", pair.rng)
    assert secret not in bob.to_bytes()


def test_any_first_message_can_start_the_session() -> None:
    """If the first initial message is lost, the second one starts the session."""
    pair = make_parties()
    alice, first = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS, plaintext=b"1")
    second = alice.encrypt(b"2", pair.rng)
    bob, text = Session.respond(pair.bob, pair.prekey, second, pair.cache, now=NOW_MS)
    assert text == b"2"
    assert bob.decrypt(first.encode()) == b"1"  # the skipped key of message 0
    _unchanged_after_failure(bob, second, DuplicateMessageError)


def test_out_of_order_and_duplicates_within_and_across_chains() -> None:
    pair, alice, bob = make_sessions()
    bob.decrypt(alice.encrypt(b"warm-up", pair.rng))
    old_chain = [bob.encrypt(b"old%d" % i, pair.rng) for i in range(3)]
    assert alice.decrypt(old_chain[1]) == b"old1"
    assert alice.skipped_keys == 1
    bob.decrypt(alice.encrypt(b"ratchet", pair.rng))
    new_chain = [bob.encrypt(b"new%d" % i, pair.rng) for i in range(3)]
    assert alice.decrypt(new_chain[2]) == b"new2"  # skips old2 (via pn) and new0, new1
    assert alice.skipped_keys == 1 + 1 + 2
    assert [alice.decrypt(m) for m in (new_chain[0], old_chain[2], old_chain[0], new_chain[1])] == [
        b"new0",
        b"old2",
        b"old0",
        b"new1",
    ]
    assert alice.skipped_keys == 0
    for message in (*old_chain, *new_chain):
        _unchanged_after_failure(alice, message, DecryptionError)
    _unchanged_after_failure(alice, new_chain[2], DuplicateMessageError)


def test_gap_too_large_changes_nothing_and_the_limit_itself_is_allowed() -> None:
    pair, alice, bob = make_sessions()
    # Bob has read message 0 (the initial one); messages[k] is message number k + 1.
    messages = [alice.encrypt(b"", pair.rng) for _ in range(MAX_SKIP + 2)]
    _unchanged_after_failure(bob, messages[MAX_SKIP + 1], GapTooLargeError)
    assert bob.decrypt(messages[MAX_SKIP]) == b""
    assert bob.skipped_keys == MAX_SKIP


def test_skipped_keys_are_capped_and_the_oldest_evicted() -> None:
    pair, alice, bob = make_sessions()
    first_chain: list[bytes] = []
    for _ in range(3):  # three of Bob's chains, each leaving 900 skipped keys at Alice
        chain = [bob.encrypt(b"", pair.rng) for _ in range(901)]
        first_chain = first_chain or chain
        alice.decrypt(chain[-1])
        assert alice.skipped_keys <= MAX_SKIPPED_KEYS
        bob.decrypt(alice.encrypt(b"turn", pair.rng))
    assert alice.skipped_keys == MAX_SKIPPED_KEYS
    with pytest.raises(DecryptionError):  # evicted: the oldest keys went first
        alice.decrypt(first_chain[0])
    assert alice.decrypt(first_chain[899]) == b""  # the newest of the oldest chain is kept


@pytest.mark.parametrize("where", ["header", "body", "type"])
def test_tampering_is_detected_and_changes_nothing(where: str) -> None:
    pair, alice, bob = make_sessions()
    alice.decrypt(bob.encrypt(b"ack", pair.rng))
    message = alice.encrypt(b"secret plans", pair.rng)
    _type, header, body = cbor.decode(message, max_size=4096)
    if where == "header":
        for index in (0, 30, len(header) - 1):
            forged = cbor.encode([1, _flip(header, index), body])
            _unchanged_after_failure(bob, forged, AuthenticationError)
    elif where == "body":
        for index in (0, len(body) // 2, len(body) - 1):
            forged = cbor.encode([1, header, _flip(body, index)])
            _unchanged_after_failure(bob, forged, AuthenticationError)
        _unchanged_after_failure(bob, cbor.encode([1, header, body[:-1]]), AuthenticationError)
    else:
        _unchanged_after_failure(bob, cbor.encode([3, header, body]), DecodeError)
        _unchanged_after_failure(bob, message + b"\x00", DecodeError)
    assert bob.decrypt(message) == b"secret plans"


def test_messages_cannot_move_between_sessions() -> None:
    pair, alice, bob = make_sessions("one")
    _alice2, initial2 = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS)
    bob2, _ = Session.respond(pair.bob, pair.prekey, initial2, pair.cache, now=NOW_MS)
    assert bob2.session_id != bob.session_id
    _unchanged_after_failure(bob2, alice.encrypt(b"for session 1", pair.rng), UnknownSessionError)
    bob.decrypt(alice.encrypt(b"x", pair.rng))
    alice.decrypt(bob.encrypt(b"ack", pair.rng))
    _unchanged_after_failure(bob2, alice.encrypt(b"for session 1", pair.rng), AuthenticationError)


def test_padding_hides_the_exact_length() -> None:
    pair, alice, _bob = make_sessions()
    sizes = {len(alice.encrypt(b"x" * n, pair.rng)) for n in range(PAD_BLOCK)}
    assert len(sizes) == 1
    assert len(alice.encrypt(b"x" * PAD_BLOCK, pair.rng)) > sizes.pop()


def test_replayed_initial_message_is_refused_and_the_cache_only_grows_on_success() -> None:
    pair = make_parties()
    _alice, initial = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS)
    forged = initial.encode()[:-1] + bytes([initial.encode()[-1] ^ 1])
    with pytest.raises(AuthenticationError):
        Session.respond(pair.bob, pair.prekey, forged, pair.cache, now=NOW_MS)
    assert len(pair.cache) == 0
    Session.respond(pair.bob, pair.prekey, initial, pair.cache, now=NOW_MS)
    assert len(pair.cache) == 1
    with pytest.raises(ReplayError):
        Session.respond(pair.bob, pair.prekey, initial, pair.cache, now=NOW_MS)
    restored = ReplayCache.from_bytes(pair.cache.to_bytes())
    with pytest.raises(ReplayError):
        Session.respond(pair.bob, pair.prekey, initial, restored, now=NOW_MS + 1)


def test_respond_refuses_wrong_recipient_unknown_and_expired_prekeys() -> None:
    pair = make_parties()
    _alice, initial = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS)
    with pytest.raises(UnknownSessionError):
        Session.respond(pair.alice, pair.prekey, initial, pair.cache, now=NOW_MS)
    other = SignedPrekey.generate(pair.rng, prekey_id=8, now=NOW_MS, expires=PREKEY_EXPIRES)
    with pytest.raises(UnknownSessionError):
        Session.respond(pair.bob, {8: other}, initial, pair.cache, now=NOW_MS)
    with pytest.raises(ExpiredError):
        Session.respond(pair.bob, {7: pair.prekey}, initial, pair.cache, now=PREKEY_EXPIRES)
    assert len(pair.cache) == 0


def test_identity_mismatch_is_refused() -> None:
    """Mallory relabels Alice's initial message with her own (valid) identity."""
    pair = make_parties()
    _alice, initial = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS)
    mallory = Account.generate(DeterministicRng("mallory"))
    relabelled = InitialMessage(**{**initial.__dict__, "initiator": mallory.public()})
    with pytest.raises(AuthenticationError):
        Session.respond(pair.bob, pair.prekey, relabelled, pair.cache, now=NOW_MS)
    forged_identity = InitialMessage(
        **{
            **initial.__dict__,
            "initiator": type(initial.initiator)(
                account_key=pair.alice.account_key,
                identity_dh_key=mallory.identity_dh_key,
                identity_dh_signature=pair.alice.identity_dh_signature,
            ),
        }
    )
    with pytest.raises(SignatureError):
        Session.respond(pair.bob, pair.prekey, forged_identity, pair.cache, now=NOW_MS)
    with pytest.raises(Exception, match="another account"):
        Session.initiate(
            pair.alice, pair.bundle, pair.rng, now=NOW_MS, their_account_key=mallory.account_key
        )
    assert len(pair.cache) == 0


def test_initiator_device_certificate_is_checked_and_bound() -> None:
    pair = make_parties()
    mallory = Account.generate(DeterministicRng("mallory"))
    mallory_device = Device.generate(mallory, pair.rng, now=NOW_MS)
    _alice, initial = Session.initiate(
        pair.alice, pair.bundle, pair.rng, now=NOW_MS, device=pair.alice_device
    )
    foreign = InitialMessage(**{**initial.__dict__, "initiator_device": mallory_device.certificate})
    with pytest.raises(SignatureError):
        Session.respond(pair.bob, pair.prekey, foreign, pair.cache, now=NOW_MS)
    other_device = Device.generate(pair.alice, pair.rng, now=NOW_MS)
    swapped = InitialMessage(**{**initial.__dict__, "initiator_device": other_device.certificate})
    with pytest.raises(AuthenticationError):
        Session.respond(pair.bob, pair.prekey, swapped, pair.cache, now=NOW_MS)
    bob, _ = Session.respond(pair.bob, pair.prekey, initial, pair.cache, now=NOW_MS)
    assert bob.their_device == pair.alice_device.certificate
    assert bob.their_identity == pair.alice.public()
    with pytest.raises(ValueError, match="another account"):
        Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS, device=mallory_device)


def test_expired_bundle_is_refused_by_initiate() -> None:
    pair = make_parties()
    with pytest.raises(ExpiredError):
        Session.initiate(pair.alice, pair.bundle, pair.rng, now=PREKEY_EXPIRES)


def test_pickles_round_trip_mid_conversation_and_seal() -> None:
    pair, alice, bob = make_sessions()
    held = [bob.encrypt(b"m%d" % i, pair.rng) for i in range(3)]
    alice.decrypt(held[2])
    for session in (alice, bob):
        assert Session.from_bytes(session.to_bytes()).to_bytes() == session.to_bytes()
    restored = Session.from_bytes(alice.to_bytes())
    assert restored.decrypt(held[0]) == b"m0"
    assert restored.session_id == alice.session_id
    key = pair.rng(32)
    sealed = seal(alice.to_bytes(), key, pair.rng)
    assert Session.from_bytes(unseal(sealed, key, "p2pchat/session")).to_bytes() == alice.to_bytes()
    pending = Session.from_bytes(make_sessions()[1].to_bytes())
    assert not pending.is_acknowledged
    assert is_initial_message(pending.encrypt(b"", pair.rng))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body: body.pop("sid"),
        lambda body: body.update(sid=b"\x00"),
        lambda body: body["ratchet"].update(ns=-1),
        lambda body: body["ratchet"].update(rk=b"short"),
        lambda body: body["ratchet"].update(pending=1),
        lambda body: body["ratchet"].update(hks=None),
        lambda body: body["ratchet"].update(cks=None, pending=False),
        lambda body: body["ratchet"].update(ckr=bytes(32)),
        lambda body: body["ratchet"].update(skipped=[[b"\x00" * 32, 1]]),
        lambda body: body.update(x3dh=[1, 2]),
        lambda body: body.update(role="observer"),
        lambda body: body.update(acked=None),
        lambda body: body.update(them=b"\x00"),
    ],
)
def test_bad_session_pickles_raise_pickle_error(mutate) -> None:
    _pair, alice, _bob = make_sessions()
    kind, version, body = cbor.decode(alice.to_bytes(), max_size=1 << 20)
    mutate(body)
    with pytest.raises(PickleError):
        Session.from_bytes(cbor.encode([kind, version, body]))
    with pytest.raises(PickleError):
        Session.from_bytes(cbor.encode([kind, 2, body]))


def test_repr_and_errors_never_show_secrets() -> None:
    pair, alice, bob = make_sessions()
    body = cbor.decode(alice.to_bytes(), max_size=1 << 20)[2]
    secrets = [
        value
        for name, value in body["ratchet"].items()
        if name in {"dhs", "rk", "cks", "ckr", "hks", "hkr", "nhks", "nhkr"} and value
    ]
    secrets += [pair.prekey.secret_key(), pair.bob.identity_dh_secret()]
    texts = [repr(alice), repr(bob), repr(pair.prekey), repr(pair.cache)]
    for bad in (b"\x00", alice.encrypt(b"x", pair.rng)[:-1]):
        try:
            bob.decrypt(bad)
        except (DecodeError, DecryptionError) as exc:
            texts.append(str(exc))
            texts.append(repr(exc))
    assert len(secrets) >= 6
    assert len(texts) == 8
    for secret in secrets:
        for text in texts:
            assert secret.hex()[:12] not in text
            assert repr(secret)[2:14] not in text
