"""Versioned pickles and their encrypted ("sealed") form.

Every stateful object of this package serialises to a *pickle*: the canonical CBOR
array ``[kind, version, body]`` where ``kind`` is a text string naming the object
(``"p2pchat/session"``), ``version`` a small integer and ``body`` the object's state.
Loading dispatches on ``version``, so older pickles keep loading after the format moves.

A sealed pickle is ``["p2pchat/sealed", 1, nonce(24), ciphertext]``, the ciphertext
being XChaCha20-Poly1305 over the pickle, with the kind string as associated data so
a sealed session can never be opened as, say, a group session. The key is 32 bytes
chosen by the caller (the node derives it from its keystore).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nacl import bindings
from nacl.exceptions import CryptoError as _NaclCryptoError

from . import cbor
from .errors import DecodeError, PickleError

__all__ = ["Rng", "pack", "unpack", "seal", "unseal", "SEALED_KIND", "MAX_PICKLE_SIZE"]

#: Randomness is always passed in: ``rng(n)`` returns ``n`` uniformly random bytes.
Rng = Callable[[int], bytes]

SEALED_KIND = "p2pchat/sealed"
MAX_PICKLE_SIZE = 16 * 1024 * 1024
_NONCE_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KEY_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES


def pack(kind: str, version: int, body: cbor.Value) -> bytes:
    return cbor.encode([kind, version, body])


def unpack(data: bytes, kind: str) -> tuple[int, Any]:
    """Return ``(version, body)`` of a pickle of ``kind``; raise :class:`PickleError`."""
    try:
        value = cbor.decode(data, max_size=MAX_PICKLE_SIZE)
    except DecodeError as exc:
        raise PickleError(f"corrupt pickle ({exc.reason})") from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or isinstance(value[1], bool)
        or not isinstance(value[1], int)
    ):
        raise PickleError("not a pickle")
    if value[0] != kind:
        raise PickleError(f"expected a {kind!r} pickle, got {value[0]!r}")
    return value[1], value[2]


def seal(pickle: bytes, key: bytes, rng: Rng) -> bytes:
    """Encrypt a pickle (from :func:`pack`) under a 32-byte key."""
    if len(key) != _KEY_LEN:
        raise ValueError("a sealing key is 32 bytes")
    kind = _kind_of(pickle)
    nonce = rng(_NONCE_LEN)
    ciphertext = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        pickle, kind.encode(), nonce, key
    )
    return pack(SEALED_KIND, 1, [kind, nonce, ciphertext])


def unseal(blob: bytes, key: bytes, kind: str) -> bytes:
    """Decrypt a sealed pickle of ``kind``; a wrong key or any tampering raises PickleError."""
    version, body = unpack(blob, SEALED_KIND)
    if version != 1:
        raise PickleError(f"unknown sealed-pickle version {version}")
    if (
        not isinstance(body, list)
        or len(body) != 3
        or not isinstance(body[1], bytes)
        or not isinstance(body[2], bytes)
        or len(body[1]) != _NONCE_LEN
    ):
        raise PickleError("malformed sealed pickle")
    if body[0] != kind:
        raise PickleError(f"expected a sealed {kind!r}, got {body[0]!r}")
    if len(key) != _KEY_LEN:
        raise PickleError("a sealing key is 32 bytes")
    try:
        return bytes(
            bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                body[2], kind.encode(), body[1], key
            )
        )
    except _NaclCryptoError:
        raise PickleError("wrong key or corrupted sealed pickle") from None


def _kind_of(pickle: bytes) -> str:
    value = cbor.decode(pickle, max_size=MAX_PICKLE_SIZE)
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise PickleError("not a pickle")
    return value[0]
