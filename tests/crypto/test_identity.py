"""Accounts, devices and certificates: signing, verification, pickles, and no leaks."""

from __future__ import annotations

import re

import pytest

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import DecodeError, ExpiredError, PickleError, SignatureError
from p2pchat_crypto.identity import (
    MAX_CLOCK_SKEW_MS,
    Account,
    Device,
    DeviceCertificate,
    PublicIdentity,
    safety_number,
    verify_signature,
)
from p2pchat_crypto.sealed import seal, unseal
from tests.conftest import NOW_MS, DeterministicRng

DAY_MS = 86_400_000


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.fixture
def account(rng: DeterministicRng) -> Account:
    return Account.generate(rng)


def test_account_keys_have_the_right_sizes_and_the_dh_key_is_certified(account: Account) -> None:
    assert len(account.account_key) == 32
    assert len(account.identity_dh_key) == 32
    assert len(account.identity_dh_signature) == 64
    account.public().verify()


def test_sign_and_verify_signature(account: Account) -> None:
    signature = account.sign(b"hello")
    verify_signature(account.account_key, b"hello", signature)
    with pytest.raises(SignatureError):
        verify_signature(account.account_key, b"hellO", signature)
    with pytest.raises(SignatureError):
        verify_signature(account.account_key, b"hello", _flip(signature, 0))
    with pytest.raises(SignatureError):
        verify_signature(account.account_key, b"hello", signature[:-1])


def test_public_identity_round_trips_and_rejects_a_swapped_dh_key(
    account: Account, rng: DeterministicRng
) -> None:
    public = account.public()
    assert PublicIdentity.decode(public.encode()) == public
    other = Account.generate(rng)
    forged = PublicIdentity(
        account_key=public.account_key,
        identity_dh_key=other.identity_dh_key,
        identity_dh_signature=public.identity_dh_signature,
    )
    with pytest.raises(SignatureError):
        forged.verify()


@pytest.mark.parametrize(
    "value",
    [
        [b"\x00" * 32, b"\x00" * 32],
        [b"\x00" * 31, b"\x00" * 32, b"\x00" * 64],
        [b"\x00" * 32, "text", b"\x00" * 64],
        {"a": 1},
    ],
)
def test_public_identity_decode_is_strict(value: object) -> None:
    with pytest.raises(DecodeError):
        PublicIdentity.decode(cbor.encode(value))  # type: ignore[arg-type]


def test_fingerprint_is_grouped_base32_and_distinguishes_accounts(
    account: Account, rng: DeterministicRng
) -> None:
    assert re.fullmatch(r"([A-Z2-7]{4} ){7}[A-Z2-7]{4}", account.fingerprint)
    assert account.fingerprint == account.public().fingerprint
    assert Account.generate(rng).fingerprint != account.fingerprint


def test_safety_number_is_order_independent_and_pair_specific(rng: DeterministicRng) -> None:
    a, b, c = (Account.generate(rng).account_key for _ in range(3))
    number = safety_number(a, b)
    assert number == safety_number(b, a)
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", number)
    assert number != safety_number(a, c)
    with pytest.raises(ValueError, match="32 bytes"):
        safety_number(a, b[:31])


def test_account_pickle_round_trips_and_keeps_every_key(
    account: Account, rng: DeterministicRng
) -> None:
    restored = Account.from_bytes(account.to_bytes())
    assert restored.public() == account.public()
    assert restored.sign(b"m") == account.sign(b"m")
    key = rng(32)
    blob = seal(account.to_bytes(), key, rng)
    assert Account.from_bytes(unseal(blob, key, "p2pchat/account")).public() == account.public()


@pytest.mark.parametrize(
    "pickle",
    [
        cbor.encode(["p2pchat/account", 2, [b"\x01" * 32, b"\x02" * 32]]),
        cbor.encode(["p2pchat/account", 1, [b"\x01" * 32]]),
        cbor.encode(["p2pchat/account", 1, [b"\x01" * 32, b"\x02" * 31]]),
        cbor.encode(["p2pchat/device", 1, [b"\x01" * 32, b"\x02" * 32]]),
        b"\xff",
    ],
)
def test_account_from_bytes_rejects_bad_pickles(pickle: bytes) -> None:
    with pytest.raises(PickleError):
        Account.from_bytes(pickle)


def test_device_certificate_verifies_round_trips_and_expires(account: Account) -> None:
    device = Device.generate(account, DeterministicRng(7), now=NOW_MS, expires=NOW_MS + DAY_MS)
    cert = device.certificate
    assert cert.account_key == account.account_key
    assert cert.device_key == device.public_key
    assert DeviceCertificate.decode(cert.encode()) == cert
    cert.verify(now=NOW_MS)
    cert.verify(now=NOW_MS + DAY_MS - 1)
    with pytest.raises(ExpiredError):
        cert.verify(now=NOW_MS + DAY_MS)
    with pytest.raises(ExpiredError):
        cert.verify(now=NOW_MS - MAX_CLOCK_SKEW_MS - 1)
    cert.verify(now=NOW_MS - MAX_CLOCK_SKEW_MS)


