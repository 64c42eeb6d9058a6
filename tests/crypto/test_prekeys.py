"""Signed prekeys and prekey bundles: encoding, every verification failure, pickles."""

from __future__ import annotations

import dataclasses

import pytest

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import (
    DecodeError,
    ExpiredError,
    PickleError,
    SignatureError,
    StaleError,
    UnknownSessionError,
    VerificationError,
)
from p2pchat_crypto.identity import Account, Device
from p2pchat_crypto.prekeys import PrekeyBundle, SignedPrekey, find_prekey
from tests.conftest import NOW_MS, DeterministicRng
from tests.crypto.test_pairwise_setup import DAY_MS, PREKEY_EXPIRES, make_parties

# A point of order 8 on Curve25519: X25519 with it gives all zeroes.
LOW_ORDER_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def _resign(bundle: PrekeyBundle, account: Account, **changes: object) -> PrekeyBundle:
    changed = dataclasses.replace(bundle, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(changed, signature=account.sign(changed.signed_message()))


def test_bundle_round_trips_and_verifies() -> None:
    pair = make_parties()
    encoded = pair.bundle.encode()
    decoded = PrekeyBundle.decode(encoded)
    assert decoded == pair.bundle
    assert decoded.encode() == encoded
    decoded.verify(now=NOW_MS, account_key=pair.bob.account_key, min_sequence=3)
    assert decoded.prekey == pair.prekey.public_key
    assert decoded.prekey_id == 7
    assert decoded.prekey_expires == PREKEY_EXPIRES


def test_any_changed_field_breaks_the_bundle_signature() -> None:
    pair = make_parties()
    for change in (
        {"prekey_id": 8},
        {"sequence": 4},
        {"prekey_expires": PREKEY_EXPIRES + 1},
        {"prekey": pair.alice.identity_dh_key},
    ):
        with pytest.raises(SignatureError):
            dataclasses.replace(pair.bundle, **change).verify(now=NOW_MS)


def test_bundle_from_another_account_or_with_a_foreign_certificate_is_refused() -> None:
    pair = make_parties()
    with pytest.raises(VerificationError):
        pair.bundle.verify(now=NOW_MS, account_key=pair.alice.account_key)
    foreign = _resign(pair.bundle, pair.bob, device_certificate=pair.alice_device.certificate)
    with pytest.raises(SignatureError):
        foreign.verify(now=NOW_MS)
    swapped_identity = dataclasses.replace(pair.bundle, identity=pair.alice.public())
    with pytest.raises(SignatureError):
        swapped_identity.verify(now=NOW_MS)


def test_expired_prekey_and_expired_device_certificate() -> None:
    pair = make_parties()
    pair.bundle.verify(now=PREKEY_EXPIRES - 1)
    with pytest.raises(ExpiredError):
        pair.bundle.verify(now=PREKEY_EXPIRES)
    short_device = Device.generate(pair.bob, pair.rng, now=NOW_MS, expires=NOW_MS + DAY_MS)
    bundle = PrekeyBundle.create(pair.bob, short_device.certificate, pair.prekey, sequence=1)
    with pytest.raises(ExpiredError):
        bundle.verify(now=NOW_MS + DAY_MS)


def test_wrong_key_types_are_refused() -> None:
    pair = make_parties()
    with pytest.raises(VerificationError, match="unsupported"):
        _resign(pair.bundle, pair.bob, prekey_type="ed25519").verify(now=NOW_MS)
    with pytest.raises(VerificationError, match="unsupported"):
        _resign(pair.bundle, pair.bob, prekey=b"\x05" * 33).verify(now=NOW_MS)
    with pytest.raises(VerificationError, match="low order"):
        _resign(pair.bundle, pair.bob, prekey=LOW_ORDER_POINT).verify(now=NOW_MS)
    # The unknown type still decodes: it is an extension point, refused at verification.
    other = _resign(pair.bundle, pair.bob, prekey_type="x25519+mlkem768")
    assert PrekeyBundle.decode(other.encode()) == other


def test_stale_sequence() -> None:
    pair = make_parties()
    pair.bundle.verify(now=NOW_MS, min_sequence=3)
    with pytest.raises(StaleError):
        pair.bundle.verify(now=NOW_MS, min_sequence=4)


def _bundle_value() -> list[object]:
    return list(cbor.decode(make_parties().bundle.encode(), max_size=4096))


@pytest.mark.parametrize(
    ("index", "replacement"),
    [
        (0, [b"\x00" * 32, b"\x00" * 32]),
        (2, ["x25519", 7, b"\x00" * 32]),
        (2, ["", 7, b"\x00" * 32, 5]),
        (2, [1, 7, b"\x00" * 32, 5]),
        (2, ["x25519", -1, b"\x00" * 32, 5]),
        (2, ["x25519", 1, b"\x00" * 3000, 5]),
        (3, "3"),
        (4, b"\x00" * 63),
    ],
)
def test_decode_is_strict(index: int, replacement: object) -> None:
    value = _bundle_value()
    value[index] = replacement
    with pytest.raises(DecodeError):
        PrekeyBundle.decode(cbor.encode(value))
    with pytest.raises(DecodeError):
        PrekeyBundle.decode(cbor.encode(value[:4]))


def test_signed_prekey_pickle_repr_and_lookup() -> None:
    prekey = SignedPrekey.generate(DeterministicRng(3), prekey_id=5, now=NOW_MS, expires=NOW_MS + 9)
    restored = SignedPrekey.from_bytes(prekey.to_bytes())
    assert restored.secret_key() == prekey.secret_key()
    assert restored.public_key == prekey.public_key
    assert (restored.prekey_id, restored.created, restored.expires) == (5, NOW_MS, NOW_MS + 9)
    assert prekey.secret_key().hex() not in repr(prekey)
    assert not prekey.is_expired(now=NOW_MS + 8)
    assert prekey.is_expired(now=NOW_MS + 9)
    assert find_prekey(prekey, 5) is prekey
    assert find_prekey({5: prekey}, 5) is prekey
    with pytest.raises(UnknownSessionError):
        find_prekey(prekey, 6)
    with pytest.raises(UnknownSessionError):
        find_prekey({5: prekey}, 6)


@pytest.mark.parametrize(
    "body",
    [[5, b"\x01" * 31, 1, 2], [5, b"\x01" * 32, 2, 1], [2**32, b"\x01" * 32, 1, 2], [5]],
)
def test_signed_prekey_bad_pickles(body: list[object]) -> None:
    with pytest.raises(PickleError):
        SignedPrekey.from_bytes(cbor.encode(["p2pchat/signed-prekey", 1, body]))
