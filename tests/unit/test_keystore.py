"""The keystore format: encryption at rest, tamper detection, versions, files on disk."""

from __future__ import annotations

import functools
import importlib
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.pwhash import argon2id

from p2pchat.errors import (
    ConfigError,
    KeystoreCorruptError,
    KeystoreError,
    KeystoreExistsError,
    KeystoreMissingError,
    UnsupportedVersionError,
    WrongPassphraseError,
)
from p2pchat.identity import keystore
from p2pchat.identity.home import Home
from p2pchat.identity.keyfile import (
    PassphrasePurpose,
    open_or_create,
    read_keystore,
    write_keystore,
)
from p2pchat.identity.keystore import (
    BACKUP_KIND,
    UNPROTECTED,
    KdfLimits,
    LockedKeystore,
    Passphrase,
    Protection,
    UnlockedIdentity,
)
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat_crypto import cbor
from tests.conftest import NOW_MS, DeterministicRng

FAST = KdfLimits(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
SECRET = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)


@pytest.fixture
def identity(rng: DeterministicRng, now: int) -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=rng, now=now)


@pytest.fixture
def locked_bytes(identity: UnlockedIdentity, rng: DeterministicRng) -> bytes:
    return identity.lock(Passphrase.from_text(SECRET), rng=rng)


def _edit(data: bytes, **changes: Any) -> bytes:
    value = cbor.decode(data, max_size=1 << 20)
    for key, new in changes.items():
        if isinstance(new, dict) and isinstance(value[key], dict):
            value[key] = {**value[key], **new}
        else:
            value[key] = new
    return cbor.encode(value)


def _same_keys(a: UnlockedIdentity, b: UnlockedIdentity) -> bool:
    return (
        a.account.to_bytes() == b.account.to_bytes()
        and a.device.to_bytes() == b.device.to_bytes()
        and a.local_key == b.local_key
    )


def test_round_trip(identity: UnlockedIdentity, locked_bytes: bytes) -> None:
    locked = LockedKeystore.from_bytes(locked_bytes)
    assert locked.protected
    assert locked.version == keystore.FORMAT_VERSION
    assert locked.public == identity.public
    assert locked.kdf is not None
    assert locked.kdf.limits == FAST
    assert _same_keys(locked.unlock(Passphrase.from_text(SECRET)), identity)


def test_public_part_is_readable_without_the_passphrase(
    identity: UnlockedIdentity, locked_bytes: bytes, now: int
) -> None:
    public = LockedKeystore.from_bytes(locked_bytes).public
    assert public.account_key == identity.account.account_key
    assert public.fingerprint == identity.account.fingerprint
    assert public.device_key == identity.device.public_key
    assert public.peer_id == peer_id_from_ed25519(identity.device.public_key)
    assert public.created == now
    assert len(identity.local_key) == keystore.LOCAL_KEY_LEN


def test_secrets_are_not_in_the_file(identity: UnlockedIdentity, locked_bytes: bytes) -> None:
    for secret in (
        identity.local_key,
        identity.device.signing_seed(),
        identity.account.identity_dh_secret(),
        SECRET.encode(),
    ):
        assert secret not in locked_bytes


def test_default_limits_are_moderate_in_the_product(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the module as shipped, without this file's fast_kdf
    assert (
        KdfLimits(opslimit=argon2id.OPSLIMIT_MODERATE, memlimit=argon2id.MEMLIMIT_MODERATE)
        == keystore.DEFAULT_KDF_LIMITS
    )


def test_wrong_passphrase(locked_bytes: bytes) -> None:
    locked = LockedKeystore.from_bytes(locked_bytes)
    with pytest.raises(WrongPassphraseError) as info:
        locked.unlock(Passphrase.from_text("Correct horse battery staple"))
    assert "Correct" not in str(info.value)
    with pytest.raises(WrongPassphraseError):
        locked.unlock(None)


def test_tampered_ciphertext_is_damage_not_a_wrong_passphrase(locked_bytes: bytes) -> None:
    value = cbor.decode(locked_bytes, max_size=1 << 20)
    flipped = bytearray(value["ciphertext"])
    flipped[10] ^= 1
    tampered = LockedKeystore.from_bytes(_edit(locked_bytes, ciphertext=bytes(flipped)))
    with pytest.raises(KeystoreCorruptError, match="modified or damaged"):
        tampered.unlock(Passphrase.from_text(SECRET))


def test_swapped_public_part_is_detected_on_unlock(locked_bytes: bytes, now: int) -> None:
    """A self-consistent public part from another identity passes parsing, not unlocking."""
    other = UnlockedIdentity.generate(rng=DeterministicRng(b"other"), now=now)
    forged = _edit(locked_bytes, public=other.public.to_cbor_value())
    locked = LockedKeystore.from_bytes(forged)
    assert locked.public == other.public
    with pytest.raises(KeystoreCorruptError):
        locked.unlock(Passphrase.from_text(SECRET))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created", NOW_MS + 1),
        ("peer_id", peer_id_from_ed25519(bytes(32))),
        ("fingerprint", "AAAA AAAA AAAA AAAA AAAA AAAA AAAA AAAA"),
        ("device_key", bytes(32)),
        ("identity_dh_key", bytes(32)),
        ("created", "yesterday"),
    ],
)
def test_inconsistent_public_part_is_refused_when_parsing(
    locked_bytes: bytes, field: str, value: object
) -> None:
    with pytest.raises(KeystoreCorruptError):
        LockedKeystore.from_bytes(_edit(locked_bytes, public={field: value}))


