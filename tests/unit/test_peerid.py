"""Our libp2p-free peer id equals libp2p's own, and parses back to the key."""

from __future__ import annotations

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair
from libp2p.peer.id import ID

from p2pchat.identity.peerid import peer_id_bytes, peer_id_from_ed25519, peer_id_to_key


@given(seed=st.binary(min_size=32, max_size=32))
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    public_key = create_new_key_pair(seed).public_key
    expected = ID.from_pubkey(public_key)
    ours = peer_id_from_ed25519(public_key.to_bytes())
    assert ours == expected.to_base58()
    assert peer_id_bytes(public_key.to_bytes()) == expected.to_bytes()
    assert ours.startswith("12D3KooW")


@given(key=st.binary(min_size=32, max_size=32))
def test_peer_id_parses_back_to_the_key(key: bytes) -> None:
    assert peer_id_to_key(peer_id_from_ed25519(key)) == key


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_rejects_keys_of_the_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        peer_id_from_ed25519(bytes(length))


def test_rejects_peer_ids_that_do_not_carry_an_ed25519_key() -> None:
    secp_id = ID.from_pubkey(create_secp256k1_key_pair(b"\x07" * 32).public_key).to_base58()
    valid = peer_id_from_ed25519(bytes(range(32)))
    truncated = base58.b58encode(base58.b58decode(valid)[:-1]).decode()
    for bad in (secp_id, truncated, "not base58 0OIl", "", "12D3KooW\u00e9"):
        with pytest.raises(ValueError, match="peer id"):
            peer_id_to_key(bad)
