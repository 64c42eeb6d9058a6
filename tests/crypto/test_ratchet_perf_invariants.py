"""The fast paths of the Double Ratchet are exact stand-ins for the slow, obvious code.

Each shortcut taken for speed (hand-framed CBOR, a specialised HKDF, Python padding, a
cached public ratchet key, a copy that shares the skipped-key map, an encrypt that needs
no copy) is checked here against the reference it replaces, including on hostile input.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from nacl import bindings
from nacl.exceptions import CryptoError

from p2pchat_crypto import _double_ratchet as dr
from p2pchat_crypto import cbor
from p2pchat_crypto._keys import x25519_public
from p2pchat_crypto.errors import AuthenticationError, DecodeError
from p2pchat_crypto.kdf import hkdf_sha256, hmac_sha256
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.x3dh import MAX_MESSAGE_SIZE
from tests.conftest import DeterministicRng
from tests.crypto.test_pairwise_setup import make_sessions

_KEYS = st.binary(min_size=32, max_size=32)


def _acknowledged_pair(seed: str = "perf") -> tuple[DeterministicRng, Session, Session]:
    pair, alice, bob = make_sessions(seed)
    assert alice.decrypt(bob.encrypt(b"ack", pair.rng)) == b"ack"
    return pair.rng, alice, bob


# -- derivations ------------------------------------------------------------------------


@given(_KEYS)
def test_message_cipher_keys_are_the_spec_hkdf(message_key: bytes) -> None:
    okm = hkdf_sha256(message_key, salt=b"", info=dr.MESSAGE_KEYS_INFO, length=32 + 24)
    assert dr.message_cipher_keys(message_key) == (okm[:32], okm[32:])


@given(_KEYS)
def test_chain_step_is_hmac_of_the_constants(chain_key: bytes) -> None:
    assert dr.kdf_ck(chain_key) == (
        hmac_sha256(chain_key, b"\x02"),
        hmac_sha256(chain_key, b"\x01"),
    )


def test_the_prepared_extract_is_not_consumed_by_use() -> None:
    first = dr.message_cipher_keys(b"\x01" * 32)
    dr.message_cipher_keys(b"\x02" * 32)
    assert dr.message_cipher_keys(b"\x01" * 32) == first


# -- padding ----------------------------------------------------------------------------


@given(st.binary(max_size=3 * dr.PAD_BLOCK))
def test_pad_is_sodium_pad_and_unpad_inverts_it(plaintext: bytes) -> None:
    padded = dr.pad(plaintext)
    assert padded == bindings.sodium_pad(plaintext, dr.PAD_BLOCK)
    assert dr.unpad(padded) == plaintext


def _sodium_unpad(padded: bytes) -> bytes | None:
    try:
        return bytes(bindings.sodium_unpad(padded, dr.PAD_BLOCK))
    except CryptoError:
        return None


def _our_unpad(padded: bytes) -> bytes | None:
    try:
        return dr.unpad(padded)
    except AuthenticationError:
        return None


@given(
    head=st.binary(max_size=2 * dr.PAD_BLOCK),
    marker=st.sampled_from([b"", b"\x80", b"\x01", b"\x80\x80", b"\x00\x80"]),
    zeros=st.integers(min_value=0, max_value=2 * dr.PAD_BLOCK),
)
@example(head=b"", marker=b"\x80", zeros=dr.PAD_BLOCK - 1)  # shortest valid
@example(head=b"", marker=b"\x80", zeros=dr.PAD_BLOCK)  # marker one byte too early
@example(head=b"x" * 300, marker=b"\x80", zeros=dr.PAD_BLOCK - 1)
@example(head=b"", marker=b"\x80", zeros=dr.PAD_BLOCK - 2)  # shorter than a block
@example(head=b"", marker=b"", zeros=dr.PAD_BLOCK)  # all zeros
def test_unpad_accepts_exactly_what_sodium_unpad_accepts(
    head: bytes, marker: bytes, zeros: int
) -> None:
    padded = head + marker + bytes(zeros)
    assert _our_unpad(padded) == _sodium_unpad(padded)


# -- wire framing -----------------------------------------------------------------------

_HEAD_BOUNDARIES = [0, 1, 23, 24, 255, 256, 272, 4368, 65535, 65536]


@pytest.mark.parametrize("length", _HEAD_BOUNDARIES)
def test_hand_framed_message_is_the_codec_encoding(length: int) -> None:
    header, body = bytes(range(80)), b"\xab" * length
    wire = dr.encode_ratchet_message(header, body)
    assert wire == cbor.encode([1, header, body])
    assert dr.split_ratchet_message(wire, max_size=MAX_MESSAGE_SIZE) == (header, body)
    assert dr.decode_ratchet_message(wire, max_size=MAX_MESSAGE_SIZE) == (header, body)


def test_split_respects_the_size_cap_and_leaves_it_to_the_strict_decoder() -> None:
    wire = dr.encode_ratchet_message(bytes(80), bytes(300))
    assert dr.split_ratchet_message(wire, max_size=len(wire) - 1) is None
    with pytest.raises(DecodeError) as caught:
        dr.decode_ratchet_message(wire, max_size=len(wire) - 1)
    assert caught.value.reason == "too-large"


def _strict(data: bytes) -> tuple[bytes, bytes] | None:
    try:
        return dr.decode_ratchet_message(data, max_size=MAX_MESSAGE_SIZE)
    except DecodeError:
        return None


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate", "append"]),
        st.integers(min_value=0, max_value=400),
        st.integers(min_value=0, max_value=255),
    ),
    max_size=3,
)


@given(body_length=st.sampled_from([0, 5, 23, 24, 200, 272]), edits=_EDITS)
@example(body_length=24, edits=[("flip", 84, 0x58 ^ 0x59)])  # 2-byte head for a short body
@example(body_length=5, edits=[("flip", 84, 0x45 ^ 0x58)])  # 1-byte head, not shortest
@example(body_length=0, edits=[("flip", 0, 0x83 ^ 0x84)])
@example(body_length=272, edits=[("truncate", 86, 0)])
def test_split_never_disagrees_with_the_strict_decoder(
    body_length: int, edits: list[tuple[str, int, int]]
) -> None:
    data = bytearray(dr.encode_ratchet_message(bytes(range(80)), b"\x5a" * body_length))
    for kind, position, value in edits:
        at = min(position, len(data))
        if kind == "flip" and at < len(data):
            data[at] ^= value or 1
        elif kind == "insert":
            data[at:at] = bytes([value])
        elif kind == "delete":
            del data[at : at + 1]
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data.append(value)
    wire = bytes(data)
    assert dr.split_ratchet_message(wire, max_size=MAX_MESSAGE_SIZE) == _strict(wire)


def test_split_declines_anything_but_bytes() -> None:
    wire = dr.encode_ratchet_message(bytes(80), b"body")
    buffer = bytearray(wire)  # a caller may pass any buffer at run time; typing says bytes
    assert dr.split_ratchet_message(buffer, max_size=MAX_MESSAGE_SIZE) is None  # type: ignore[arg-type]


# -- state ------------------------------------------------------------------------------


def _state() -> dr.RatchetState:
    rng = DeterministicRng("state")
    return dr.RatchetState.for_initiator(
        rng,
        root_key=rng(32),
        their_ratchet_key=x25519_public(rng(32)),
        hka=rng(32),
        nhkb=rng(32),
    )


def test_the_cached_public_key_follows_the_secret() -> None:
    state = _state()
    assert state.public_key() == x25519_public(state.dhs)
    state.dhs = b"\x07" * 32
    assert state.public_key() == x25519_public(b"\x07" * 32)


def test_a_copy_shares_skipped_keys_until_either_side_writes() -> None:
    original = _state()
    original.writable_skipped()[(b"h" * 32, 0)] = b"k" * 32
    clone = original.copy()
    clone.writable_skipped()[(b"h" * 32, 1)] = b"m" * 32
    assert list(original.skipped) == [(b"h" * 32, 0)]
    original.writable_skipped().clear()
    assert list(clone.skipped) == [(b"h" * 32, 0), (b"h" * 32, 1)]
    assert clone.to_value()["skipped"] == [
        [b"h" * 32, 0, b"k" * 32],
        [b"h" * 32, 1, b"m" * 32],
    ]


def test_state_repr_shows_no_key_material() -> None:
    state = _state()
    state.writable_skipped()[(state.nhkr, 3)] = b"\x99" * 32
    text = repr(state)
    for name in ("dhs", "rk", "cks", "hks", "nhks", "nhkr"):
        secret = state.to_value()[name]
        assert secret.hex() not in text
        assert repr(secret) not in text
    assert repr(b"\x99" * 32) not in text
    assert "skipped=1" in text


# -- sessions ---------------------------------------------------------------------------


def test_a_failed_out_of_order_decrypt_leaves_the_shared_skipped_keys_alone() -> None:
    rng, alice, bob = _acknowledged_pair()
    messages = [alice.encrypt(f"m{i}".encode(), rng) for i in range(4)]
    assert bob.decrypt(messages[3]) == b"m3"
    assert bob.skipped_keys == 3
    before = bob.to_bytes()
    forged = messages[1][:-1] + bytes([messages[1][-1] ^ 1])
    with pytest.raises(AuthenticationError):
        bob.decrypt(forged)  # opens with a skipped key, then fails on the body
    assert bob.to_bytes() == before
    assert [bob.decrypt(messages[i]) for i in (2, 0, 1)] == [b"m2", b"m0", b"m1"]
    assert bob.skipped_keys == 0


class _FailingRng:
    """Randomness that gives out after ``calls`` successful calls."""

    def __init__(self, rng: DeterministicRng, calls: int) -> None:
        self._rng, self._calls = rng, calls

    def __call__(self, n: int) -> bytes:
        if self._calls == 0:
            raise OSError("entropy source failed")
        self._calls -= 1
        return self._rng(n)


@pytest.mark.parametrize("ratchet_step", [False, True])
def test_encrypt_changes_nothing_when_randomness_fails(ratchet_step: bool) -> None:
    rng, alice, bob = _acknowledged_pair()
    assert bob.decrypt(alice.encrypt(b"turn", rng)) == b"turn"
    # Alice is now mid-chain (one rng call per message); Bob must start a new chain (two).
    sender, receiver = (bob, alice) if ratchet_step else (alice, bob)
    for calls in range(2 if ratchet_step else 1):
        before = sender.to_bytes()
        with pytest.raises(OSError, match="entropy source failed"):
            sender.encrypt(b"lost", _FailingRng(rng, calls))
        assert sender.to_bytes() == before
    assert receiver.decrypt(sender.encrypt(b"kept", rng)) == b"kept"


def test_bad_padding_from_an_authentic_peer_is_an_authentication_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng, alice, bob = _acknowledged_pair()
    with monkeypatch.context() as patched:
        patched.setattr(dr, "pad", lambda plaintext: plaintext)  # sends no padding at all
        unpadded = alice.encrypt(bytes(dr.PAD_BLOCK), rng)
    before = bob.to_bytes()
    with pytest.raises(AuthenticationError):
        bob.decrypt(unpadded)
    assert bob.to_bytes() == before
    assert bob.decrypt(alice.encrypt(b"next", rng)) == b"next"
