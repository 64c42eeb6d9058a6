"""Attachment encryption: a file sealed chunk by chunk under a fresh per-file key.

Like Signal attachments, the bytes of a file never travel in a message: the sender
encrypts them under a random 32-byte key, and the key (with the blob's id, a hash over
the ciphertext) travels inside the end-to-end encrypted message. Holders of the blob
(the sender, group members, mailboxes) store and serve ciphertext they cannot read.

Each chunk ``i`` of ``CHUNK_SIZE`` plaintext bytes (the last one shorter, possibly
empty) is sealed with ChaCha20-Poly1305 (IETF): nonce = ``i`` as 12 big-endian bytes
(unique, since the key is used for one file only), associated data =
``"p2pchat-blob-v1" || i (8 bytes, big-endian) || last (1 byte)``. A chunk's hash is
BLAKE2b-256 with personalisation ``"p2pchat-chunk"`` of its ciphertext. No I/O here:
the key comes from the caller's ``rng``.
"""

from __future__ import annotations

from nacl import bindings
from nacl.exceptions import CryptoError as _NaclCryptoError

from .errors import AuthenticationError
from .kdf import blake2b
from .sealed import Rng

__all__ = [
    "CHUNK_SIZE",
    "KEY_LEN",
    "TAG_LEN",
    "new_blob_key",
    "seal_chunk",
    "open_chunk",
    "chunk_hash",
]

#: Plaintext bytes per chunk (the last chunk of a file may be shorter, even empty).
CHUNK_SIZE = 256 * 1024
KEY_LEN = 32
#: Bytes a sealed chunk has beyond its plaintext (the Poly1305 tag).
TAG_LEN = 16
_AD = b"p2pchat-blob-v1"


def new_blob_key(rng: Rng) -> bytes:
    """A fresh per-file key from ``rng(n) -> bytes``."""
    key = rng(KEY_LEN)
    if len(key) != KEY_LEN:
        raise ValueError("rng must return 32 bytes")
    return key


def _nonce_ad(index: int, last: bool) -> tuple[bytes, bytes]:
    if not 0 <= index < 2**63:
        raise ValueError("chunk index out of range")
    return index.to_bytes(12, "big"), _AD + index.to_bytes(8, "big") + bytes([1 if last else 0])


def seal_chunk(key: bytes, index: int, plaintext: bytes, *, last: bool) -> bytes:
    """Chunk ``index`` of a file sealed under its per-file ``key`` (tag appended)."""
    if len(key) != KEY_LEN:
        raise ValueError("a blob key is 32 bytes")
    if len(plaintext) > CHUNK_SIZE:
        raise ValueError("a chunk holds at most CHUNK_SIZE bytes")
    nonce, ad = _nonce_ad(index, last)
    return bytes(bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key))


def open_chunk(key: bytes, index: int, ciphertext: bytes, *, last: bool) -> bytes:
    """Open a sealed chunk, or raise :class:`AuthenticationError` (one opaque failure)."""
    if len(key) != KEY_LEN or not TAG_LEN <= len(ciphertext) <= CHUNK_SIZE + TAG_LEN:
        raise AuthenticationError("malformed chunk")
    nonce, ad = _nonce_ad(index, last)
    try:
        return bytes(bindings.crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key))
    except _NaclCryptoError:
        raise AuthenticationError("authentication failed") from None


def chunk_hash(ciphertext: bytes) -> bytes:
    """BLAKE2b-256 of a sealed chunk, personalised ``p2pchat-chunk``."""
    return blake2b(ciphertext, size=32, person=b"p2pchat-chunk")
