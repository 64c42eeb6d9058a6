"""Outbound and inbound sender-key sessions: behaviour, errors, pickles and secrecy of repr."""

from __future__ import annotations

import pytest
from nacl import bindings

from p2pchat_crypto import group_wire as wire
from p2pchat_crypto.errors import (
    AuthenticationError,
    CryptoError,
    DecodeError,
    DuplicateMessageError,
    GapTooLargeError,
    PickleError,
    SignatureError,
    UnknownSessionError,
    VerificationError,
)
from p2pchat_crypto.group import (
    MAX_PLAINTEXT_SIZE,
    PAD_BLOCK,
    GroupLimits,
    GroupSession,
    InboundGroupSession,
    parse_header,
)
from p2pchat_crypto.sealed import pack
from tests.conftest import DeterministicRng

GROUP = b"\x42" * 16
ALICE = b"\xa0" * 32
BOB = b"\xb0" * 32


def _pair(
    rng: DeterministicRng, *, limits: GroupLimits | None = None, epoch: int = 1
) -> tuple[GroupSession, InboundGroupSession]:
    outbound = GroupSession.create(GROUP, epoch, ALICE, rng)
    dist = outbound.distribution_message()
    inbound = InboundGroupSession.from_distribution(dist, limits=limits or GroupLimits())
    return outbound, inbound


