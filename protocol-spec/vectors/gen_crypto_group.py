"""Test vectors for group sender keys (protocol-spec/crypto-group.md).

Writes ``crypto/group-chain.json`` (the hash chain and per-message keys at several
indices), ``crypto/group-sessions.json`` (sessions from a seeded rng, their distribution
messages and pickles), ``crypto/group-messages.json`` (encrypted messages with every
intermediate value, decrypted in a shuffled order) and ``crypto/group-invalid.json``
(messages and distributions that must fail, with the expected error class name).

All randomness comes from :class:`CounterRng` (SHA-256 of seed || 8-byte big-endian
counter, the same construction as ``tests.conftest.DeterministicRng``), so the output is
a pure function of this file and ``p2pchat_crypto``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nacl import bindings

from p2pchat_crypto import group_wire as wire
from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.group import GroupLimits, GroupSession, InboundGroupSession

GROUP_ID = bytes.fromhex("a1" * 16)
ALICE = bytes.fromhex("a0" * 32)
BOB = bytes.fromhex("b0" * 32)


class CounterRng:
    """``rng(n)``: SHA-256(seed || counter) blocks, counter 8 bytes big-endian from 0."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2) + "\n"


def _chain() -> dict[str, Any]:
    chain_key = hashlib.sha256(b"p2pchat group chain vector").digest()
    wanted = {0, 1, 2, 3, 10, 100}
    steps = []
    current = chain_key
    for index in range(max(wanted) + 1):
        seed, following = wire.chain_step(current)
        if index in wanted:
            key, nonce = wire.message_keys(seed)
            steps.append(
                {
                    "index": index,
                    "chain_key": current.hex(),
                    "message_key_seed": seed.hex(),
                    "next_chain_key": following.hex(),
                    "aead_key": key.hex(),
                    "aead_nonce": nonce.hex(),
                }
            )
        current = following
    return {
        "description": "Sender-key hash chain: chain_key is the key at `index`.",
        "chain_key_0": chain_key.hex(),
        "steps": steps,
    }


def _session(seed: bytes, sender: bytes, epoch: int) -> GroupSession:
    return GroupSession.create(GROUP_ID, epoch, sender, CounterRng(seed))


def _sessions() -> dict[str, Any]:
    cases = []
    for name, seed, sender, epoch, advance in (
        ("alice-epoch-1-index-0", b"alice-1", ALICE, 1, 0),
        ("alice-epoch-1-index-3", b"alice-1", ALICE, 1, 3),
        ("bob-epoch-7-index-0", b"bob-7", BOB, 7, 0),
    ):
        session = _session(seed, sender, epoch)
        rng = CounterRng(seed)
        chain_key, signing_seed = rng(32), rng(32)
        for _ in range(advance):
            session.encrypt(b"")
        cases.append(
            {
                "name": name,
                "rng_seed": seed.hex(),
                "group_id": GROUP_ID.hex(),
                "epoch": epoch,
                "sender": sender.hex(),
                "messages_sent_before": advance,
                "initial_chain_key": chain_key.hex(),
                "signing_seed": signing_seed.hex(),
                "signing_public_key": session.signing_public_key.hex(),
                "distribution": session.distribution_message().hex(),
                "outbound_pickle": session.to_bytes().hex(),
                "inbound_pickle": InboundGroupSession.from_distribution(
                    session.distribution_message()
                )
                .to_bytes()
                .hex(),
            }
        )
    return {
        "description": "Sessions from GroupSession.create(group_id, epoch, sender, rng); "
        "the rng yields the chain key, then the signing seed.",
        "sessions": cases,
    }


def _messages() -> dict[str, Any]:
    session = _session(b"alice-1", ALICE, 1)
    distribution = session.distribution_message()
    plaintexts = [b"", b"hello group", bytes(range(64)), b"x" * 200, "héllo ✓".encode()]
    messages: list[dict[str, Any]] = []
    for plaintext in plaintexts:
        index = session.message_index
        rng = CounterRng(b"alice-1")
        chain_key = rng(32)
        for _ in range(index):
            chain_key = wire.chain_step(chain_key)[1]
        seed = wire.chain_step(chain_key)[0]
        header = wire.message_header(GROUP_ID, 1, ALICE, index)
        data = session.encrypt(plaintext)
        parsed = wire.decode_message(data)
        messages.append(
            {
                "index": index,
                "plaintext": plaintext.hex(),
                "message_key_seed": seed.hex(),
                "associated_data": header.hex(),
                "ciphertext": parsed.ciphertext.hex(),
                "signature": parsed.signature.hex(),
                "message": data.hex(),
            }
        )
    order = [1, 4, 0, 3, 2]
    inbound = InboundGroupSession.from_distribution(distribution)
    pickles = []
    for position in order:
        plaintext, index = inbound.decrypt(bytes.fromhex(messages[position]["message"]))
        assert plaintext.hex() == messages[position]["plaintext"]
        assert index == position
        pickles.append(inbound.to_bytes().hex())
    return {
        "description": "Messages of alice-epoch-1 in sending order; an inbound session from "
        "`distribution` decrypts them in `decrypt_order` (indices) and its pickle after each "
        "step is `inbound_pickles_after`.",
        "distribution": distribution.hex(),
        "messages": messages,
        "decrypt_order": order,
        "inbound_pickles_after": pickles,
    }


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def _resigned(session_seed: bytes, index: int, ciphertext: bytes) -> bytes:
    """A message at ``index`` carrying ``ciphertext``, validly signed by the sender key."""
    rng = CounterRng(session_seed)
    rng(32)
    _public, secret = bindings.crypto_sign_seed_keypair(rng(32))
    header = wire.message_header(GROUP_ID, 1, ALICE, index)
    signature = wire.sign(bytes(secret), header + ciphertext)
    return wire.encode_message(wire.WireMessage(GROUP_ID, 1, ALICE, index, ciphertext, signature))


