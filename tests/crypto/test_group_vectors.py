"""Replay every group sender-key vector of protocol-spec/vectors/crypto/group-*.json.

The vectors are data: each check below recomputes a value from its inputs with the
library and compares it to the file. A last test regenerates the files and requires the
committed text to be identical, so code and vectors cannot drift apart silently.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from nacl import bindings

from p2pchat_crypto import errors
from p2pchat_crypto import group_wire as wire
from p2pchat_crypto.group import GroupLimits, GroupSession, InboundGroupSession

VECTORS = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors"
GENERATOR = VECTORS / "gen_crypto_group.py"


def _load(name: str) -> Any:
    return json.loads((VECTORS / "crypto" / name).read_text())


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gen_crypto_group", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


CHAIN = _load("group-chain.json")
SESSIONS = _load("group-sessions.json")["sessions"]
MESSAGES = _load("group-messages.json")
INVALID = _load("group-invalid.json")["cases"]


def test_chain_steps() -> None:
    steps = {step["index"]: step for step in CHAIN["steps"]}
    assert len(steps) >= 4
    chain_key = _hex(CHAIN["chain_key_0"])
    for index in range(max(steps) + 1):
        seed, following = wire.chain_step(chain_key)
        if index in steps:
            step = steps[index]
            assert chain_key == _hex(step["chain_key"])
            assert seed == _hex(step["message_key_seed"])
            assert following == _hex(step["next_chain_key"])
            assert wire.message_keys(seed) == (_hex(step["aead_key"]), _hex(step["aead_nonce"]))
        chain_key = following


@pytest.mark.parametrize("case", SESSIONS, ids=lambda case: case["name"])
def test_sessions_from_a_seeded_rng(case: dict[str, Any]) -> None:
    generator = _generator()
    rng = generator.CounterRng(_hex(case["rng_seed"]))
    session = GroupSession.create(_hex(case["group_id"]), case["epoch"], _hex(case["sender"]), rng)
    for _ in range(case["messages_sent_before"]):
        session.encrypt(b"")
    assert session.signing_public_key == _hex(case["signing_public_key"])
    assert session.distribution_message() == _hex(case["distribution"])
    assert session.to_bytes() == _hex(case["outbound_pickle"])
    assert GroupSession.from_bytes(_hex(case["outbound_pickle"])).to_bytes() == session.to_bytes()

    public, _ = bindings.crypto_sign_seed_keypair(_hex(case["signing_seed"]))
    assert bytes(public) == session.signing_public_key
    dist = wire.decode_distribution(_hex(case["distribution"]))
    assert dist.index == case["messages_sent_before"]
    chain_key = _hex(case["initial_chain_key"])
    for _ in range(dist.index):
        chain_key = wire.chain_step(chain_key)[1]
    assert dist.chain_key == chain_key

    inbound = InboundGroupSession.from_distribution(_hex(case["distribution"]))
    assert inbound.to_bytes() == _hex(case["inbound_pickle"])
    assert InboundGroupSession.from_bytes(_hex(case["inbound_pickle"])).first_index == dist.index


def test_messages_intermediate_values() -> None:
    dist = wire.decode_distribution(_hex(MESSAGES["distribution"]))
    chain_key = dist.chain_key
    for expected in MESSAGES["messages"]:
        seed, chain_key = wire.chain_step(chain_key)
        assert seed == _hex(expected["message_key_seed"])
        header = wire.message_header(dist.group_id, dist.epoch, dist.sender, expected["index"])
        assert header == _hex(expected["associated_data"])
        key, nonce = wire.message_keys(seed)
        padded = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            _hex(expected["ciphertext"]), header, nonce, key
        )
        assert bindings.sodium_unpad(padded, wire.PAD_BLOCK) == _hex(expected["plaintext"])
        assert len(padded) % wire.PAD_BLOCK == 0
        wire.verify(
            dist.signing_key, header + _hex(expected["ciphertext"]), _hex(expected["signature"])
        )
        message = wire.WireMessage(
            dist.group_id,
            dist.epoch,
            dist.sender,
            expected["index"],
            _hex(expected["ciphertext"]),
            _hex(expected["signature"]),
        )
        assert wire.encode_message(message) == _hex(expected["message"])


def test_messages_decrypt_in_the_given_order_with_the_given_pickles() -> None:
    inbound = InboundGroupSession.from_distribution(_hex(MESSAGES["distribution"]))
    messages = MESSAGES["messages"]
    for position, pickle in zip(
        MESSAGES["decrypt_order"], MESSAGES["inbound_pickles_after"], strict=True
    ):
        plaintext, index = inbound.decrypt(_hex(messages[position]["message"]))
        assert (plaintext, index) == (_hex(messages[position]["plaintext"]), position)
        assert inbound.to_bytes() == _hex(pickle)
        # Every intermediate pickle loads and re-encodes to itself.
        assert InboundGroupSession.from_bytes(_hex(pickle)).to_bytes() == _hex(pickle)


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case["name"])
def test_invalid_cases_raise_the_named_error_and_change_nothing(case: dict[str, Any]) -> None:
    error = getattr(errors, case["error"])
    limits = GroupLimits(
        max_skip=case.get("max_skip", 2000), max_skipped_keys=case.get("max_skipped_keys", 2000)
    )
    if "message" not in case:
        with pytest.raises(error) as info:
            InboundGroupSession.from_distribution(_hex(case["distribution"]), limits=limits)
        assert type(info.value) is error
        return
    inbound = InboundGroupSession.from_distribution(_hex(case["distribution"]), limits=limits)
    for prior in case["prior"]:
        inbound.decrypt(_hex(prior))
    before = inbound.to_bytes()
    with pytest.raises(error) as info:
        inbound.decrypt(_hex(case["message"]))
    assert type(info.value) is error
    assert inbound.to_bytes() == before


def test_invalid_vectors_cover_the_required_errors() -> None:
    names = {case["error"] for case in INVALID}
    assert {
        "SignatureError",
        "AuthenticationError",
        "DuplicateMessageError",
        "GapTooLargeError",
        "UnknownSessionError",
        "DecodeError",
    } <= names


def test_committed_vectors_equal_a_fresh_generation() -> None:
    produced = _generator().generate()
    assert set(produced) == {
        "crypto/group-chain.json",
        "crypto/group-sessions.json",
        "crypto/group-messages.json",
        "crypto/group-invalid.json",
    }
    for relative, text in produced.items():
        assert (VECTORS / relative).read_text() == text, f"{relative} is stale: regenerate it"
