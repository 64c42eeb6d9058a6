"""Long-term identity: the account, its devices, and how others verify them.

An *account* is one person. It holds two long-term keys:

* an Ed25519 **account key** that signs everything the account vouches for, and
* an X25519 **identity-DH key** used in X3DH. It is certified by the account key, so a
  peer who trusts the account key (checked out of band with :func:`safety_number` or the
  fingerprint) also trusts the DH key.

A *device* (one per node) has its own Ed25519 key, which is also the libp2p host key
(:meth:`Device.signing_seed`). The account signs a :class:`DeviceCertificate` binding
the device key to the account, with a creation time and an optional expiry.

Every signed structure is canonical CBOR whose first element is a domain-separation
label (``"p2pchat/device-cert/v1"`` ...), so a signature over one kind of object can
never be replayed as another. Exact formats: ``protocol-spec/crypto.md``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from . import cbor, sealed
from ._fields import decode_array, expect_bytes, expect_int, expect_optional_int
from ._keys import (
    KEY_LEN,
    SIGNATURE_LEN,
    ed25519_public,
    ed25519_sign,
    ed25519_verify,
    x25519_public,
)
from .errors import DecodeError, ExpiredError, PickleError
from .kdf import blake2b
from .sealed import Rng

__all__ = [
    "Account",
    "PublicIdentity",
    "Device",
    "DeviceCertificate",
    "safety_number",
    "verify_signature",
    "fingerprint_of",
    "ACCOUNT_PICKLE_KIND",
    "DEVICE_PICKLE_KIND",
    "IDENTITY_DH_LABEL",
    "DEVICE_CERT_LABEL",
    "MAX_CLOCK_SKEW_MS",
]

ACCOUNT_PICKLE_KIND = "p2pchat/account"
DEVICE_PICKLE_KIND = "p2pchat/device"
IDENTITY_DH_LABEL = "p2pchat/identity-dh/v1"
DEVICE_CERT_LABEL = "p2pchat/device-cert/v1"

#: A certificate created this far in the future is still accepted: peers' clocks differ.
MAX_CLOCK_SKEW_MS = 10 * 60 * 1000

_FINGERPRINT_PERSON = b"p2pchat-fpr-v1"
_SAFETY_PERSON = b"p2pchat-safety1"
_MAX_IDENTITY_SIZE = 256
_MAX_CERT_SIZE = 256


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify a detached Ed25519 signature; raise :class:`SignatureError` if it is bad."""
    ed25519_verify(public_key, message, signature)


def fingerprint_of(account_key: bytes) -> str:
    """The human-checkable fingerprint of an account key.

    160 bits of BLAKE2b (personalised), base32, in eight groups of four characters:
    short enough to read aloud, long enough that finding a second key with the same
    fingerprint costs about 2**160 work.
    """
    if len(account_key) != KEY_LEN:
        raise ValueError("an account key is 32 bytes")
    digest = blake2b(account_key, size=20, person=_FINGERPRINT_PERSON)
    text = base64.b32encode(digest).decode("ascii")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def safety_number(account_key_a: bytes, account_key_b: bytes) -> str:
    """The number two people compare to check that they see each other's real keys.

    It depends on both account keys but not on their order, so both sides compute the
    same 60 digits (twelve groups of five) and can compare them out loud.
    """
    if len(account_key_a) != KEY_LEN or len(account_key_b) != KEY_LEN:
        raise ValueError("an account key is 32 bytes")
    low, high = sorted((account_key_a, account_key_b))
    digest = blake2b(low + high, size=60, person=_SAFETY_PERSON)
    groups = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 60, 5))
    return " ".join(f"{group:05d}" for group in groups)


def _identity_dh_message(account_key: bytes, identity_dh_key: bytes) -> bytes:
    return cbor.encode([IDENTITY_DH_LABEL, account_key, identity_dh_key])