def _invalid() -> dict[str, Any]:
    session = _session(b"alice-1", ALICE, 1)
    distribution = session.distribution_message()
    sent = [session.encrypt(f"message {i}".encode()) for i in range(8)]
    other_epoch = _session(b"alice-2", ALICE, 2)
    ct0 = wire.decode_message(sent[0]).ciphertext
    late = _session(b"alice-1", ALICE, 1)
    late.encrypt(b"")
    late.encrypt(b"")
    late_distribution = late.distribution_message()
    cases: list[dict[str, Any]] = [
        {
            "name": "bad-signature",
            "message": _flip(sent[0], len(sent[0]) - 1).hex(),
            "error": "SignatureError",
        },
        {
            "name": "tampered-ciphertext",
            "message": _flip(sent[0], len(sent[0]) - 70).hex(),
            "error": "SignatureError",
        },
        {
            "name": "tampered-index",
            "message": wire.encode_message(
                wire.WireMessage(GROUP_ID, 1, ALICE, 1, ct0, wire.decode_message(sent[0]).signature)
            ).hex(),
            "error": "SignatureError",
        },
        {
            "name": "validly-signed-bad-ciphertext",
            "message": _resigned(b"alice-1", 0, _flip(ct0, 0)).hex(),
            "error": "AuthenticationError",
        },
        {
            "name": "replay",
            "prior": [sent[0].hex()],
            "message": sent[0].hex(),
            "error": "DuplicateMessageError",
        },
        {
            "name": "replay-after-skip",
            "prior": [sent[2].hex(), sent[1].hex()],
            "message": sent[1].hex(),
            "error": "DuplicateMessageError",
        },
        {
            "name": "gap-too-large",
            "max_skip": 5,
            "message": sent[6].hex(),
            "error": "GapTooLargeError",
        },
        {
            "name": "evicted-skipped-key",
            "max_skipped_keys": 2,
            "prior": [sent[4].hex()],
            "message": sent[1].hex(),
            "error": "DuplicateMessageError",
        },
        {
            "name": "wrong-epoch",
            "message": other_epoch.encrypt(b"message 0").hex(),
            "error": "UnknownSessionError",
        },
        {
            "name": "before-distribution",
            "distribution": late_distribution.hex(),
            "message": sent[1].hex(),
            "error": "UnknownSessionError",
        },
        {"name": "not-cbor", "message": "ff", "error": "DecodeError"},
        {
            "name": "non-canonical-cbor",
            "message": ("98" + "07" + sent[0].hex()[2:]),
            "error": "DecodeError",
        },
        {
            "name": "distribution-bad-signature",
            "distribution": _flip(distribution, len(distribution) - 1).hex(),
            "error": "SignatureError",
        },
        {
            "name": "distribution-tampered-chain-key",
            "distribution": _flip(distribution, len(distribution) - 120).hex(),
            "error": "SignatureError",
        },
    ]
    for case in cases:
        case.setdefault("distribution", distribution.hex())
        case.setdefault("prior", [])
        _check_case(case)
    return {
        "description": "Each case: build an inbound session from `distribution` (with the "
        "given max_skip / max_skipped_keys, else the defaults), decrypt `prior` in order, "
        "then `message` (if any) must raise `error`; a case without `message` fails while "
        "loading the distribution.",
        "cases": cases,
    }


def _check_case(case: dict[str, Any]) -> None:
    """Refuse to write a vector whose claimed error is not what the code raises at the
    last step (every earlier step must succeed)."""
    limits = GroupLimits(
        max_skip=case.get("max_skip", 2000), max_skipped_keys=case.get("max_skipped_keys", 2000)
    )
    steps = [case["distribution"], *case["prior"]]
    if "message" in case:
        steps.append(case["message"])
    inbound: InboundGroupSession | None = None
    for position, step in enumerate(steps):
        last = position == len(steps) - 1
        try:
            if inbound is None:
                inbound = InboundGroupSession.from_distribution(bytes.fromhex(step), limits=limits)
            else:
                inbound.decrypt(bytes.fromhex(step))
        except CryptoError as exc:
            if last and type(exc).__name__ == case["error"]:
                return
            raise AssertionError(f"{case['name']}: step {position} raised {exc!r}") from exc
    raise AssertionError(f"{case['name']}: nothing was raised")


def generate() -> dict[str, str]:
    return {
        "crypto/group-chain.json": _dump(_chain()),
        "crypto/group-sessions.json": _dump(_sessions()),
        "crypto/group-messages.json": _dump(_messages()),
        "crypto/group-invalid.json": _dump(_invalid()),
    }
