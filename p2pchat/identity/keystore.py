"""The identity keystore: the node's account and device keys, encrypted at rest.

One file in the home directory (``identity.keystore``) holds everything that makes a
node *someone*: the :class:`~p2pchat_crypto.identity.Account` pickle, the
:class:`~p2pchat_crypto.identity.Device` pickle and a random 32-byte ``local_key`` with
which the node seals the pickles in its store. Losing the file loses the identity, and
anyone who reads it unprotected *is* the identity, so:

* the secrets are encrypted with XChaCha20-Poly1305 under a key derived from the
  passphrase by Argon2id (moderate limits by default, recorded in the file so they can
  be raised later without breaking old files);
* the public parts (account key, fingerprint, device key and certificate, peer id,
  creation time) stay in clear, so ``p2pchat keys show`` needs neither passphrase nor
  Argon2, but they are the AEAD's associated data, and after decryption they must equal
  what the secrets imply: a tampered public part never survives an unlock;
* a short *check* value derived from the passphrase tells "wrong passphrase" apart from
  "damaged file" (an offline guesser gains nothing from it: the AEAD tag already lets
  them test guesses). A damaged salt or Argon2 limit also reads as a wrong passphrase:
  from inside the file the two cannot be told apart;
* an unprotected keystore exists only on explicit request (:data:`UNPROTECTED`); it is
  marked ``"alg": "none"`` and encrypted under a fixed public key, which protects
  nothing but keeps one code path and still detects accidental damage.

File format (strict CBOR, ``p2pchat_crypto.cbor``), version 1::

    {"kind": "p2pchat/keystore" | "p2pchat/keystore-backup", "version": 1,
     "public": {"account_key": bstr32, "identity_dh_key": bstr32,
                "identity_dh_signature": bstr64, "fingerprint": tstr,
                "device_key": bstr32, "device_certificate": bstr,
                "peer_id": tstr, "created": uint},
     "kdf": {"alg": "argon2id", "salt": bstr16, "opslimit": uint, "memlimit": uint,
             "check": bstr16} / {"alg": "none"},
     "nonce": bstr24, "ciphertext": bstr}

    associated data = CBOR ["p2pchat/keystore-aad", kind, version, public, kdf]
    plaintext       = CBOR {"account": Account pickle, "device": Device pickle,
                            "local_key": bstr32}

``version`` is read before anything else, so a file from a newer release is reported as
such (:class:`UnsupportedVersionError`) instead of as damage. An encrypted *backup*
(``p2pchat keys export``) is the same structure with the backup kind, so it cannot be
mistaken for a live keystore, and import re-encrypts it under the keystore passphrase.

File handling (reading, refusing to overwrite, timestamped backups, first-start
creation) is :mod:`p2pchat.identity.keyfile`; its :func:`open_or_create` is what a node
calls.
"""

from __future__ import annotations

import dataclasses
import enum
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from nacl import bindings
from nacl.exceptions import CryptoError as _NaclCryptoError
from nacl.pwhash import argon2id

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError, DecodeError
from p2pchat_crypto.identity import (
    Account,
    Device,
    DeviceCertificate,
    PublicIdentity,
    fingerprint_of,
)
from p2pchat_crypto.kdf import blake2b, constant_time_equal
from p2pchat_crypto.sealed import Rng

from ..errors import (
    ConfigError,
    KeystoreCorruptError,
    UnsupportedVersionError,
    WrongPassphraseError,
)
from .peerid import peer_id_from_ed25519

__all__ = [
    "KEYSTORE_KIND",
    "BACKUP_KIND",
    "FORMAT_VERSION",
    "LOCAL_KEY_LEN",
    "KdfLimits",
    "Argon2Params",
    "MODERATE_LIMITS",
    "DEFAULT_KDF_LIMITS",
    "Passphrase",
    "Unprotected",
    "UNPROTECTED",
    "Protection",
    "KeystorePublic",
    "UnlockedIdentity",
    "LockedKeystore",
]