@dataclass(frozen=True)
class PublicIdentity:
    """The public half of an :class:`Account`: what peers store, publish and verify."""

    account_key: bytes
    identity_dh_key: bytes
    identity_dh_signature: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.account_key)

    def verify(self) -> None:
        """Raise :class:`SignatureError` unless the account key certifies the DH key."""
        ed25519_verify(
            self.account_key,
            _identity_dh_message(self.account_key, self.identity_dh_key),
            self.identity_dh_signature,
        )

    def encode(self) -> bytes:
        """``[account_key(32), identity_dh_key(32), identity_dh_signature(64)]`` as CBOR."""
        return cbor.encode([self.account_key, self.identity_dh_key, self.identity_dh_signature])

    @classmethod
    def decode(cls, data: bytes) -> PublicIdentity:
        """Parse strictly (:class:`DecodeError`); does *not* verify: call :meth:`verify`."""
        items = decode_array(data, length=3, max_size=_MAX_IDENTITY_SIZE, what="public identity")
        return cls(
            account_key=expect_bytes(items[0], length=KEY_LEN, what="account key"),
            identity_dh_key=expect_bytes(items[1], length=KEY_LEN, what="identity DH key"),
            identity_dh_signature=expect_bytes(
                items[2], length=SIGNATURE_LEN, what="identity DH signature"
            ),
        )


def _device_cert_message(
    account_key: bytes, device_key: bytes, created: int, expires: int | None
) -> bytes:
    return cbor.encode([DEVICE_CERT_LABEL, account_key, device_key, created, expires])


@dataclass(frozen=True)
class DeviceCertificate:
    """The account's signature binding a device key to it for a period of time."""

    account_key: bytes
    device_key: bytes
    created: int
    expires: int | None
    signature: bytes

    def signed_message(self) -> bytes:
        """The exact bytes the account key signs."""
        return _device_cert_message(self.account_key, self.device_key, self.created, self.expires)

    def verify(self, *, now: int) -> None:
        """Check the signature, then validity at ``now``.

        Raises :class:`SignatureError` for a bad signature and :class:`ExpiredError` when
        ``now`` is at or past ``expires`` or before ``created`` by more than the allowed
        clock skew. The caller still has to check that ``account_key`` is the account it
        expects.
        """
        ed25519_verify(self.account_key, self.signed_message(), self.signature)
        if self.expires is not None and now >= self.expires:
            raise ExpiredError("device certificate has expired")
        if self.created > now + MAX_CLOCK_SKEW_MS:
            raise ExpiredError("device certificate is not valid yet")

    def encode(self) -> bytes:
        """``[account_key, device_key, created, expires|null, signature]`` as CBOR."""
        return cbor.encode(
            [self.account_key, self.device_key, self.created, self.expires, self.signature]
        )

    @classmethod
    def decode(cls, data: bytes) -> DeviceCertificate:
        """Parse strictly (:class:`DecodeError`); does *not* verify the signature."""
        items = decode_array(data, length=5, max_size=_MAX_CERT_SIZE, what="device certificate")
        created = expect_int(items[2], what="created")
        expires = expect_optional_int(items[3], what="expires")
        if expires is not None and expires <= created:
            raise DecodeError("range", "a certificate must expire after it is created")
        return cls(
            account_key=expect_bytes(items[0], length=KEY_LEN, what="account key"),
            device_key=expect_bytes(items[1], length=KEY_LEN, what="device key"),
            created=created,
            expires=expires,
            signature=expect_bytes(items[4], length=SIGNATURE_LEN, what="signature"),
        )


