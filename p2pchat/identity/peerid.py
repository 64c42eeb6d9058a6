"""The libp2p peer id of an Ed25519 key, computed without importing libp2p.

``import libp2p`` costs about a second, and commands such as ``p2pchat keys show`` must
print the peer id a node *will* have without paying for it. The computation is small and
fully specified by the libp2p peer-id spec, so we do it here:

1. wrap the key in the libp2p ``PublicKey`` protobuf message
   ``{Type = Ed25519 (1), Data = <32 key bytes>}``: field 1 is a varint (tag ``0x08``),
   field 2 length-delimited bytes (tag ``0x12``); deterministic field order;
2. the serialised key is 36 bytes, at most 42, so the multihash is the *identity*
   multihash ``0x00 <length> <bytes>`` rather than SHA-256;
3. the text form is base58btc of the multihash without a multibase prefix, which is
   why every Ed25519 peer id starts with ``12D3KooW``.

``tests/unit/test_peerid.py`` checks this against libp2p's own ``ID.from_pubkey``.
"""

from __future__ import annotations

import functools

import base58

__all__ = ["ED25519_PUBLIC_KEY_LEN", "peer_id_bytes", "peer_id_from_ed25519", "peer_id_to_key"]

ED25519_PUBLIC_KEY_LEN = 32

_KEY_TYPE_ED25519 = 1
_PROTOBUF_TAG_TYPE = 0x08  # field 1, wire type 0 (varint)
_PROTOBUF_TAG_DATA = 0x12  # field 2, wire type 2 (length-delimited)
_MULTIHASH_IDENTITY = 0x00
_PROTOBUF_KEY_PREFIX = bytes(
    [_PROTOBUF_TAG_TYPE, _KEY_TYPE_ED25519, _PROTOBUF_TAG_DATA, ED25519_PUBLIC_KEY_LEN]
)
_SERIALISED_KEY_LEN = len(_PROTOBUF_KEY_PREFIX) + ED25519_PUBLIC_KEY_LEN
_MULTIHASH_PREFIX = bytes([_MULTIHASH_IDENTITY, _SERIALISED_KEY_LEN])


def peer_id_bytes(public_key: bytes) -> bytes:
    """The binary peer id (an identity multihash) of a 32-byte Ed25519 public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_LEN:
        raise ValueError(f"an Ed25519 public key is {ED25519_PUBLIC_KEY_LEN} bytes")
    return _MULTIHASH_PREFIX + _PROTOBUF_KEY_PREFIX + bytes(public_key)


def peer_id_from_ed25519(public_key: bytes) -> str:
    """The text peer id (``12D3KooW...``) of a 32-byte Ed25519 public key."""
    return _peer_id_text(bytes(public_key))


@functools.lru_cache(maxsize=4096)
def _peer_id_text(public_key: bytes) -> str:
    """Cached (bounded): group services map every member key to its peer id per
    operation, and base58 of 38 bytes is ~60 µs of big-integer arithmetic."""
    encoded: bytes = base58.b58encode(peer_id_bytes(public_key))
    return encoded.decode("ascii")


def peer_id_to_key(peer_id: str) -> bytes:
    """The Ed25519 public key inside a text peer id; the inverse of :func:`peer_id_from_ed25519`.

    Raises :class:`ValueError` for anything that is not an Ed25519 identity-multihash peer
    id (RSA and secp256k1 ids hash their key, so it cannot be recovered from them).
    """
    try:
        raw: bytes = base58.b58decode(peer_id.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("not a base58btc peer id") from None
    prefix = _MULTIHASH_PREFIX + _PROTOBUF_KEY_PREFIX
    if len(raw) != len(prefix) + ED25519_PUBLIC_KEY_LEN or not raw.startswith(prefix):
        raise ValueError("not the peer id of an Ed25519 key")
    return raw[len(prefix) :]