KEYSTORE_KIND = "p2pchat/keystore"
BACKUP_KIND = "p2pchat/keystore-backup"
FORMAT_VERSION = 1
LOCAL_KEY_LEN = 32
MAX_KEYSTORE_SIZE = 64 * 1024

_AAD_LABEL = "p2pchat/keystore-aad"
_KEY_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_NONCE_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_CHECK_LEN = 16
_PERSON_AEAD = b"p2pchat-ks-aead"
_PERSON_CHECK = b"p2pchat-ks-check"
#: The "key" of an unprotected keystore: public by design, it only detects damage.
_UNPROTECTED_KEY = blake2b(b"p2pchat keystore: unprotected", person=b"p2pchat-ks-none")


@dataclass(frozen=True)
class KdfLimits:
    """Argon2id cost: ``opslimit`` passes over ``memlimit`` bytes of memory."""

    opslimit: int
    memlimit: int


MODERATE_LIMITS = KdfLimits(
    opslimit=argon2id.OPSLIMIT_MODERATE, memlimit=argon2id.MEMLIMIT_MODERATE
)
#: Limits for new keystores. Tests lower them by monkeypatching this attribute; nothing in
#: the product does, and files always record the limits they were made with.
DEFAULT_KDF_LIMITS = MODERATE_LIMITS
#: Files asking for more than this are refused: a crafted file must not make unlocking
#: allocate gigabytes.
_MAX_LIMITS = KdfLimits(
    opslimit=argon2id.OPSLIMIT_SENSITIVE * 4, memlimit=argon2id.MEMLIMIT_SENSITIVE
)


class Passphrase:
    """A passphrase. Its ``repr`` and ``str`` never show it.

    Text is normalised to NFC before encoding, so the same passphrase typed on systems
    that compose accents differently opens the same keystore.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ConfigError(
                "An empty passphrase protects nothing. Choose a passphrase, or ask "
                "explicitly for an unprotected keystore with --insecure-no-passphrase."
            )
        self._secret = bytes(secret)

    @classmethod
    def from_text(cls, text: str) -> Passphrase:
        return cls(unicodedata.normalize("NFC", text).encode("utf-8"))

    def reveal(self) -> bytes:
        """The passphrase bytes, for the KDF only. SECRET."""
        return self._secret

    def __repr__(self) -> str:
        return "Passphrase(<hidden>)"

    __str__ = __repr__


class Unprotected(enum.Enum):
    """The explicit choice of storing keys without a passphrase."""

    UNPROTECTED = "unprotected"


UNPROTECTED = Unprotected.UNPROTECTED
#: How a keystore is to be protected: a passphrase, or explicitly none.
Protection = Passphrase | Unprotected


@dataclass(frozen=True)
class Argon2Params:
    """How a protected keystore's key is derived, as recorded in its file."""

    limits: KdfLimits
    salt: bytes = field(repr=False)
    check: bytes = field(repr=False)

    def to_cbor_value(self) -> dict[str, Any]:
        return {
            "alg": "argon2id",
            "salt": self.salt,
            "opslimit": self.limits.opslimit,
            "memlimit": self.limits.memlimit,
            "check": self.check,
        }

    @classmethod
    def from_cbor_value(cls, value: object) -> Argon2Params | None:
        """Parse the ``kdf`` map; ``None`` for ``{"alg": "none"}`` (unprotected)."""
        if isinstance(value, dict) and value.get("alg") == "none":
            _expect_map(value, {"alg"}, "kdf parameters")
            return None
        kdf = _expect_map(value, {"alg", "salt", "opslimit", "memlimit", "check"}, "kdf parameters")
        if kdf["alg"] != "argon2id":
            raise KeystoreCorruptError(_damaged("it names an unknown key-derivation function"))
        salt, check = kdf["salt"], kdf["check"]
        if not isinstance(salt, bytes) or len(salt) != argon2id.SALTBYTES:
            raise KeystoreCorruptError(_damaged("its salt is malformed"))
        if not isinstance(check, bytes) or len(check) != _CHECK_LEN:
            raise KeystoreCorruptError(_damaged("its passphrase check is malformed"))
        for name, low, high in (
            ("opslimit", argon2id.OPSLIMIT_MIN, _MAX_LIMITS.opslimit),
            ("memlimit", argon2id.MEMLIMIT_MIN, _MAX_LIMITS.memlimit),
        ):
            number = kdf[name]
            if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
                raise KeystoreCorruptError(_damaged(f"its Argon2 {name} is out of range"))
        limits = KdfLimits(opslimit=kdf["opslimit"], memlimit=kdf["memlimit"])
        return cls(limits=limits, salt=salt, check=check)