def test_every_truncation_is_reported_as_damage(locked_bytes: bytes) -> None:
    for length in range(len(locked_bytes)):
        with pytest.raises(KeystoreCorruptError):
            LockedKeystore.from_bytes(locked_bytes[:length])


@settings(max_examples=150)
@given(data=st.data())
def test_any_byte_flip_is_refused_with_a_keystore_error(data: st.DataObject) -> None:
    blob = _fixed_blob()
    index = data.draw(st.integers(0, len(blob) - 1))
    mask = data.draw(st.integers(1, 255))
    flipped = bytearray(blob)
    flipped[index] ^= mask
    with pytest.raises(KeystoreError):
        LockedKeystore.from_bytes(bytes(flipped)).unlock(Passphrase.from_text(SECRET))


@functools.cache
def _fixed_blob() -> bytes:
    """One keystore for every hypothesis example (fixtures do not mix with @given)."""
    rng = DeterministicRng(b"flip")
    identity = UnlockedIdentity.generate(rng=rng, now=NOW_MS)
    return identity.lock(Passphrase.from_text(SECRET), rng=rng, limits=FAST)


def test_unknown_version_is_reported_as_too_new(locked_bytes: bytes) -> None:
    with pytest.raises(UnsupportedVersionError, match="newer p2pchat"):
        LockedKeystore.from_bytes(_edit(locked_bytes, version=2))
    with pytest.raises(UnsupportedVersionError, match="version 0"):
        LockedKeystore.from_bytes(_edit(locked_bytes, version=0))
    with pytest.raises(KeystoreCorruptError):
        LockedKeystore.from_bytes(_edit(locked_bytes, version="1"))


@pytest.mark.parametrize(
    "kdf",
    [
        {"memlimit": 1 << 40},
        {"opslimit": 0},
        {"alg": "scrypt"},
        {"salt": b"short"},
        {"check": b""},
    ],
)
def test_unreasonable_kdf_parameters_are_refused(locked_bytes: bytes, kdf: dict[str, Any]) -> None:
    with pytest.raises(KeystoreCorruptError):
        LockedKeystore.from_bytes(_edit(locked_bytes, kdf=kdf))


def test_not_a_keystore() -> None:
    for data in (b"", b"\xff", cbor.encode([1, 2]), cbor.encode({"kind": "p2pchat/other"})):
        with pytest.raises(KeystoreCorruptError):
            LockedKeystore.from_bytes(data)


def test_backup_and_keystore_kinds_are_not_interchangeable(
    identity: UnlockedIdentity, rng: DeterministicRng
) -> None:
    backup = identity.lock(Passphrase.from_text("backup pass"), rng=rng, kind=BACKUP_KIND)
    with pytest.raises(KeystoreCorruptError, match="keys import"):
        LockedKeystore.from_bytes(backup)
    locked = LockedKeystore.from_bytes(backup, kinds=(BACKUP_KIND,))
    assert _same_keys(locked.unlock(Passphrase.from_text("backup pass")), identity)
    live = identity.lock(Passphrase.from_text(SECRET), rng=rng)
    with pytest.raises(KeystoreCorruptError):
        LockedKeystore.from_bytes(live, kinds=(BACKUP_KIND,))
    with pytest.raises(ValueError, match="kind"):
        identity.lock(UNPROTECTED, rng=rng, kind="p2pchat/other")


def test_unprotected_keystore(identity: UnlockedIdentity, rng: DeterministicRng) -> None:
    data = identity.lock(UNPROTECTED, rng=rng)
    locked = LockedKeystore.from_bytes(data)
    assert not locked.protected
    assert locked.kdf is None
    assert _same_keys(locked.unlock(None), identity)
    flipped = bytearray(data)
    flipped[-3] ^= 1  # inside the ciphertext: damage is still detected
    with pytest.raises(KeystoreCorruptError):
        LockedKeystore.from_bytes(bytes(flipped)).unlock(None)


def test_the_same_passphrase_in_either_unicode_form_opens_it(
    identity: UnlockedIdentity, rng: DeterministicRng
) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    locked = LockedKeystore.from_bytes(identity.lock(Passphrase.from_text(composed), rng=rng))
    assert _same_keys(locked.unlock(Passphrase.from_text(decomposed)), identity)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(ConfigError, match="insecure-no-passphrase"):
        Passphrase.from_text("")