class Account:
    """An account's long-term secret keys. ``repr`` shows only the fingerprint."""

    __slots__ = ("_dh_secret", "_public", "_signing_seed")

    def __init__(self, *, signing_seed: bytes, identity_dh_secret: bytes) -> None:
        if len(signing_seed) != KEY_LEN or len(identity_dh_secret) != KEY_LEN:
            raise ValueError("account secrets are 32 bytes each")
        self._signing_seed = bytes(signing_seed)
        self._dh_secret = bytes(identity_dh_secret)
        account_key = ed25519_public(self._signing_seed)
        identity_dh_key = x25519_public(self._dh_secret)
        self._public = PublicIdentity(
            account_key=account_key,
            identity_dh_key=identity_dh_key,
            identity_dh_signature=ed25519_sign(
                self._signing_seed, _identity_dh_message(account_key, identity_dh_key)
            ),
        )

    @classmethod
    def generate(cls, rng: Rng) -> Account:
        return cls(signing_seed=rng(KEY_LEN), identity_dh_secret=rng(KEY_LEN))

    @property
    def account_key(self) -> bytes:
        return self._public.account_key

    @property
    def identity_dh_key(self) -> bytes:
        return self._public.identity_dh_key

    @property
    def identity_dh_signature(self) -> bytes:
        return self._public.identity_dh_signature

    @property
    def fingerprint(self) -> str:
        return self._public.fingerprint

    def public(self) -> PublicIdentity:
        return self._public

    def sign(self, message: bytes) -> bytes:
        """Sign with the account key. Callers put a domain label inside ``message``."""
        return ed25519_sign(self._signing_seed, message)

    def certify_device(
        self, device_key: bytes, *, now: int, expires: int | None = None
    ) -> DeviceCertificate:
        """Sign a certificate for ``device_key`` valid from ``now`` until ``expires``."""
        if len(device_key) != KEY_LEN:
            raise ValueError("a device key is 32 bytes")
        if expires is not None and expires <= now:
            raise ValueError("a certificate must expire after it is created")
        message = _device_cert_message(self.account_key, device_key, now, expires)
        return DeviceCertificate(
            account_key=self.account_key,
            device_key=bytes(device_key),
            created=now,
            expires=expires,
            signature=self.sign(message),
        )

    def identity_dh_secret(self) -> bytes:
        """The X25519 identity secret, for X3DH inside this package. SECRET."""
        return self._dh_secret

    def to_bytes(self) -> bytes:
        """Unencrypted versioned pickle; use :func:`sealed.seal` before storing it."""
        return sealed.pack(ACCOUNT_PICKLE_KIND, 1, [self._signing_seed, self._dh_secret])

    @classmethod
    def from_bytes(cls, data: bytes) -> Account:
        version, body = sealed.unpack(data, ACCOUNT_PICKLE_KIND)
        if version != 1:
            raise PickleError(f"unknown account pickle version {version}")
        if (
            not isinstance(body, list)
            or len(body) != 2
            or not all(isinstance(item, bytes) and len(item) == KEY_LEN for item in body)
        ):
            raise PickleError("malformed account pickle")
        return cls(signing_seed=body[0], identity_dh_secret=body[1])

    def __repr__(self) -> str:
        return f"Account(fingerprint={self.fingerprint!r})"


class Device:
    """A device's Ed25519 key and its certificate. ``repr`` shows only public data."""

    __slots__ = ("_certificate", "_seed")

    def __init__(self, *, signing_seed: bytes, certificate: DeviceCertificate) -> None:
        if len(signing_seed) != KEY_LEN:
            raise ValueError("a device seed is 32 bytes")
        if ed25519_public(signing_seed) != certificate.device_key:
            raise ValueError("the certificate is for another device key")
        self._seed = bytes(signing_seed)
        self._certificate = certificate

    @classmethod
    def generate(
        cls, account: Account, rng: Rng, *, now: int, expires: int | None = None
    ) -> Device:
        seed = rng(KEY_LEN)
        certificate = account.certify_device(ed25519_public(seed), now=now, expires=expires)
        return cls(signing_seed=seed, certificate=certificate)

    @property
    def public_key(self) -> bytes:
        return self._certificate.device_key

    @property
    def certificate(self) -> DeviceCertificate:
        return self._certificate

    def with_certificate(self, certificate: DeviceCertificate) -> Device:
        """The same device key under a renewed certificate."""
        return Device(signing_seed=self._seed, certificate=certificate)

    def signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed (the libp2p host key). SECRET: never log it."""
        return self._seed

    def sign(self, message: bytes) -> bytes:
        return ed25519_sign(self._seed, message)

    def to_bytes(self) -> bytes:
        """Unencrypted versioned pickle; use :func:`sealed.seal` before storing it."""
        return sealed.pack(DEVICE_PICKLE_KIND, 1, [self._seed, self._certificate.encode()])

    @classmethod
    def from_bytes(cls, data: bytes) -> Device:
        version, body = sealed.unpack(data, DEVICE_PICKLE_KIND)
        if version != 1:
            raise PickleError(f"unknown device pickle version {version}")
        if not isinstance(body, list) or len(body) != 2 or not isinstance(body[1], bytes):
            raise PickleError("malformed device pickle")
        try:
            certificate = DeviceCertificate.decode(body[1])
            return cls(
                signing_seed=expect_bytes(body[0], length=KEY_LEN, what="seed"),
                certificate=certificate,
            )
        except (DecodeError, ValueError):
            raise PickleError("malformed device pickle") from None

    def __repr__(self) -> str:
        return f"Device(public_key={self.public_key.hex()!r})"
