"""Replay protocol-spec/vectors/crypto/pairwise-*.json through the code.

Valid vectors must reproduce their outputs byte for byte from the secret inputs written
in the file; invalid ones must raise exactly the named error. Regenerating the vectors
must give what is committed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from p2pchat_crypto import errors
from p2pchat_crypto._keys import ed25519_public, x25519_dh, x25519_public
from p2pchat_crypto.identity import (
    Account,
    Device,
    DeviceCertificate,
    PublicIdentity,
    safety_number,
)
from p2pchat_crypto.prekeys import PrekeyBundle, SignedPrekey
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.replay import ReplayCache
from p2pchat_crypto.x3dh import initiator_agree, responder_agree

VECTORS = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors"
GENERATOR = VECTORS / "gen_crypto_pairwise.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gen_crypto_pairwise", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / "crypto" / name).read_text())  # type: ignore[no-any-return]


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def _account(secrets: dict[str, str]) -> Account:
    return Account(
        signing_seed=_h(secrets["signing_seed"]),
        identity_dh_secret=_h(secrets["identity_dh_secret"]),
    )


class QueueRng:
    """Hands out exactly the recorded random bytes, and checks they are all used."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __call__(self, n: int) -> bytes:
        assert len(self._data) >= n, "the code asks for more randomness than recorded"
        taken, self._data = self._data[:n], self._data[n:]
        return taken

    def assert_drained(self) -> None:
        assert not self._data, "the code used less randomness than recorded"


def _error(name: str) -> type[errors.CryptoError]:
    cls = getattr(errors, name)
    assert isinstance(cls, type)
    assert issubclass(cls, errors.CryptoError)
    return cls


def test_committed_vectors_match_a_fresh_generation() -> None:
    generated = _generator().generate()
    assert sorted(generated) == [
        "crypto/pairwise-identity.json",
        "crypto/pairwise-prekey-bundle.json",
        "crypto/pairwise-ratchet.json",
        "crypto/pairwise-x3dh.json",
    ]
    for rel, text in generated.items():
        assert (VECTORS / rel).read_text() == text, f"{rel} is stale: run generate.py"


def test_identity_vectors() -> None:
    data = _load("pairwise-identity.json")
    accounts = {}
    for case in data["accounts"]:
        account = _account(case["secrets"])
        accounts[case["name"]] = account
        assert account.account_key.hex() == case["account_key"]
        assert account.identity_dh_key.hex() == case["identity_dh_key"]
        assert account.identity_dh_signature.hex() == case["identity_dh_signature"]
        assert account.public().encode().hex() == case["public_identity"]
        assert account.fingerprint == case["fingerprint"]
        PublicIdentity.decode(_h(case["public_identity"])).verify()
    for case in data["safety_numbers"]:
        a, b = _h(case["account_key_a"]), _h(case["account_key_b"])
        assert safety_number(a, b) == safety_number(b, a) == case["safety_number"]
    for case in data["device_certificates"]:
        owner = accounts[case["account"]]
        seed = _h(case["device_seed"])
        cert = owner.certify_device(
            ed25519_public(seed), now=case["created"], expires=case["expires"]
        )
        device = Device(signing_seed=seed, certificate=cert)
        assert device.public_key.hex() == case["device_key"]
        assert cert.signed_message().hex() == case["signed_message"]
        assert cert.encode().hex() == case["encoded"]
        DeviceCertificate.decode(_h(case["encoded"])).verify(now=case["valid_at"])
    assert len(data["invalid"]) >= 5


def _check_object(case: dict[str, Any]) -> None:
    data = _h(case["encoded"])
    if case["type"] == "device-certificate":
        DeviceCertificate.decode(data).verify(now=case["now"])
    elif case["type"] == "public-identity":
        PublicIdentity.decode(data).verify()
    else:
        assert case["type"] == "prekey-bundle"
        options = case["options"]
        key = options.get("account_key")
        PrekeyBundle.decode(data).verify(
            now=case["now"],
            account_key=None if key is None else _h(key),
            min_sequence=options.get("min_sequence"),
        )


def _invalid_cases() -> list[dict[str, Any]]:
    return [
        *_load("pairwise-identity.json")["invalid"],
        *_load("pairwise-prekey-bundle.json")["invalid"],
    ]


@pytest.mark.parametrize("case", _invalid_cases(), ids=lambda case: case["name"])
def test_invalid_objects_raise_the_named_error(case: dict[str, Any]) -> None:
    with pytest.raises(_error(case["error"])):
        _check_object(case)