def test_secrets_never_appear_in_reprs(identity: UnlockedIdentity, locked_bytes: bytes) -> None:
    passphrase = Passphrase.from_text(SECRET)
    texts = [repr(identity), repr(passphrase), str(passphrase)]
    texts.append(repr(LockedKeystore.from_bytes(locked_bytes)))
    secrets = [
        identity.local_key,
        identity.device.signing_seed(),
        identity.account.identity_dh_secret(),
    ]
    for text in texts:
        assert SECRET not in text
        for secret in secrets:
            assert secret.hex() not in text
            assert repr(secret)[2:-1] not in text
    assert identity.account.fingerprint in repr(identity)


# --- files ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_refuses_to_overwrite_and_force_keeps_a_backup(
    tmp_path: Path, identity: UnlockedIdentity, rng: DeterministicRng, now: int
) -> None:
    home = Home(tmp_path / "home")
    first = identity.lock(UNPROTECTED, rng=rng)
    assert write_keystore(home, first, force=False, now=now) is None
    assert _mode(home.keystore_path) == 0o600
    assert _mode(home.path) == 0o700

    second = UnlockedIdentity.generate(rng=rng, now=now).lock(UNPROTECTED, rng=rng)
    with pytest.raises(KeystoreExistsError, match="--force"):
        write_keystore(home, second, force=False, now=now)
    assert home.keystore_path.read_bytes() == first

    backup = write_keystore(home, second, force=True, now=now)
    assert backup is not None
    assert backup.name == "identity.keystore.bak-20260101T000000Z"
    assert backup.read_bytes() == first
    assert _mode(backup) == 0o600
    assert home.keystore_path.read_bytes() == second

    again = write_keystore(home, first, force=True, now=now)
    assert again is not None
    assert again != backup
    assert again.read_bytes() == second
    assert backup.read_bytes() == first
    assert not [p for p in home.path.iterdir() if p.name.endswith(".tmp")]


def test_write_without_backup(
    tmp_path: Path, identity: UnlockedIdentity, rng: DeterministicRng
) -> None:
    home = Home(tmp_path)
    write_keystore(home, identity.lock(UNPROTECTED, rng=rng), force=False, now=NOW_MS)
    new = identity.lock(Passphrase.from_text(SECRET), rng=rng)
    assert write_keystore(home, new, force=True, now=NOW_MS, keep_backup=False) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.keystore"]


def test_read_missing_home_and_missing_file(tmp_path: Path) -> None:
    missing_home = Home(tmp_path / "nowhere")
    with pytest.raises(KeystoreMissingError, match="no p2pchat home"):
        read_keystore(missing_home.keystore_path, home=missing_home)
    with pytest.raises(KeystoreMissingError, match="keys generate"):
        read_keystore(Home(tmp_path).keystore_path, home=Home(tmp_path))
    with pytest.raises(KeystoreMissingError, match="no file at"):
        read_keystore(tmp_path / "backup")


def test_read_refuses_directories_and_huge_files(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(KeystoreCorruptError, match="directory"):
        read_keystore(tmp_path / "dir")
    huge = tmp_path / "huge"
    huge.write_bytes(b"\0" * (keystore.MAX_KEYSTORE_SIZE + 1))
    with pytest.raises(KeystoreCorruptError, match="too large"):
        read_keystore(huge)


class _Source:
    """A passphrase source that records why it was asked."""

    def __init__(self, answer: Protection) -> None:
        self.answer = answer
        self.asked: list[PassphrasePurpose] = []

    def __call__(self, purpose: PassphrasePurpose) -> Protection:
        self.asked.append(purpose)
        return self.answer


def test_open_or_create(tmp_path: Path, rng: DeterministicRng, now: int) -> None:
    home = Home(tmp_path / "home")
    source = _Source(Passphrase.from_text(SECRET))
    with pytest.raises(KeystoreMissingError):
        open_or_create(home, passphrase=source, create=False, rng=rng, now=now)
    assert source.asked == []
    assert not home.exists()

    created, was_created = open_or_create(home, passphrase=source, create=True, rng=rng, now=now)
    assert was_created
    assert source.asked == [PassphrasePurpose.CREATE]

    opened, was_created = open_or_create(home, passphrase=source, create=True, rng=rng, now=now)
    assert not was_created
    assert source.asked == [PassphrasePurpose.CREATE, PassphrasePurpose.UNLOCK]
    assert _same_keys(opened, created)

    with pytest.raises(WrongPassphraseError):
        open_or_create(home, passphrase=_Source(UNPROTECTED), create=False, rng=rng, now=now)


def test_open_unprotected_asks_for_nothing(tmp_path: Path, rng: DeterministicRng, now: int) -> None:
    home = Home(tmp_path)
    open_or_create(home, passphrase=_Source(UNPROTECTED), create=True, rng=rng, now=now)
    source = _Source(Passphrase.from_text(SECRET))
    _, was_created = open_or_create(home, passphrase=source, create=False, rng=rng, now=now)
    assert not was_created
    assert source.asked == []


@pytest.mark.parametrize(
    "module", ["p2pchat.identity.keystore", "p2pchat.identity.home", "p2pchat.identity.peerid"]
)
def test_public_surface_exists(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert not missing