def _kdf_value(params: Argon2Params | None) -> dict[str, Any]:
    return {"alg": "none"} if params is None else params.to_cbor_value()


@dataclass(frozen=True)
class KeystorePublic:
    """The clear part of a keystore: everything about the identity that is not secret."""

    account_key: bytes
    identity_dh_key: bytes
    identity_dh_signature: bytes
    fingerprint: str
    device_key: bytes
    device_certificate: bytes
    peer_id: str
    created: int

    @classmethod
    def of(cls, account: Account, device: Device) -> KeystorePublic:
        certificate = device.certificate
        return cls(
            account_key=account.account_key,
            identity_dh_key=account.identity_dh_key,
            identity_dh_signature=account.identity_dh_signature,
            fingerprint=account.fingerprint,
            device_key=device.public_key,
            device_certificate=certificate.encode(),
            peer_id=peer_id_from_ed25519(device.public_key),
            created=certificate.created,
        )

    def to_cbor_value(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_cbor_value(cls, value: object) -> KeystorePublic:
        """Parse and check consistency: derived fields match, signatures verify.

        Raises :class:`KeystoreCorruptError`. Checking here (and not only on unlock)
        means ``keys show`` never displays a fingerprint that does not belong to the key.
        """
        fields = _expect_map(value, set(_PUBLIC_FIELDS), "public part")
        for name, kind in _PUBLIC_FIELDS.items():
            if not isinstance(fields[name], kind) or isinstance(fields[name], bool):
                raise KeystoreCorruptError(_damaged(f"the public field {name!r} has a wrong type"))
        public = cls(**fields)
        identity = PublicIdentity(
            account_key=public.account_key,
            identity_dh_key=public.identity_dh_key,
            identity_dh_signature=public.identity_dh_signature,
        )
        try:
            identity.verify()
            certificate = DeviceCertificate.decode(public.device_certificate)
            certificate.verify(now=certificate.created)
            expected_peer_id = peer_id_from_ed25519(public.device_key)
            expected_fingerprint = fingerprint_of(public.account_key)
        except (CryptoError, ValueError):
            raise KeystoreCorruptError(_damaged("its public keys do not verify")) from None
        if (
            certificate.account_key != public.account_key
            or certificate.device_key != public.device_key
            or certificate.created != public.created
            or expected_peer_id != public.peer_id
            or expected_fingerprint != public.fingerprint
        ):
            raise KeystoreCorruptError(_damaged("its public fields do not match each other"))
        return public

    def to_json_dict(self) -> dict[str, Any]:
        """The stable JSON view (bytes in hex) for ``--json`` and ``keys export --public``."""
        return {
            name: value.hex() if isinstance(value, bytes) else value
            for name, value in dataclasses.asdict(self).items()
        }


_PUBLIC_FIELDS: dict[str, type] = {
    "account_key": bytes,
    "identity_dh_key": bytes,
    "identity_dh_signature": bytes,
    "fingerprint": str,
    "device_key": bytes,
    "device_certificate": bytes,
    "peer_id": str,
    "created": int,
}


@dataclass(frozen=True, eq=False)
class UnlockedIdentity:
    """The decrypted keystore: the account, this device and the store's sealing key.

    ``repr`` shows only public data (the account and device reprs hide their secrets,
    ``local_key`` is left out), and equality is identity: comparing secrets with ``==``
    is not constant-time and never needed.
    """

    account: Account
    device: Device
    local_key: bytes = field(repr=False)

    @classmethod
    def generate(cls, *, rng: Rng, now: int, expires: int | None = None) -> UnlockedIdentity:
        """A fresh account with one device certified from ``now`` (until ``expires``)."""
        account = Account.generate(rng)
        device = Device.generate(account, rng, now=now, expires=expires)
        return cls(account=account, device=device, local_key=rng(LOCAL_KEY_LEN))

    @property
    def public(self) -> KeystorePublic:
        return KeystorePublic.of(self.account, self.device)

    def lock(
        self,
        protection: Protection,
        *,
        rng: Rng,
        limits: KdfLimits | None = None,
        kind: str = KEYSTORE_KIND,
    ) -> bytes:
        """Encrypt into keystore-file bytes (``kind`` selects a live keystore or a backup).

        ``limits`` defaults to :data:`DEFAULT_KDF_LIMITS` *at call time*.
        """
        if kind not in (KEYSTORE_KIND, BACKUP_KIND):
            raise ValueError(f"unknown keystore kind {kind!r}")
        params, key = None, _UNPROTECTED_KEY
        if isinstance(protection, Passphrase):
            limits = limits if limits is not None else DEFAULT_KDF_LIMITS
            salt = rng(argon2id.SALTBYTES)
            key, check = _derive(protection, salt, limits)
            params = Argon2Params(limits=limits, salt=salt, check=check)
        kdf = _kdf_value(params)
        public = self.public.to_cbor_value()
        plaintext = cbor.encode(
            {
                "account": self.account.to_bytes(),
                "device": self.device.to_bytes(),
                "local_key": self.local_key,
            }
        )
        nonce = rng(_NONCE_LEN)
        ciphertext = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, _aad(kind, FORMAT_VERSION, public, kdf), nonce, key
        )
        return cbor.encode(
            {
                "kind": kind,
                "version": FORMAT_VERSION,
                "public": public,
                "kdf": kdf,
                "nonce": nonce,
                "ciphertext": ciphertext,
            }
        )