def test_round_trip_in_order(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    for i in range(5):
        plaintext = f"message {i}".encode()
        assert inbound.decrypt(outbound.encrypt(plaintext)) == (plaintext, i)
    assert outbound.message_index == 5
    assert inbound.next_index == 5
    assert inbound.skipped_count == 0


def test_out_of_order_uses_and_deletes_skipped_keys(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    sent = [outbound.encrypt(bytes([i])) for i in range(4)]
    assert inbound.decrypt(sent[3]).message_index == 3
    assert inbound.skipped_count == 3
    assert inbound.decrypt(sent[1]) == (b"\x01", 1)
    assert inbound.skipped_count == 2
    with pytest.raises(DuplicateMessageError):
        inbound.decrypt(sent[1])
    assert [inbound.decrypt(sent[i]).plaintext for i in (0, 2)] == [b"\x00", b"\x02"]
    assert inbound.skipped_count == 0


def test_ciphertext_is_padded_to_the_block(rng: DeterministicRng) -> None:
    outbound, _ = _pair(rng)
    tag = 16
    for size in (0, 1, PAD_BLOCK - 1, PAD_BLOCK, 1000):
        ciphertext = wire.decode_message(outbound.encrypt(b"a" * size)).ciphertext
        assert (len(ciphertext) - tag) % PAD_BLOCK == 0
        assert len(ciphertext) - tag > size  # ISO 7816-4 always adds at least one byte


def test_header_is_clear_and_matches_the_session(rng: DeterministicRng) -> None:
    outbound, _ = _pair(rng, epoch=9)
    outbound.encrypt(b"first")
    header = parse_header(outbound.encrypt(b"second"))
    assert (header.group_id, header.epoch, header.sender, header.index) == (GROUP, 9, ALICE, 1)
    assert header.session_id == outbound.session_id


def test_distribution_carries_the_current_index(rng: DeterministicRng) -> None:
    outbound, _ = _pair(rng)
    early = [outbound.encrypt(b"before") for _ in range(3)]
    newcomer = InboundGroupSession.from_distribution(outbound.distribution_message())
    assert newcomer.first_index == 3
    for message in early:
        with pytest.raises(UnknownSessionError):
            newcomer.decrypt(message)
    assert newcomer.decrypt(outbound.encrypt(b"after")) == (b"after", 3)


def test_gap_limit_and_eviction_of_oldest_skipped_key(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng, limits=GroupLimits(max_skip=4, max_skipped_keys=3))
    sent = [outbound.encrypt(bytes([i])) for i in range(12)]
    with pytest.raises(GapTooLargeError):
        inbound.decrypt(sent[5])  # skips 0..4: five keys
    assert inbound.decrypt(sent[4]).message_index == 4  # skips 0..3: kept 1, 2, 3
    assert inbound.skipped_count == 3
    with pytest.raises(DuplicateMessageError):
        inbound.decrypt(sent[0])  # evicted: the oldest goes first
    assert inbound.decrypt(sent[8]).message_index == 8  # skips 5, 6, 7: evicts 1, 2, 3
    assert inbound.skipped_count == 3
    with pytest.raises(DuplicateMessageError):
        inbound.decrypt(sent[3])
    assert inbound.decrypt(sent[5]).plaintext == b"\x05"


def test_failures_leave_the_session_unchanged(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng, limits=GroupLimits(max_skip=3, max_skipped_keys=3))
    sent = [outbound.encrypt(bytes([i])) for i in range(6)]
    inbound.decrypt(sent[2])
    before = inbound.to_bytes()
    flipped_ct = bytearray(sent[0])
    flipped_ct[-70] ^= 1
    other_sender = GroupSession.create(GROUP, 1, BOB, rng).encrypt(b"x")
    for bad, error in (
        (sent[2], DuplicateMessageError),
        (bytes(flipped_ct), SignatureError),
        (sent[5][:-1] + bytes([sent[5][-1] ^ 1]), SignatureError),
        (other_sender, UnknownSessionError),
        (b"\xff", DecodeError),
    ):
        with pytest.raises(error):
            inbound.decrypt(bad)
        assert inbound.to_bytes() == before


def test_validly_signed_garbage_is_an_authentication_error(rng: DeterministicRng) -> None:
    seeds = DeterministicRng(b"forger")
    outbound = GroupSession.create(GROUP, 1, ALICE, seeds)
    inbound = InboundGroupSession.from_distribution(outbound.distribution_message())
    again = DeterministicRng(b"forger")
    again(32)
    _, secret = bindings.crypto_sign_seed_keypair(again(32))
    header = wire.message_header(GROUP, 1, ALICE, 0)
    ciphertext = b"\x00" * 80
    signature = wire.sign(bytes(secret), header + ciphertext)
    message = wire.encode_message(wire.WireMessage(GROUP, 1, ALICE, 0, ciphertext, signature))
    before = inbound.to_bytes()
    with pytest.raises(AuthenticationError):
        inbound.decrypt(message)
    assert inbound.to_bytes() == before
    assert inbound.decrypt(outbound.encrypt(b"real")) == (b"real", 0)


def test_a_member_with_the_chain_key_cannot_forge(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    # Bob holds Alice's chain key (from her distribution) but not her signing key.
    stolen = wire.decode_distribution(outbound.distribution_message())
    forger = GroupSession(
        group_id=GROUP,
        epoch=1,
        sender=ALICE,
        index=0,
        chain_key=stolen.chain_key,
        signing_seed=rng(32),
    )
    with pytest.raises(SignatureError):
        inbound.decrypt(forger.encrypt(b"I am Alice"))


def test_distribution_checks(rng: DeterministicRng) -> None:
    outbound = GroupSession.create(GROUP, 1, ALICE, rng)
    dist = outbound.distribution_message()
    with pytest.raises(VerificationError):
        InboundGroupSession.from_distribution(dist, expected_sender=BOB)
    assert InboundGroupSession.from_distribution(dist, expected_sender=ALICE).sender == ALICE
    with pytest.raises(SignatureError):
        InboundGroupSession.from_distribution(dist[:-1] + bytes([dist[-1] ^ 1]))
    with pytest.raises(DecodeError):
        InboundGroupSession.from_distribution(outbound.encrypt(b"not a distribution"))
    with pytest.raises(DecodeError):
        InboundGroupSession.from_distribution(dist + b"\x00")


@pytest.mark.parametrize(
    ("group_id", "sender", "epoch"),
    [(b"", ALICE, 1), (b"g" * 65, ALICE, 1), (GROUP, b"short", 1), (GROUP, ALICE, -1)],
)
def test_create_validates_its_arguments(
    rng: DeterministicRng, group_id: bytes, sender: bytes, epoch: int
) -> None:
    with pytest.raises(ValueError, match=r"group-id|sender|epoch"):
        GroupSession.create(group_id, epoch, sender, rng)


def test_plaintext_size_cap(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    big = b"b" * MAX_PLAINTEXT_SIZE
    assert inbound.decrypt(outbound.encrypt(big)).plaintext == big
    with pytest.raises(ValueError, match="at most"):
        outbound.encrypt(big + b"!")


def test_exhausted_sender_key_refuses_to_encrypt(rng: DeterministicRng) -> None:
    last = GroupSession(
        group_id=GROUP,
        epoch=1,
        sender=ALICE,
        index=wire.MAX_INDEX,
        chain_key=rng(32),
        signing_seed=rng(32),
    )
    inbound = InboundGroupSession.from_distribution(last.distribution_message())
    assert inbound.decrypt(last.encrypt(b"final")).message_index == wire.MAX_INDEX
    InboundGroupSession.from_bytes(inbound.to_bytes())  # next_index = 2**64 - 1 still pickles
    with pytest.raises(ValueError, match="exhausted"):
        last.encrypt(b"one more")
    with pytest.raises(ValueError, match="exhausted"):
        last.distribution_message()


def test_pickles_round_trip_exactly_and_keep_working(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    sent = [outbound.encrypt(bytes([i])) for i in range(4)]
    inbound.decrypt(sent[3])
    outbound_copy = GroupSession.from_bytes(outbound.to_bytes())
    inbound_copy = InboundGroupSession.from_bytes(inbound.to_bytes())
    assert outbound_copy.to_bytes() == outbound.to_bytes()
    assert inbound_copy.to_bytes() == inbound.to_bytes()
    assert inbound_copy.decrypt(sent[1]) == (b"\x01", 1)
    from_copy = outbound_copy.encrypt(b"next")
    assert inbound_copy.decrypt(from_copy) == (b"next", 4)
    # Encryption is a pure function of the pickled state: the original says the same.
    assert outbound.encrypt(b"next") == from_copy
    assert outbound.to_bytes() == outbound_copy.to_bytes()


def test_sealed_pickles(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    key = rng(32)
    sealed_out = outbound.to_sealed(key, rng)
    sealed_in = inbound.to_sealed(key, rng)
    assert GroupSession.from_sealed(sealed_out, key).to_bytes() == outbound.to_bytes()
    assert InboundGroupSession.from_sealed(sealed_in, key).to_bytes() == inbound.to_bytes()
    assert outbound.to_bytes() not in sealed_out
    with pytest.raises(PickleError):
        GroupSession.from_sealed(sealed_out, rng(32))
    with pytest.raises(PickleError):
        InboundGroupSession.from_sealed(sealed_out, key)  # a sealed outbound is not inbound


@pytest.mark.parametrize(
    "body",
    [
        [],
        [GROUP, 1, ALICE, 0, b"k" * 32],
        [GROUP, 1, ALICE, 0, b"k" * 31, b"s" * 32],
        [GROUP, 1, ALICE, -1, b"k" * 32, b"s" * 32],
        [GROUP, True, ALICE, 0, b"k" * 32, b"s" * 32],
        [b"", 1, ALICE, 0, b"k" * 32, b"s" * 32],
        "not a list",
    ],
)
def test_malformed_outbound_pickles(body: object) -> None:
    with pytest.raises(PickleError):
        GroupSession.from_bytes(pack("p2pchat/group-session", 1, body))  # type: ignore[arg-type]


def _inbound_body(**changes: object) -> list[object]:
    fields = {
        "group": GROUP,
        "epoch": 1,
        "sender": ALICE,
        "signing": b"p" * 32,
        "first": 2,
        "next": 6,
        "chain": b"c" * 32,
        "skipped": [[3, b"k" * 32], [5, b"k" * 32]],
    }
    fields.update(changes)
    return list(fields.values())


def test_valid_inbound_pickle_body_loads() -> None:
    data = pack("p2pchat/inbound-group-session", 1, _inbound_body())
    assert InboundGroupSession.from_bytes(data).to_bytes() == data


@pytest.mark.parametrize(
    "changes",
    [
        {"skipped": [[5, b"k" * 32], [3, b"k" * 32]]},
        {"skipped": [[1, b"k" * 32]]},
        {"skipped": [[6, b"k" * 32]]},
        {"skipped": [[3, b"k" * 31]]},
        {"skipped": [[3]]},
        {"skipped": "nope"},
        {"first": 7},
        {"chain": b"c"},
        {"sender": b"s"},
    ],
)
def test_malformed_inbound_pickles(changes: dict[str, object]) -> None:
    data = pack("p2pchat/inbound-group-session", 1, _inbound_body(**changes))
    with pytest.raises(PickleError):
        InboundGroupSession.from_bytes(data)


def test_unknown_pickle_version_and_kind(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    with pytest.raises(PickleError, match="version"):
        GroupSession.from_bytes(pack("p2pchat/group-session", 2, []))
    with pytest.raises(PickleError):
        InboundGroupSession.from_bytes(outbound.to_bytes())
    with pytest.raises(PickleError):
        GroupSession.from_bytes(inbound.to_bytes())


def test_loading_a_pickle_applies_the_skipped_key_cap(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    sent = [outbound.encrypt(bytes([i])) for i in range(6)]
    inbound.decrypt(sent[5])
    tight = InboundGroupSession.from_bytes(
        inbound.to_bytes(), limits=GroupLimits(max_skipped_keys=2)
    )
    assert tight.skipped_count == 2
    with pytest.raises(DuplicateMessageError):
        tight.decrypt(sent[2])
    assert tight.decrypt(sent[3]).plaintext == b"\x03"


def _secrets_of(outbound: GroupSession) -> list[str]:
    body = wire.decode_distribution(outbound.distribution_message())
    seed, next_key = wire.chain_step(body.chain_key)
    aead_key, _ = wire.message_keys(seed)
    signing_seed = bytes.fromhex(outbound.to_bytes().hex()[-64:])
    return [value.hex() for value in (body.chain_key, seed, next_key, aead_key, signing_seed)]


def test_repr_and_errors_never_show_key_material(rng: DeterministicRng) -> None:
    outbound, inbound = _pair(rng)
    secrets = _secrets_of(outbound)
    first = outbound.encrypt(b"secret plaintext")
    texts = [repr(outbound), repr(inbound), str(outbound), str(inbound)]
    texts.append(repr(wire.decode_distribution(outbound.distribution_message())))
    inbound.decrypt(first)
    texts.append(repr(inbound))
    failures: list[CryptoError] = []
    for bad in (first, b"\xff", first[:-1] + bytes([first[-1] ^ 1])):
        with pytest.raises(CryptoError) as info:
            inbound.decrypt(bad)
        failures.append(info.value)
    texts += [str(exc) for exc in failures] + [repr(exc) for exc in failures]
    for text in texts:
        assert "secret plaintext" not in text
        for secret in secrets:
            assert secret not in text.replace("…", "")
            assert secret[:16] not in text
    assert GROUP.hex() in repr(outbound)  # the repr is still useful


def test_public_surface() -> None:
    from p2pchat_crypto import group

    assert sorted(group.__all__) == sorted(set(group.__all__))
    for name in group.__all__:
        assert getattr(group, name) is not None
    assert {"GroupSession", "InboundGroupSession", "GroupKeyring"} <= set(group.__all__)
