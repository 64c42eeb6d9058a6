"""Key derivation and MAC primitives from the standard library (RFC 2104, RFC 5869).

Nothing here is hand-rolled cryptography: HMAC-SHA256 is :mod:`hmac`, HKDF is the
two-step construction of RFC 5869 written over it, BLAKE2b is :mod:`hashlib`.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["hmac_sha256", "hkdf_sha256", "blake2b", "constant_time_equal"]

_HASH_LEN = 32


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869). An empty ``salt`` means 32 zero bytes, as the RFC says."""
    if not 0 < length <= 255 * _HASH_LEN:
        raise ValueError("HKDF output length out of range")
    prk = hmac_sha256(salt or bytes(_HASH_LEN), ikm)
    blocks = []
    block = b""
    for counter in range(1, -(-length // _HASH_LEN) + 1):
        block = hmac_sha256(prk, block + info + bytes([counter]))
        blocks.append(block)
    return b"".join(blocks)[:length]


def blake2b(data: bytes, *, size: int = 32, person: bytes = b"", key: bytes = b"") -> bytes:
    """BLAKE2b with an optional 16-byte personalisation for domain separation."""
    return hashlib.blake2b(data, digest_size=size, person=person, key=key).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