def test_device_certificate_without_expiry_never_expires(account: Account) -> None:
    cert = Device.generate(account, DeterministicRng(8), now=NOW_MS).certificate
    assert cert.expires is None
    cert.verify(now=NOW_MS + 100 * 365 * DAY_MS)


@pytest.mark.parametrize("field", ["device_key", "created", "expires", "account_key"])
def test_device_certificate_detects_any_changed_field(account: Account, field: str) -> None:
    cert = Device.generate(account, DeterministicRng(9), now=NOW_MS, expires=NOW_MS + 5).certificate
    changes: dict[str, object] = {
        "device_key": _flip(cert.device_key, 3),
        "created": cert.created - 1,
        "expires": cert.expires + 1 if cert.expires is not None else None,
        "account_key": Account.generate(DeterministicRng(10)).account_key,
    }
    forged = DeviceCertificate(**{**cert.__dict__, field: changes[field]})
    with pytest.raises(SignatureError):
        forged.verify(now=NOW_MS)


def test_device_cert_signature_is_domain_separated(account: Account) -> None:
    """A signature over the cert's fields without the label is not a valid certificate."""
    device_key = Device.generate(account, DeterministicRng(11), now=NOW_MS).public_key
    bare = cbor.encode([account.account_key, device_key, NOW_MS, None])
    forged = DeviceCertificate(
        account_key=account.account_key,
        device_key=device_key,
        created=NOW_MS,
        expires=None,
        signature=account.sign(bare),
    )
    with pytest.raises(SignatureError):
        forged.verify(now=NOW_MS)


@pytest.mark.parametrize(
    "value",
    [
        [b"\x00" * 32, b"\x00" * 32, 5, 5, b"\x00" * 64],  # expires == created
        [b"\x00" * 32, b"\x00" * 32, -1, None, b"\x00" * 64],
        [b"\x00" * 32, b"\x00" * 32, True, None, b"\x00" * 64],
        [b"\x00" * 32, b"\x00" * 32, 5, None, b"\x00" * 63],
        [b"\x00" * 32, b"\x00" * 32, 5, None],
    ],
)
def test_device_certificate_decode_is_strict(value: object) -> None:
    with pytest.raises(DecodeError):
        DeviceCertificate.decode(cbor.encode(value))  # type: ignore[arg-type]


def test_device_pickle_round_trips_and_signs(account: Account) -> None:
    device = Device.generate(account, DeterministicRng(12), now=NOW_MS)
    restored = Device.from_bytes(device.to_bytes())
    assert restored.certificate == device.certificate
    assert restored.signing_seed() == device.signing_seed()
    verify_signature(device.public_key, b"x", restored.sign(b"x"))


def test_a_device_keeps_its_key_under_a_renewed_certificate(account: Account) -> None:
    device = Device.generate(account, DeterministicRng(16), now=NOW_MS, expires=NOW_MS + DAY_MS)
    renewed_cert = account.certify_device(device.public_key, now=NOW_MS + 1, expires=None)
    renewed = device.with_certificate(renewed_cert)
    assert renewed.signing_seed() == device.signing_seed()
    renewed.certificate.verify(now=NOW_MS + 2 * DAY_MS)
    other = Device.generate(account, DeterministicRng(17), now=NOW_MS)
    with pytest.raises(ValueError, match="another device key"):
        device.with_certificate(other.certificate)
    with pytest.raises(ValueError, match="expire after"):
        account.certify_device(device.public_key, now=NOW_MS, expires=NOW_MS)


def test_device_pickle_with_a_foreign_certificate_is_rejected(account: Account) -> None:
    one = Device.generate(account, DeterministicRng(13), now=NOW_MS)
    two = Device.generate(account, DeterministicRng(14), now=NOW_MS)
    mixed = cbor.encode(["p2pchat/device", 1, [one.signing_seed(), two.certificate.encode()]])
    with pytest.raises(PickleError):
        Device.from_bytes(mixed)


def test_repr_and_errors_never_show_secrets(account: Account) -> None:
    device = Device.generate(account, DeterministicRng(15), now=NOW_MS)
    signing_seed = cbor.decode(account.to_bytes(), max_size=1024)[2][0]
    secrets = [signing_seed, account.identity_dh_secret(), device.signing_seed()]
    texts = [repr(account), repr(device), str(account), str(device)]
    try:
        Account.from_bytes(cbor.encode(["p2pchat/account", 9, [secrets[0], secrets[1]]]))
    except PickleError as exc:
        texts.append(str(exc))
    assert len(texts) == 5
    for secret in secrets:
        for text in texts:
            assert secret.hex() not in text
            assert secret.hex()[:16] not in text
            assert repr(secret)[2:20] not in text
