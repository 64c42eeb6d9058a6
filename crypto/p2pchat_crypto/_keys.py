"""Thin, typed wrappers over the libsodium primitives this package uses.

Keeping every call into :mod:`nacl.bindings` in one place means the rest of the package
speaks plain ``bytes`` and our own error classes: libsodium's exceptions never escape,
and the one failure mode of X25519 that matters (a low-order peer key giving an all-zero
shared secret) is turned into a :class:`VerificationError` instead of a ``RuntimeError``.
"""

from __future__ import annotations

from nacl import bindings
from nacl.exceptions import BadSignatureError
from nacl.exceptions import CryptoError as _NaclCryptoError

from .errors import AuthenticationError, SignatureError, VerificationError

__all__ = [
    "KEY_LEN",
    "SIGNATURE_LEN",
    "NONCE_LEN",
    "TAG_LEN",
    "ed25519_public",
    "ed25519_sign",
    "ed25519_verify",
    "x25519_public",
    "x25519_dh",
    "aead_encrypt",
    "aead_decrypt",
]

KEY_LEN = 32
SIGNATURE_LEN = bindings.crypto_sign_BYTES
NONCE_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
TAG_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES


def _keypair(seed: bytes) -> tuple[bytes, bytes]:
    if len(seed) != KEY_LEN:
        raise ValueError("an Ed25519 seed is 32 bytes")
    public, secret = bindings.crypto_sign_seed_keypair(seed)
    return bytes(public), bytes(secret)


def ed25519_public(seed: bytes) -> bytes:
    """The Ed25519 public key of a 32-byte seed."""
    return _keypair(seed)[0]


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """A detached 64-byte Ed25519 signature (deterministic, RFC 8032)."""
    signed = bindings.crypto_sign(message, _keypair(seed)[1])
    return bytes(signed[:SIGNATURE_LEN])


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
    if len(public_key) != KEY_LEN or len(signature) != SIGNATURE_LEN:
        raise SignatureError("malformed Ed25519 key or signature")
    try:
        bindings.crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, _NaclCryptoError, ValueError):
        raise SignatureError("signature does not verify") from None


def x25519_public(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret scalar."""
    if len(secret) != KEY_LEN:
        raise ValueError("an X25519 secret is 32 bytes")
    return bytes(bindings.crypto_scalarmult_base(secret))


def x25519_dh(secret: bytes, public: bytes) -> bytes:
    """X25519(secret, public). A peer key of low order is rejected, not silently used."""
    if len(secret) != KEY_LEN or len(public) != KEY_LEN:
        raise VerificationError("an X25519 key is 32 bytes")
    try:
        return bytes(bindings.crypto_scalarmult(secret, public))
    except (RuntimeError, _NaclCryptoError):
        # libsodium refuses an all-zero result: the public key has low order.
        raise VerificationError("X25519 public key of low order") from None


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF); returns ciphertext with its 16-byte tag appended."""
    return bytes(
        bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated_data, nonce, key)
    )


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Open an XChaCha20-Poly1305 ciphertext or raise :class:`AuthenticationError`."""
    if len(nonce) != NONCE_LEN or len(ciphertext) < TAG_LEN:
        raise AuthenticationError("malformed ciphertext")
    try:
        return bytes(
            bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, associated_data, nonce, key
            )
        )
    except _NaclCryptoError:
        raise AuthenticationError("authentication failed") from None