@dataclass(frozen=True)
class LockedKeystore:
    """A parsed keystore file whose secrets are still encrypted."""

    kind: str
    version: int
    public: KeystorePublic
    kdf: Argon2Params | None  # None: unprotected
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)

    @property
    def protected(self) -> bool:
        return self.kdf is not None

    @classmethod
    def from_bytes(
        cls, data: bytes, *, kinds: tuple[str, ...] = (KEYSTORE_KIND,)
    ) -> LockedKeystore:
        """Parse a keystore (or backup) file without decrypting it.

        Raises :class:`UnsupportedVersionError` for a version this release cannot read
        and :class:`KeystoreCorruptError` for anything else that is wrong.
        """
        try:
            value = cbor.decode(data, max_size=MAX_KEYSTORE_SIZE)
        except DecodeError as exc:
            what = "truncated" if exc.reason == "truncated" else "not a valid keystore file"
            raise KeystoreCorruptError(_damaged(f"it is {what} ({exc.reason})")) from None
        if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
            raise KeystoreCorruptError(_damaged("it is not a p2pchat keystore"))
        kind = value["kind"]
        if kind not in (KEYSTORE_KIND, BACKUP_KIND):
            raise KeystoreCorruptError(_damaged("it is not a p2pchat keystore"))
        if kind not in kinds:
            expected = "a keystore" if KEYSTORE_KIND in kinds else "a keystore backup"
            found = "a keystore backup" if kind == BACKUP_KIND else "a live keystore"
            raise KeystoreCorruptError(
                f"This file is {found}, not {expected}."
                + (" Use `p2pchat keys import` to restore it." if kind == BACKUP_KIND else "")
            )
        version = value.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise KeystoreCorruptError(_damaged("its format version is missing"))
        if version != FORMAT_VERSION:
            newer = " It was probably written by a newer p2pchat; upgrade to read it."
            raise UnsupportedVersionError(
                f"This keystore uses format version {version}; this p2pchat reads version "
                f"{FORMAT_VERSION}." + (newer if version > FORMAT_VERSION else "")
            )
        fields = _expect_map(
            value, {"kind", "version", "public", "kdf", "nonce", "ciphertext"}, "keystore"
        )
        nonce, ciphertext = fields["nonce"], fields["ciphertext"]
        if not isinstance(nonce, bytes) or len(nonce) != _NONCE_LEN:
            raise KeystoreCorruptError(_damaged("its nonce is malformed"))
        if not isinstance(ciphertext, bytes):
            raise KeystoreCorruptError(_damaged("its ciphertext is malformed"))
        return cls(
            kind=kind,
            version=version,
            public=KeystorePublic.from_cbor_value(fields["public"]),
            kdf=Argon2Params.from_cbor_value(fields["kdf"]),
            nonce=nonce,
            ciphertext=ciphertext,
        )

    def unlock(self, passphrase: Passphrase | None) -> UnlockedIdentity:
        """Decrypt and check the secrets (``passphrase`` may be None when unprotected).

        Raises :class:`WrongPassphraseError` or :class:`KeystoreCorruptError`.
        """
        key = _UNPROTECTED_KEY
        if self.kdf is not None:
            if passphrase is None:
                raise WrongPassphraseError("This keystore is protected by a passphrase.")
            key, check = _derive(passphrase, self.kdf.salt, self.kdf.limits)
            if not constant_time_equal(check, self.kdf.check):
                raise WrongPassphraseError("That passphrase does not open this keystore.")
        public = self.public.to_cbor_value()
        try:
            plaintext = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                self.ciphertext,
                _aad(self.kind, self.version, public, _kdf_value(self.kdf)),
                self.nonce,
                key,
            )
        except _NaclCryptoError:
            raise KeystoreCorruptError(
                _damaged("it was modified or damaged after it was written")
            ) from None
        identity = _parse_secrets(plaintext)
        if identity.public != self.public:
            raise KeystoreCorruptError(_damaged("its public part does not match its keys"))
        return identity


