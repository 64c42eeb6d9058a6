"""Peer ids from Ed25519 device keys, without importing py-libp2p (~1 s to import).

A libp2p peer id for an Ed25519 key is the base58btc encoding of an *identity*
multihash over the protobuf-encoded public key (``KeyType=Ed25519``, ``Data=key``):
short enough to inline, so the CLI and the memory network can name peers exactly as
the libp2p host will. ``tests/integration`` checks the result against py-libp2p.
"""

from __future__ import annotations

import base58
from nacl.signing import SigningKey

__all__ = ["public_key_to_peer_id", "seed_to_peer_id"]

# protobuf: field 1 (Type, varint) = 1 (Ed25519); field 2 (Data, bytes), length 32.
_ED25519_PB_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])
# multihash: code 0x00 (identity), length 36.
_IDENTITY_MULTIHASH_PREFIX = bytes([0x00, 0x24])


def public_key_to_peer_id(public_key: bytes) -> str:
    """The ``12D3KooW…`` peer id of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    digest = _IDENTITY_MULTIHASH_PREFIX + _ED25519_PB_PREFIX + public_key
    return base58.b58encode(digest).decode("ascii")


def seed_to_peer_id(seed: bytes) -> str:
    """The peer id of the device key whose 32-byte Ed25519 seed is ``seed``."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed has 32 bytes")
    return public_key_to_peer_id(bytes(SigningKey(seed).verify_key))