def test_prekey_bundle_vector() -> None:
    data = _load("pairwise-prekey-bundle.json")
    bob = _account(data["bob"])
    seed = _h(data["bob_device_seed"])
    cert = bob.certify_device(
        ed25519_public(seed), now=data["prekey"]["created"], expires=data["bob_device_expires"]
    )
    prekey_data = data["prekey"]
    prekey = SignedPrekey(
        prekey_id=prekey_data["prekey_id"],
        secret=_h(prekey_data["secret"]),
        created=prekey_data["created"],
        expires=prekey_data["expires"],
    )
    assert prekey.public_key.hex() == prekey_data["public_key"]
    bundle = PrekeyBundle.create(bob, cert, prekey, sequence=data["sequence"])
    assert bundle.signed_message().hex() == data["signed_message"]
    assert bundle.encode().hex() == data["encoded"]
    PrekeyBundle.decode(_h(data["encoded"])).verify(
        now=data["valid_at"], account_key=bob.account_key
    )


@pytest.mark.parametrize("case", _load("pairwise-x3dh.json")["cases"], ids=lambda c: c["name"])
def test_x3dh_vectors(case: dict[str, Any]) -> None:
    alice, bob = _account(case["alice"]), _account(case["bob"])
    prekey_secret, ephemeral_secret = _h(case["prekey_secret"]), _h(case["ephemeral_secret"])
    ephemeral_key = x25519_public(ephemeral_secret)
    device_key = None if case["initiator_device_key"] is None else _h(case["initiator_device_key"])
    assert ephemeral_key.hex() == case["ephemeral_key"]
    assert x25519_dh(alice.identity_dh_secret(), x25519_public(prekey_secret)).hex() == case["dh1"]
    assert x25519_dh(bob.identity_dh_secret(), ephemeral_key).hex() == case["dh2"]
    assert x25519_dh(prekey_secret, ephemeral_key).hex() == case["dh3"]
    ours = initiator_agree(
        alice,
        responder=bob.public(),
        prekey=x25519_public(prekey_secret),
        prekey_id=case["prekey_id"],
        ephemeral_secret=ephemeral_secret,
        ephemeral_key=ephemeral_key,
        initiator_device_key=device_key,
    )
    theirs = responder_agree(
        bob,
        prekey_secret=prekey_secret,
        prekey_id=case["prekey_id"],
        initiator=alice.public(),
        ephemeral_key=ephemeral_key,
        initiator_device_key=device_key,
    )
    for secrets in (ours, theirs):
        assert secrets.root_key.hex() == case["root_key"]
        assert secrets.initiator_header_key.hex() == case["initiator_header_key"]
        assert secrets.responder_next_header_key.hex() == case["responder_next_header_key"]
        assert secrets.associated_data.hex() == case["associated_data"]
        assert secrets.session_id.hex() == case["session_id"]


def test_ratchet_conversation_vector() -> None:
    data = _load("pairwise-ratchet.json")
    now = data["now"]
    alice, bob = _account(data["alice"]), _account(data["bob"])
    seed = _h(data["alice_device_seed"])
    device = Device(
        signing_seed=seed, certificate=alice.certify_device(ed25519_public(seed), now=now)
    )
    bundle = PrekeyBundle.decode(_h(data["bundle"]))
    prekey = SignedPrekey(
        prekey_id=bundle.prekey_id,
        secret=_h(data["prekey_secret"]),
        created=now,
        expires=bundle.prekey_expires,
    )
    initiate = data["initiate"]
    rng = QueueRng(_h(initiate["randomness"]))
    alice_session, initial = Session.initiate(
        alice, bundle, rng, now=now, device=device, plaintext=_h(initiate["plaintext"])
    )
    rng.assert_drained()
    assert initial.encode().hex() == initiate["initial_message"]
    cache = ReplayCache()
    bob_session, text = Session.respond(bob, prekey, initial.encode(), cache, now=now)
    assert text.hex() == initiate["plaintext"]
    sessions = {"alice": alice_session, "bob": bob_session}
    wires: dict[str, bytes] = {}
    ops = set()
    for step in data["steps"]:
        session = sessions[step["party"]]
        ops.add(step["op"])
        if step["op"] == "encrypt":
            rng = QueueRng(_h(step["randomness"]))
            wire = session.encrypt(_h(step["plaintext"]), rng)
            rng.assert_drained()
            assert wire.hex() == step["wire"], step["label"]
            wires[step["label"]] = wire
        elif step["op"] == "decrypt":
            assert session.decrypt(wires[step["label"]]).hex() == step["plaintext"]
        else:
            assert step["op"] == "decrypt-fails"
            before = session.to_bytes()
            with pytest.raises(_error(step["error"])):
                session.decrypt(_h(step["wire"]))
            assert session.to_bytes() == before, step["name"]
    assert ops == {"encrypt", "decrypt", "decrypt-fails"}
    for case in data["respond_failures"]:
        used = ReplayCache() if case["fresh_replay_cache"] else cache
        with pytest.raises(_error(case["error"])):
            Session.respond(bob, prekey, _h(case["initial_message"]), used, now=case["now"])
