"""Signed prekeys and the prekey bundle a node publishes in the DHT.

A bundle tells an initiator everything it needs to start a session while the responder
is offline: the responder's :class:`PublicIdentity`, the certificate of the device that
hosts it, and one signed X25519 prekey with an id and an expiry. The whole bundle is
signed by the account key under the label ``"p2pchat/prekey-bundle/v1"``, and carries a
sequence number so that a DHT record older than one already seen is refused
(:class:`StaleError`).

There are deliberately no one-time prekeys: the DHT cannot hand each one out exactly
once. Replays of initial messages are stopped by :class:`~p2pchat_crypto.replay.ReplayCache`
instead, and the responder's first reply performs a DH ratchet step.

The prekey carries a *type* string. Only ``"x25519"`` is accepted today; the field is the
extension point for a post-quantum (PQXDH) prekey later, and a bundle with any other
type fails verification instead of being misused as an X25519 key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from . import cbor, sealed
from ._fields import (
    decode_array,
    expect_array,
    expect_bytes,
    expect_int,
)
from ._keys import KEY_LEN, SIGNATURE_LEN, ed25519_verify, x25519_dh, x25519_public
from .errors import (
    DecodeError,
    ExpiredError,
    PickleError,
    SignatureError,
    StaleError,
    UnknownSessionError,
    VerificationError,
)
from .identity import Account, DeviceCertificate, PublicIdentity
from .sealed import Rng

__all__ = [
    "SignedPrekey",
    "PrekeyBundle",
    "find_prekey",
    "PREKEY_TYPE_X25519",
    "PREKEY_BUNDLE_LABEL",
    "SIGNED_PREKEY_PICKLE_KIND",
    "MAX_BUNDLE_SIZE",
]

PREKEY_TYPE_X25519 = "x25519"
PREKEY_BUNDLE_LABEL = "p2pchat/prekey-bundle/v1"
SIGNED_PREKEY_PICKLE_KIND = "p2pchat/signed-prekey"
MAX_BUNDLE_SIZE = 4096
_MAX_PREKEY_LEN = 2048
_MAX_TYPE_LEN = 32
# Any scalar works to detect a low-order point: X25519 with it gives all zeroes exactly then.
_PROBE_SCALAR = bytes([9]) + bytes(31)


class SignedPrekey:
    """The secret half of a published prekey, kept by the node until it expires."""

    __slots__ = ("_created", "_expires", "_prekey_id", "_public", "_secret")

    def __init__(self, *, prekey_id: int, secret: bytes, created: int, expires: int) -> None:
        if len(secret) != KEY_LEN:
            raise ValueError("a prekey secret is 32 bytes")
        if not 0 <= prekey_id < 2**32:
            raise ValueError("a prekey id is a 32-bit unsigned integer")
        if expires <= created:
            raise ValueError("a prekey must expire after it is created")
        self._prekey_id = prekey_id
        self._secret = bytes(secret)
        self._public = x25519_public(self._secret)
        self._created = created
        self._expires = expires

    @classmethod
    def generate(cls, rng: Rng, *, prekey_id: int, now: int, expires: int) -> SignedPrekey:
        return cls(prekey_id=prekey_id, secret=rng(KEY_LEN), created=now, expires=expires)

    @property
    def prekey_id(self) -> int:
        return self._prekey_id

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def created(self) -> int:
        return self._created

    @property
    def expires(self) -> int:
        return self._expires

    def is_expired(self, *, now: int) -> bool:
        return now >= self._expires

    def secret_key(self) -> bytes:
        """The X25519 secret, for X3DH inside this package. SECRET."""
        return self._secret

    def to_bytes(self) -> bytes:
        """Versioned pickle ``[prekey_id, secret, created, expires]`` (unencrypted)."""
        body = [self._prekey_id, self._secret, self._created, self._expires]
        return sealed.pack(SIGNED_PREKEY_PICKLE_KIND, 1, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPrekey:
        version, body = sealed.unpack(data, SIGNED_PREKEY_PICKLE_KIND)
        if version != 1:
            raise PickleError(f"unknown signed-prekey pickle version {version}")
        try:
            items = expect_array(body, length=4, what="signed prekey")
            return cls(
                prekey_id=expect_int(items[0], what="prekey id"),
                secret=expect_bytes(items[1], length=KEY_LEN, what="secret"),
                created=expect_int(items[2], what="created"),
                expires=expect_int(items[3], what="expires"),
            )
        except (DecodeError, ValueError):
            raise PickleError("malformed signed-prekey pickle") from None

    def __repr__(self) -> str:
        return f"SignedPrekey(prekey_id={self._prekey_id}, expires={self._expires})"


def find_prekey(prekeys: SignedPrekey | Mapping[int, SignedPrekey], prekey_id: int) -> SignedPrekey:
    """The prekey with ``prekey_id`` or :class:`UnknownSessionError`."""
    if isinstance(prekeys, SignedPrekey):
        found = prekeys if prekeys.prekey_id == prekey_id else None
    else:
        found = prekeys.get(prekey_id)
    if found is None:
        raise UnknownSessionError("no prekey with this id")
    return found


def _identity_array(identity: PublicIdentity) -> list[bytes]:
    return [identity.account_key, identity.identity_dh_key, identity.identity_dh_signature]


def _cert_array(cert: DeviceCertificate) -> list[object]:
    return [cert.account_key, cert.device_key, cert.created, cert.expires, cert.signature]


@dataclass(frozen=True)
class PrekeyBundle:
    """Everything an initiator needs for X3DH, signed by the responder's account key."""

    identity: PublicIdentity
    device_certificate: DeviceCertificate
    prekey_type: str
    prekey_id: int
    prekey: bytes
    prekey_expires: int
    sequence: int
    signature: bytes

    @classmethod
    def create(
        cls,
        account: Account,
        device_certificate: DeviceCertificate,
        prekey: SignedPrekey,
        *,
        sequence: int,
    ) -> PrekeyBundle:
        """Sign a bundle for ``prekey``. ``sequence`` must grow with every new bundle."""
        if device_certificate.account_key != account.account_key:
            raise ValueError("the device certificate belongs to another account")
        unsigned = cls(
            identity=account.public(),
            device_certificate=device_certificate,
            prekey_type=PREKEY_TYPE_X25519,
            prekey_id=prekey.prekey_id,
            prekey=prekey.public_key,
            prekey_expires=prekey.expires,
            sequence=sequence,
            signature=b"",
        )
        return dataclasses.replace(unsigned, signature=account.sign(unsigned.signed_message()))

    def _body(self) -> list[object]:
        return [
            _identity_array(self.identity),
            _cert_array(self.device_certificate),
            [self.prekey_type, self.prekey_id, self.prekey, self.prekey_expires],
            self.sequence,
        ]

    def signed_message(self) -> bytes:
        """The exact bytes the account key signs: ``[label, identity, cert, prekey, seq]``."""
        return cbor.encode([PREKEY_BUNDLE_LABEL, *self._body()])

    def encode(self) -> bytes:
        """``[identity, cert, [type, id, key, expires], sequence, signature]`` as CBOR."""
        return cbor.encode([*self._body(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> PrekeyBundle:
        """Parse strictly (:class:`DecodeError`); does *not* verify: call :meth:`verify`."""
        items = decode_array(data, length=5, max_size=MAX_BUNDLE_SIZE, what="prekey bundle")
        identity = expect_array(items[0], length=3, what="identity")
        prekey = expect_array(items[2], length=4, what="prekey")
        prekey_type = prekey[0]
        if not isinstance(prekey_type, str) or not 0 < len(prekey_type) <= _MAX_TYPE_LEN:
            raise DecodeError("type", "prekey type must be a short text string")
        prekey_bytes = expect_bytes(prekey[2], what="prekey")
        if len(prekey_bytes) > _MAX_PREKEY_LEN:
            raise DecodeError("length", "prekey too long")
        return cls(
            identity=PublicIdentity.decode(cbor.encode(identity)),
            device_certificate=DeviceCertificate.decode(cbor.encode(items[1])),
            prekey_type=prekey_type,
            prekey_id=expect_int(prekey[1], what="prekey id"),
            prekey=prekey_bytes,
            prekey_expires=expect_int(prekey[3], what="prekey expiry"),
            sequence=expect_int(items[3], what="sequence"),
            signature=expect_bytes(items[4], length=SIGNATURE_LEN, what="signature"),
        )

    def verify(
        self, *, now: int, account_key: bytes | None = None, min_sequence: int | None = None
    ) -> None:
        """Check every signature, the key type, expiry and (optionally) who and how new.

        * :class:`SignatureError`: the DH key, device certificate or bundle signature is
          not from the bundle's account key;
        * :class:`VerificationError`: the prekey is not an X25519 key of full order, or
          the bundle belongs to another account than ``account_key``;
        * :class:`ExpiredError`: the prekey or the device certificate has expired;
        * :class:`StaleError`: ``sequence`` is older than ``min_sequence``.
        """
        self.identity.verify()
        if self.device_certificate.account_key != self.identity.account_key:
            raise SignatureError("device certificate is signed by another account")
        ed25519_verify(self.identity.account_key, self.signed_message(), self.signature)
        if account_key is not None and account_key != self.identity.account_key:
            raise VerificationError("bundle belongs to another account")
        if self.prekey_type != PREKEY_TYPE_X25519 or len(self.prekey) != KEY_LEN:
            raise VerificationError("unsupported prekey type")
        x25519_dh(_PROBE_SCALAR, self.prekey)
        self.device_certificate.verify(now=now)
        if now >= self.prekey_expires:
            raise ExpiredError("signed prekey has expired")
        if min_sequence is not None and self.sequence < min_sequence:
            raise StaleError("an older bundle than one already accepted")