def _derive(passphrase: Passphrase, salt: bytes, limits: KdfLimits) -> tuple[bytes, bytes]:
    """Argon2id once, then split by BLAKE2b into the AEAD key and the check value."""
    master = argon2id.kdf(
        _KEY_LEN, passphrase.reveal(), salt, opslimit=limits.opslimit, memlimit=limits.memlimit
    )
    return (
        blake2b(master, size=_KEY_LEN, person=_PERSON_AEAD),
        blake2b(master, size=_CHECK_LEN, person=_PERSON_CHECK),
    )


def _aad(kind: str, version: int, public: dict[str, Any], kdf: dict[str, Any]) -> bytes:
    return cbor.encode([_AAD_LABEL, kind, version, public, kdf])


def _parse_secrets(plaintext: bytes) -> UnlockedIdentity:
    try:
        value = cbor.decode(plaintext, max_size=MAX_KEYSTORE_SIZE)
    except DecodeError:
        raise KeystoreCorruptError(_damaged("its secret part is malformed")) from None
    fields = _expect_map(value, {"account", "device", "local_key"}, "secret part")
    local_key = fields["local_key"]
    if not isinstance(local_key, bytes) or len(local_key) != LOCAL_KEY_LEN:
        raise KeystoreCorruptError(_damaged("its local key is malformed"))
    if not isinstance(fields["account"], bytes) or not isinstance(fields["device"], bytes):
        raise KeystoreCorruptError(_damaged("its secret part is malformed"))
    try:
        account = Account.from_bytes(fields["account"])
        device = Device.from_bytes(fields["device"])
    except (CryptoError, ValueError):
        raise KeystoreCorruptError(_damaged("its keys are malformed")) from None
    if device.certificate.account_key != account.account_key:
        raise KeystoreCorruptError(_damaged("its device belongs to another account"))
    return UnlockedIdentity(account=account, device=device, local_key=local_key)


def _expect_map(value: object, names: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != names:
        raise KeystoreCorruptError(_damaged(f"its {what} has the wrong fields"))
    return value


def _damaged(why: str) -> str:
    return f"The keystore cannot be read: {why}."
