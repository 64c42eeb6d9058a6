"""X3DH: both sides agree, the transcript binds identities, initial messages parse strictly."""

from __future__ import annotations

import dataclasses

import pytest

from p2pchat_crypto import cbor
from p2pchat_crypto._keys import x25519_public
from p2pchat_crypto.errors import DecodeError, VerificationError
from p2pchat_crypto.identity import Account
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.x3dh import (
    InitialMessage,
    SharedSecrets,
    initiator_agree,
    responder_agree,
    session_id_of,
)
from tests.conftest import NOW_MS, DeterministicRng
from tests.crypto.test_pairwise_setup import Pair, make_parties
from tests.crypto.test_prekeys import LOW_ORDER_POINT


def _agree(
    initiator: Account, *, device_key: bytes | None = None, seed: int = 1
) -> tuple[Pair, SharedSecrets, SharedSecrets]:
    pair = make_parties()
    ephemeral_secret = DeterministicRng(seed)(32)
    ephemeral_key = x25519_public(ephemeral_secret)
    a = initiator_agree(
        initiator,
        responder=pair.bob.public(),
        prekey=pair.prekey.public_key,
        prekey_id=pair.prekey.prekey_id,
        ephemeral_secret=ephemeral_secret,
        ephemeral_key=ephemeral_key,
        initiator_device_key=device_key,
    )
    b = responder_agree(
        pair.bob,
        prekey_secret=pair.prekey.secret_key(),
        prekey_id=pair.prekey.prekey_id,
        initiator=pair.alice.public(),
        ephemeral_key=ephemeral_key,
        initiator_device_key=device_key,
    )
    return pair, a, b


def test_both_sides_derive_the_same_secrets_and_binding() -> None:
    pair, a, b = _agree(make_parties().alice)
    assert a == b
    assert len(a.root_key) == len(a.initiator_header_key) == len(a.responder_next_header_key) == 32
    assert len({a.root_key, a.initiator_header_key, a.responder_next_header_key}) == 3
    ad = cbor.decode(a.associated_data, max_size=1024)
    assert ad[0] == "p2pchat/x3dh-ad/v1"
    assert ad[1:5] == [
        pair.alice.account_key,
        pair.alice.identity_dh_key,
        pair.bob.account_key,
        pair.bob.identity_dh_key,
    ]
    assert ad[6] == a.session_id


def test_a_different_initiator_identity_gives_different_secrets() -> None:
    """Bob computes with Alice's identity; Mallory's keys on Alice's side do not match."""
    mallory = Account.generate(DeterministicRng("mallory"))
    _pair, a, b = _agree(mallory)
    assert a.root_key != b.root_key
    assert a.associated_data != b.associated_data


def test_device_key_and_ephemeral_key_change_the_binding() -> None:
    alice = make_parties().alice
    _, plain, _ = _agree(alice)
    _, with_device, _ = _agree(alice, device_key=b"\x09" * 32)
    _, other_ephemeral, _ = _agree(alice, seed=2)
    assert plain.root_key == with_device.root_key
    assert plain.associated_data != with_device.associated_data
    assert plain.session_id != other_ephemeral.session_id


def test_low_order_ephemeral_key_is_refused() -> None:
    pair = make_parties()
    with pytest.raises(VerificationError):
        responder_agree(
            pair.bob,
            prekey_secret=pair.prekey.secret_key(),
            prekey_id=7,
            initiator=pair.alice.public(),
            ephemeral_key=LOW_ORDER_POINT,
            initiator_device_key=None,
        )


def test_session_id_depends_on_every_transcript_field() -> None:
    base = session_id_of(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 1)
    assert len(base) == 32
    assert base != session_id_of(b"\x02" * 32, b"\x01" * 32, b"\x03" * 32, 1)
    assert base != session_id_of(b"\x01" * 32, b"\x02" * 32, b"\x04" * 32, 1)
    assert base != session_id_of(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 2)


def test_initial_message_round_trips_with_and_without_device() -> None:
    pair = make_parties()
    for device in (None, pair.alice_device):
        _, initial = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS, device=device)
        assert InitialMessage.decode(initial.encode()) == initial
        assert (initial.initiator_device is None) == (device is None)
        assert initial.responder_account_key == pair.bob.account_key
        assert initial.prekey_id == 7


def test_initial_message_decode_is_strict() -> None:
    pair = make_parties()
    _, initial = Session.initiate(pair.alice, pair.bundle, pair.rng, now=NOW_MS)
    for bad in (
        dataclasses.replace(initial, header=initial.header[:-1]).encode(),
        dataclasses.replace(initial, ephemeral_key=b"\x01" * 31).encode(),
        cbor.encode([1, *cbor.decode(initial.encode(), max_size=4096)[1:]]),
        cbor.encode(cbor.decode(initial.encode(), max_size=4096)[:7]),
        initial.encode() + b"\x00",
    ):
        with pytest.raises(DecodeError):
            InitialMessage.decode(bad)
